/**
 * `scalems logs`: a task's stdout and stderr, from the working directory of one of its attempts
 * (`<workflow dir>/tasks/<id>/attempt-<n>/`, as `processes()`, `slurm()` and `bullmq()` leave them), read-only.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { StringDecoder } from 'node:string_decoder';
import { parseArgs } from 'node:util';
import type { TaskRecord } from '../store/state';
import { CliError, EXIT_FAILURE, EXIT_OK, UsageError, wholeNumber, type CliIo, type Command } from './command';
import { locateOne, readWorkflow } from './locate';
import { printableBlock, printableLine } from './printable';

const USAGE = `usage: scalems logs [dir] <task id|label> [--attempt N] [--stdout|--stderr] [--tail N] [--raw]

Prints what an executable task wrote to stdout and stderr, from the directory of one attempt
(<workflow dir>/tasks/<id>/attempt-<n>/), read-only: a running workflow may hold the store.
  dir          a workflow directory (.scalems/<name>), its state.sqlite, or a directory holding one
               workflow (default: .scalems under the current directory)
  task         its label, its id, or the start of its id
  --attempt N  that attempt (default: the last)
  --stdout     only stdout, as written (no header)
  --stderr     only stderr, as written (no header)
  --tail N     only the last N lines of each
  --raw        print control characters as they are even on a terminal (there they are escaped by
               default, as in \`scalems status\`, so that a program's output cannot drive the terminal)
`;

/** The task that `wanted` designates: its label, its id, or an unambiguous start of its id. */
export function findTask(records: readonly TaskRecord[], wanted: string, workflow: string): TaskRecord {
  const exact = records.find((r) => r.label === wanted) ?? records.find((r) => r.id === wanted);
  if (exact !== undefined) return exact;
  const started = records.filter((r) => r.id.startsWith(wanted));
  if (started.length === 1) return started[0]!;
  if (started.length > 1)
    throw new CliError(
      `"${printableLine(wanted)}" starts the ids of ${started.length} tasks of workflow ${workflow} ` +
        `(${started
          .slice(0, 5)
          .map((r) => printableLine(r.label ?? r.id))
          .join(', ')}${started.length > 5 ? ', ...' : ''}): ` +
        `give more of the id, or the label`,
    );
  const labels = records.flatMap((r) => (r.label === undefined ? [] : [r.label]));
  const near = nearest(wanted, [...labels, ...records.map((r) => r.id)]);
  const known =
    records.length === 0
      ? 'it has no tasks'
      : `it has ${records.length} task${records.length === 1 ? '' : 's'}` +
        (labels.length === 0
          ? ', none labelled: name one by its id'
          : `; labels: ${labels.slice(0, 8).map(printableLine).join(', ')}${labels.length > 8 ? ', ...' : ''}`);
  throw new CliError(
    `no task "${printableLine(wanted)}" in workflow ${workflow}: ${known}.` +
      (near.length > 0 ? ` Did you mean ${near.map((n) => `"${printableLine(n)}"`).join(' or ')}?` : '') +
      ' (`scalems status` lists the failed ones, `scalems graph` all.)',
  );
}

/** Up to three candidates within a small edit distance of `wanted`, closest first. */
function nearest(wanted: string, candidates: readonly string[]): string[] {
  const limit = Math.max(2, Math.floor(wanted.length / 3));
  return candidates
    .map((c) => [c, distance(wanted.toLowerCase(), c.toLowerCase())] as const)
    .filter(([, d]) => d <= limit)
    .sort((a, b) => a[1] - b[1])
    .slice(0, 3)
    .map(([c]) => c);
}

/** Levenshtein distance (strings are labels: short). */
function distance(a: string, b: string): number {
  if (Math.abs(a.length - b.length) > 8) return Infinity;
  let row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++)
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    row = next;
  }
  return row[b.length]!;
}

