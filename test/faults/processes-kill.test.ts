// Faults of the driving program under processes(): killed with SIGKILL while its programs run (programs that sleep,
// ignore SIGTERM, fork, daemonise), nothing of them is left within seconds, and a resume runs exactly the unfinished
// tasks, once, never beside a leftover copy. Real processes and a real SQLite store; the driver is
// test/fixtures/faults/processes-driver.ts, run by node itself (tsx's CLI would run it in a child of its own, out of
// reach of the kill).
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TaskRecord } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { MAX_SPAWNERS } from '../../src/runtime/executable/spawner-pool';
import { fileText, isAlive, seeded, waitFor } from '../support/work';

const repo = join(__dirname, '..', '..');
const fixture = join(repo, 'test', 'fixtures', 'faults', 'processes-driver.ts');
const KEYS = ['plain', 'stubborn', 'forking', 'daemon'].flatMap((kind) => [0, 1, 2, 3].map((i) => `${kind}-${i}`));
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** The processes whose environment holds `NAME=value` (Linux: /proc/<pid>/environ), this one excepted. */
function carrying(name: string, value: string): number[] {
  const wanted = `${name}=${value}`;
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || !isAlive(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/environ`, 'latin1').split('\0').includes(wanted)) found.push(pid);
    } catch {
      // gone, or not ours
    }
  }
  return found;
}

const cmdline = (pid: number): string => {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'latin1').split('\0').join(' ');
  } catch {
    return '';
  }
};

interface Run {
  readonly child: ChildProcess;
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly stdout: () => string;
}

describe('processes(): the driver killed with SIGKILL leaves nothing running, and a resume runs each task once', () => {
  let dir: string;
  let state: string;
  let root: string;
  let log: string;
  let tag: string;
  const runs: ChildProcess[] = [];

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-faults-'));
    state = join(dir, 'state.sqlite');
    root = join(dir, 'root');
    log = join(dir, 'runs.log');
    tag = dir;
  });
  afterEach(() => {
    // whatever a failed check left goes (the programs sleep 300 s): by the test's own tag, never by name
    for (const c of runs.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    for (const pid of [...carrying('FAULT_TAG', tag), ...carrying('FAULT_DRIVER', tag)]) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
    rmSync(dir, { recursive: true, force: true });
  });

  const lines = (): string[] => fileText(log).split('\n').filter(Boolean);
  const startsIn = (from: number): string[] =>
    lines()
      .slice(from)
      .filter((l) => l.startsWith('start '))
      .map((l) => l.split(' ')[1]!);
  const leaderPids = (key: string): number[] =>
    lines()
      .filter((l) => l.startsWith(`start ${key} `))
      .map((l) => Number(l.split(' ')[2]));

  function drive(mode?: 'exit'): Run {
    const args = ['--require', 'tsx/cjs', fixture, state, root, log, tag, ...(mode !== undefined ? [mode] : [])];
    const child = spawn(process.execPath, args, {
      cwd: repo,
      env: { ...process.env, FAULT_DRIVER: tag },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    runs.push(child);
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
      child.once('exit', (code, signal) => resolve({ code, signal })),
    );
    return { child, exited, stdout: () => out };
  }

  async function succeeded(): Promise<Set<string>> {
    const store = sqliteStore(state, { readonly: true });
    try {
      const records = (await store.entries<TaskRecord>()).filter(([k]) => k.startsWith('task:')).map(([, r]) => r);
      const keyOf = (r: TaskRecord): string => (r.args[0] as { env: { FAULT_KEY: string } }).env.FAULT_KEY;
      return new Set(records.filter((r) => r.state === 'succeeded').map(keyOf));
    } finally {
      await store.close();
    }
  }

  /** Waits until the run has started every task in `expected` (and no other), each once, none beside a copy. */
  async function allStarted(from: number, expected: readonly string[]): Promise<void> {
    await waitFor(
      () => (startsIn(from).length >= expected.length ? true : undefined),
      () => `the run to start ${expected.join(' ')} (started: ${startsIn(from).join(' ')})`,
    );
    expect([...startsIn(from)].sort()).toEqual([...expected].sort());
    for (const key of expected) expect(leaderPids(key).filter(isAlive).length).toBeLessThanOrEqual(1);
  }

  /** Waits (up to `ms`) until no process of the test's programs is left; returns how long it took. */
  async function nothingLeft(ms: number): Promise<number> {
    const t0 = Date.now();
    await waitFor(
      () => (carrying('FAULT_TAG', tag).length === 0 ? true : undefined),
      () => `no program of the killed run to be left (left: ${carrying('FAULT_TAG', tag).map(cmdline).join(', ')})`,
      ms,
    );
    return Date.now() - t0;
  }

  it('SIGKILL at random moments (seeded): within seconds nothing is left; each resume runs exactly the unfinished tasks once', async () => {
    const random = seeded(12);
    let from = 0;
    let done = new Set<string>();
    for (let kill = 0; kill < 3; kill++) {
      const expected = KEYS.filter((k) => !done.has(k));
      const run = drive();
      await allStarted(from, expected);
      expect(carrying('FAULT_TAG', tag).length).toBeGreaterThanOrEqual(expected.length);
      await sleep(100 + Math.floor(random() * 900));
      run.child.kill('SIGKILL');
      expect((await run.exited).signal).toBe('SIGKILL');
      expect(await nothingLeft(5000)).toBeLessThan(5000);
      from = lines().length;
      const now = await succeeded();
      for (const key of done) expect(now.has(key)).toBe(true); // nothing recorded is lost
      done = now;
    }
    // the last run is not killed: it runs exactly what is left, once, and leaves nothing
    const expected = KEYS.filter((k) => !done.has(k));
    expect(expected.length).toBeGreaterThan(0);
    const last = drive();
    await allStarted(from, expected);
    expect(await last.exited).toEqual({ code: 0, signal: null });
    expect(JSON.parse(last.stdout())).toEqual({ tasks: KEYS.length, failed: 0 });
    expect([...startsIn(from)].sort()).toEqual([...expected].sort());
    expect((await succeeded()).size).toBe(KEYS.length);
    expect(carrying('FAULT_TAG', tag)).toEqual([]);
  }, 60_000);

  it('when the watchdog is killed with the driver, a resume first ends what the dead run left, then runs each task once', async () => {
    const run = drive();
    await allStarted(0, KEYS);
    const watchdogs = carrying('FAULT_DRIVER', tag).filter((pid) => cmdline(pid).includes('scalems-spawner'));
    // one per spawner: its 16 programs at once are spread over all of the backend's (spawner-pool.ts)
    expect(watchdogs).toHaveLength(Math.min(availableParallelism(), MAX_SPAWNERS));
    for (const pid of [run.child.pid!, ...watchdogs]) process.kill(pid, 'SIGKILL');
    await run.exited;
    await sleep(300);
    const leftovers = carrying('FAULT_TAG', tag);
    expect(leftovers.length).toBeGreaterThanOrEqual(KEYS.length); // nobody ended them
    const from = lines().length;
    const done = await succeeded();
    const last = drive();
    // by the time the resume's first program starts, what the dead run left is gone
    await waitFor(() => (startsIn(from).length > 0 ? true : undefined), 'the resume to start a program');
    expect(leftovers.filter(isAlive)).toEqual([]);
    await allStarted(
      from,
      KEYS.filter((k) => !done.has(k)),
    );
    expect(await last.exited).toEqual({ code: 0, signal: null });
    expect(carrying('FAULT_TAG', tag)).toEqual([]);
  }, 45_000);

  it('a driver that exits without shutting down is not held by its watchdog, and the watchdog ends what is left and goes', async () => {
    const run = drive('exit');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(JSON.parse(run.stdout())).toEqual({ tasks: KEYS.length, failed: 0 });
    // the daemons of finished programs, which the driver did not end, go with the watchdog, and so does it
    await nothingLeft(5000);
    await waitFor(() => (carrying('FAULT_DRIVER', tag).length === 0 ? true : undefined), 'the watchdog to exit', 5000);
  }, 45_000);
});
