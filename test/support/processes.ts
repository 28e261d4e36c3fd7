// Helpers for the processes()/MPI tests: temporary roots, waiting for files, checking process trees.
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executor, launch, memoryStore, openWorkflow, type Executor, type Runtime, type Workflow } from 'scalems';
import { processes, type ProcessesOptions } from 'scalems/node';
import { isAlive } from '../../src/runtime/executable/process-tree';

export interface Setup {
  readonly root: string;
  readonly wf: Workflow;
  readonly rt: Runtime;
  readonly ex: Executor;
}

const roots: string[] = [];

/** A workflow on a processes() runtime rooted in a fresh temporary directory. */
export async function setup(
  options: ProcessesOptions = {},
  ex: Parameters<typeof executor>[1] = {},
  name = 'wf',
): Promise<Setup> {
  const root = mkdtempSync(join(tmpdir(), 'scalems-proc-'));
  roots.push(root);
  const wf = await openWorkflow({ store: memoryStore(), name });
  const rt = launch(wf, processes({ root, ...options }));
  return { root, wf, rt, ex: executor(rt, ex) };
}

export function removeRoots(): void {
  for (const r of roots.splice(0)) rmSync(r, { recursive: true, force: true });
}

/** Polls until `probe` returns a value (not undefined); fails after `ms`. For waiting on events, not for timing. */
export async function waitFor<T>(probe: () => T | undefined, what: string, ms = 15_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** The pids a task printed, one per line, once there are `n` of them. */
export function pidsIn(path: string, n: number): number[] | undefined {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
  const pids = text
    .split('\n')
    .map((l) => Number(l.trim()))
    .filter((p) => Number.isInteger(p) && p > 0);
  return pids.length >= n ? pids : undefined;
}

export const alive = (pids: readonly number[]): number[] => pids.filter(isAlive);

/** Maximum number of [start, end] intervals open at once. */
export function maxOverlap(intervals: ReadonlyArray<readonly [bigint, bigint]>): number {
  const events = intervals.flatMap(
    ([s, e]) =>
      [
        [s, 1],
        [e, -1],
      ] as Array<[bigint, number]>,
  );
  events.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] - b[1]));
  let open = 0;
  let max = 0;
  for (const [, d] of events) max = Math.max(max, (open += d));
  return max;
}

/** Runs `examples/<file>` with tsx as a user would, in `cwd`. */
export function runExample(file: string, cwd: string): SpawnSyncReturns<string> {
  const repo = join(__dirname, '..', '..');
  return spawnSync(
    join(repo, 'node_modules', '.bin', 'tsx'),
    ['--tsconfig', join(repo, 'tsconfig.json'), join(repo, 'examples', file)],
    { cwd, encoding: 'utf8', timeout: 120_000 },
  );
}
