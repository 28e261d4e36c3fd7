/**
 * Reading what work did, from outside it: marker files, logs of [start, end] times, processes and
 * threads of this machine. For tests that check a backend through the work itself rather than
 * through the engine's records (test/backend-conformance.ts). Linux: reads /proc.
 */
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Polls until `probe` returns a value (not undefined), every 20 ms; throws after `ms` with `what` (a
 * text, or a function that says what was seen). For waiting on events, never for timing them.
 */
export async function waitFor<T>(probe: () => T | undefined, what: string | (() => string), ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const value = probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline)
      throw new Error(`timed out after ${ms} ms waiting for ${typeof what === 'string' ? what : what()}`);
    await sleep(20);
  }
}

/** Resolves once the wall clock has reached `time` (ms since the epoch). */
export async function until(time: number): Promise<void> {
  while (Date.now() < time) await sleep(Math.min(100, time - Date.now()));
}

/** The text of `<dir>/<name>`, or undefined if there is no such file. */
export function marker(dir: string, name: string): string | undefined {
  try {
    return readFileSync(join(dir, name), 'utf8');
  } catch {
    return undefined;
  }
}

/** The text of a file, or '' if there is no such file. */
export function fileText(path: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return '';
  }
}

/** `<pid> <ppid> <state> <command>` of a process, from /proc, or undefined if there is none. */
function stat(pid: number): { ppid: number; state: string; command: string } | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, 'latin1');
  } catch {
    return undefined;
  }
  // pid (comm) state ppid ...: comm may hold spaces and parentheses
  const fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return {
    state: fields[0]!,
    ppid: Number(fields[1]),
    command: text.slice(text.indexOf('(') + 1, text.lastIndexOf(')')),
  };
}

/** True while a process exists and has not finished (a zombie has: only its exit status is left). */
export function isAlive(pid: number): boolean {
  const s = stat(pid);
  return s !== undefined && s.state !== 'Z' && s.state !== 'X';
}

/** Live child processes of `parent` (default: this process), as `<pid> <command>`. */
export function childProcesses(parent = process.pid): string[] {
  const found: string[] = [];
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    const s = stat(pid);
    if (s !== undefined && s.ppid === parent && s.state !== 'Z' && s.state !== 'X') found.push(`${pid} ${s.command}`);
  }
  return found;
}

/** The parent of a process, or undefined if there is none. */
export function parentOf(pid: number): number | undefined {
  return stat(pid)?.ppid;
}

/** The spawner that started the program `pid`: its parent, or its parent's parent where that is a native forker. */
export function spawnerOfProgram(pid: number): number | undefined {
  const parent = parentOf(pid);
  if (parent === undefined) return undefined;
  // by its command name: a spawner's command line holds the forker's path
  return fileText(`/proc/${parent}/comm`).trim() === 'scalems-forker' ? parentOf(parent) : parent;
}

/** Live spawners (`scalems-spawner`, the processes that start programs) that `parent` started (default: this one). */
export function spawnersOf(parent = process.pid): number[] {
  return childProcesses(parent)
    .map((line) => Number(line.split(' ', 1)[0]))
    .filter((pid) => fileText(`/proc/${pid}/cmdline`).includes('scalems-spawner'));
}

/** Threads of this process (its main thread, libuv's and V8's helpers, worker threads). */
export function osThreads(): number {
  return readdirSync('/proc/self/task').length;
}

/**
 * The lines of a log that work appends to: `s <i> <time>` when item i starts, `e <i> <time>` when it
 * ends (times from `process.hrtime.bigint()`). Items that ran as several ranks have several of each.
 */
export function readSpans(log: string): Map<number, { starts: bigint[]; ends: bigint[] }> {
  const items = new Map<number, { starts: bigint[]; ends: bigint[] }>();
  for (const line of fileText(log).split('\n')) {
    const [what, i, time] = line.trim().split(' ');
    if ((what !== 's' && what !== 'e') || i === undefined || time === undefined) continue;
    let item = items.get(Number(i));
    if (item === undefined) items.set(Number(i), (item = { starts: [], ends: [] }));
    (what === 's' ? item.starts : item.ends).push(BigInt(time));
  }
  return items;
}

export type Interval = readonly [start: bigint, end: bigint];

/** Most intervals open at once (an interval that ends when another starts does not overlap it). */
export function maxOverlap(intervals: Iterable<Interval>): number {
  const events: Array<[bigint, number]> = [];
  for (const [start, end] of intervals) events.push([start, 1], [end, -1]);
  events.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  let open = 0;
  let max = 0;
  for (const [, delta] of events) max = Math.max(max, (open += delta));
  return max;
}

/** True if the two intervals share some time. */
export const overlaps = (a: Interval, b: Interval): boolean => a[0] < b[1] && b[0] < a[1];

export const MS = 1_000_000n;

/** A small seeded generator (mulberry32), numbers in [0, 1): the same sequence on every run of a test. */
export function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * A program (for `bash -c`) whose every run notes in `<dir>/log` whether the run before it still runs (`beside`) or
 * not (`alone`), then ignores SIGTERM, so that only SIGKILL ends it: for the attempts of one task, which must never run
 * side by side. `runs()` reads the notes.
 */
export function overlapProbe(dir: string): { readonly script: string; runs(): string[] } {
  const log = join(dir, 'log');
  const script =
    `prev=$(cat ${dir}/pid 2>/dev/null); if [ -n "$prev" ] && kill -0 "$prev" 2>/dev/null; ` +
    `then echo beside >> ${log}; else echo alone >> ${log}; fi; ` +
    `echo $$ > ${dir}/pid; trap "" TERM; sleep 100 & wait`;
  return { script, runs: () => fileText(log).trim().split('\n') };
}

/**
 * A CommonJS task module at `file` that defines `prep` as the task `name`, returning `{ code, n }`; `write(code)`
 * writes (or edits) it. It loads this repository's scalems from src/: in jest, on threads and on Slurm nodes alike.
 */
export function editableTaskModule(file: string, name: string): { write(code: string): void } {
  const scalems = JSON.stringify(join(__dirname, '..', '..', 'src', 'node', 'auto.ts'));
  return {
    write: (code) =>
      writeFileSync(
        file,
        `const { defineTask } = require(${scalems});\n` +
          `exports.prep = defineTask('${name}', (n) => ({ code: '${code}', n }));\n`,
      ),
  };
}