/** The attempt numbers that have a directory under `taskDir`, ascending (also `scalems serve`'s task page). */
export function attemptsIn(taskDir: string): number[] {
  let names: string[];
  try {
    names = fs.readdirSync(taskDir);
  } catch {
    return [];
  }
  return names
    .map((n) => /^attempt-(\d+)$/.exec(n)?.[1])
    .filter((n): n is string => n !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
}

/**
 * The last `lines` lines of a file, read from its end in chunks (a large log is not read whole), and of them at most
 * the last `maxBytes` bytes or so (a log of one endless line is not read whole either). Also `scalems serve`'s.
 */
export function tailOf(file: string, lines: number, maxBytes = Infinity): string {
  const tail = tailBytes(file, lines, maxBytes);
  // as text, a last line without its newline is given one
  return tail.length > 0 && tail[tail.length - 1] !== 10 ? `${tail.toString('utf8')}\n` : tail.toString('utf8');
}

/** `tailOf`'s bytes, as the file has them. */
function tailBytes(file: string, lines: number, maxBytes = Infinity): Buffer {
  if (lines <= 0) return EMPTY;
  const fd = openRegular(file);
  if (fd === undefined) return EMPTY;
  try {
    const size = fs.fstatSync(fd).size;
    const chunks: Buffer[] = [];
    let newlines = 0;
    let pos = size;
    // a final newline ends the last line rather than starting an empty one
    const wanted = lines + 1;
    while (pos > 0 && newlines < wanted && size - pos < maxBytes) {
      const n = Math.min(65536, pos);
      pos -= n;
      const buf = Buffer.alloc(n);
      fs.readSync(fd, buf, 0, n, pos);
      chunks.unshift(buf);
      for (const b of buf) if (b === 10) newlines++;
    }
    const bytes = Buffer.concat(chunks);
    const ended = bytes.length > 0 && bytes[bytes.length - 1] === 10;
    // the start of the last `lines` lines (of what was read, if it has fewer)
    let start = 0;
    for (let i = bytes.length - (ended ? 2 : 1), seen = 0; i >= 0; i--)
      if (bytes[i] === 10 && ++seen === lines) {
        start = i + 1;
        break;
      }
    let tail = bytes.subarray(start);
    if (!Number.isFinite(maxBytes) || tail.length <= maxBytes) return tail;
    // (lines were counted in chunks of 64 KiB: long ones went past the bound) the last maxBytes, from a whole character
    tail = tail.subarray(-maxBytes);
    let first = 0;
    while (first < tail.length && (tail[first]! & 0xc0) === 0x80) first++;
    return tail.subarray(first);
  } finally {
    fs.closeSync(fd);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The file opened for reading if it is a regular file (a link to one included), else undefined. Opened without
 * waiting: a FIFO named stdout (a program's doing) would hold the opener until a writer came (before, the whole
 * dashboard).
 */
function openRegular(file: string): number | undefined {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  if (fs.fstatSync(fd).isFile()) return fd;
  fs.closeSync(fd);
  return undefined;
}

/** Copies a file to `write` in chunks: its bytes, or as text for `escape` (a terminal). */
function copyOut(file: string, write: (chunk: string | Uint8Array) => void, escape: boolean): void {
  const fd = openRegular(file);
  if (fd === undefined) return write(`(${file} is not a regular file: not read)\n`);
  try {
    const decoder = new StringDecoder('utf8');
    const buf = Buffer.alloc(65536);
    for (;;) {
      const n = fs.readSync(fd, buf, 0, buf.length, null);
      if (n === 0) break;
      // a copy: the stream may still hold the chunk when the buffer is read into again
      write(escape ? printableBlock(decoder.write(buf.subarray(0, n))) : Buffer.from(buf.subarray(0, n)));
    }
    if (escape) write(printableBlock(decoder.end()));
  } finally {
    fs.closeSync(fd);
  }
}

export const logsCommand: Command = {
  summary: "a task's stdout and stderr (the last attempt's, or --attempt N)",
  usage: USAGE,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        attempt: { type: 'string' },
        stdout: { type: 'boolean' },
        stderr: { type: 'boolean' },
        tail: { type: 'string' },
        raw: { type: 'boolean' },
      },
    });
    if (positionals.length === 0 || positionals.length > 2)
      throw new UsageError(
        `expected a task (its label or id), after an optional directory; got ${positionals.length} arguments`,
      );
    const [dir, wanted] = positionals.length === 2 ? positionals : [undefined, positionals[0]!];
    // (before: '' and ' ' were 0)
    const attemptAsked = wholeNumber('attempt', values.attempt, 1);
    const tail = wholeNumber('tail', values.tail, 0);
    if (values.stdout === true && values.stderr === true)
      throw new UsageError('--stdout and --stderr each select one stream: give neither to print both');

    const where = locateOne(dir, io.cwd, (one) => `scalems logs ${one} ${wanted}`);
    const { name, records } = await readWorkflow(where.file);
    const workflow = name ?? where.name;
    const rec = findTask(records, wanted!, workflow);
    const shown = printableLine(rec.label === undefined ? rec.id : `"${rec.label}" (${rec.id})`);
    if (rec.kind === 'function') {
      io.stderr.write(
        `task ${shown} runs the function ${printableLine(rec.name)}: it has no output files. Its result or ` +
          'error is in the store (`scalems status --verbose` shows the error of a failed one).\n',
      );
      return EXIT_FAILURE;
    }
    const taskDir = path.join(path.dirname(where.file), 'tasks', rec.id);
    const attempts = attemptsIn(taskDir);
    if (attempts.length === 0) {
      throw new CliError(
        `task ${shown} has no attempt directory in ${taskDir} (it is ${rec.state}, ${rec.attempts} attempts recorded)` +
          (rec.attempts === 0
            ? ': it has not started yet'
            : ': its working directories were removed or are elsewhere') +
          '.',
      );
    }
    const attempt = attemptAsked ?? attempts.at(-1)!;
    if (!attempts.includes(attempt))
      throw new CliError(`task ${shown} has no attempt ${attempt}; its attempts here: ${attempts.join(', ')}`);
    const attemptDir = path.join(taskDir, `attempt-${attempt}`);
    const escape = values.raw !== true && (io.stdout as { isTTY?: boolean }).isTTY === true;
    // into a pipe or a file the bytes as they are (decoded as text, those not UTF-8 came out as U+FFFD)
    /** the last byte written of a file (under headers, the next header starts a line of its own, as tail's do) */
    let last = 10;
    const write = (chunk: string | Uint8Array): void => {
      if (chunk.length === 0) return;
      last = typeof chunk === 'string' ? chunk.charCodeAt(chunk.length - 1) : chunk[chunk.length - 1]!;
      io.stdout.write(chunk);
    };
    const streams = values.stdout === true ? ['stdout'] : values.stderr === true ? ['stderr'] : ['stdout', 'stderr'];
    const headers = streams.length > 1;
    for (const stream of streams) {
      const file = path.join(attemptDir, stream);
      if (headers)
        io.stdout.write(`${last === 10 ? '' : '\n'}==> ${stream} of task ${shown}, attempt ${attempt} (${file}) <==\n`);
      if (!fs.existsSync(file)) {
        if (headers) io.stdout.write('(none: not written)\n');
        else io.stderr.write(`task ${shown}, attempt ${attempt}: no ${stream} file at ${file}\n`);
        continue;
      }
      if (tail !== undefined) write(escape ? printableBlock(tailOf(file, tail)) : tailBytes(file, tail));
      else copyOut(file, write, escape);
      if (headers && fs.statSync(file).size === 0) io.stdout.write('(empty)\n');
    }
    return EXIT_OK;
  },
};
