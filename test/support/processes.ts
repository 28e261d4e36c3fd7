/** Helpers for the processes()/MPI tests: temporary roots, waiting for files, checking process trees. */
import { spawnSync, type SpawnSyncReturns } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executor, launch, memoryStore, openWorkflow, type Executor, type Runtime, type Workflow } from 'scalems';
import { processes, type ProcessesOptions } from 'scalems/node';
import { isAlive } from './work';

export { waitFor } from './work';

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

/** Runs `examples/<file>` with tsx as a user would, in `cwd`. */
export function runExample(file: string, cwd: string): SpawnSyncReturns<string> {
  const repo = join(__dirname, '..', '..');
  return spawnSync(
    join(repo, 'node_modules', '.bin', 'tsx'),
    ['--tsconfig', join(repo, 'tsconfig.json'), join(repo, 'examples', file)],
    { cwd, encoding: 'utf8', timeout: 120_000 },
  );
}
