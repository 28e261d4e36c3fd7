/**
 * `processes()`: executables as child processes of this one, each in a working directory of its own
 * (the local executable attempt, `../executable/local.ts`); `ranks > 1` through `mpirun -np <ranks>`.
 */
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Backend, BackendExecutor } from '../backend';
import { CoreGate } from '../executable/core-gate';
import { acceptExecutable } from '../executable/inputs';
import { inputsIdentity } from '../executable/digest';
import { runLocalExecutable, type LocalRunContext } from '../executable/local';
import type { MpiOptions } from '../executable/mpi';
import { DEFAULT_GRACE_SECONDS } from '../executable/process-tree';
import { workflowDirectory, type StagingMode } from '../executable/workdir';

export interface ProcessesOptions {
  /**
   * Cores an executor may use at once, unless its worker requirements say.
   * @default os.availableParallelism()
   */
  readonly cores?: number;
  /**
   * Where workflow directories go: tasks run in `<root>/<workflow>/tasks/<id>/attempt-<n>/`.
   * @default `<cwd>/.scalems`
   */
  readonly root?: string;
  /**
   * Seconds between SIGTERM and SIGKILL when a task is cancelled or runs out of walltime.
   * @default 3
   */
  readonly gracePeriod?: number;
  /**
   * How inputs are put into working directories: `copy` (copy-on-write where possible) or `symlink`.
   * @default 'copy'
   */
  readonly staging?: StagingMode;
  /** How `ranks > 1` is launched (see `MpiOptions`). */
  readonly mpi?: MpiOptions;
}

/**
 * Runs `executable(argv, ...)` tasks as child processes, never through a shell. Each attempt runs in
 * its own working directory, `<root>/<workflow>/tasks/<task id>/attempt-<n>/`, with its inputs staged
 * in and its stdout and stderr kept there as files. Each program leads its own session and process
 * group: cancelling the task (or exceeding its walltime) sends SIGTERM to the whole tree, then SIGKILL
 * after `gracePeriod` seconds, and the executor's scope is not released until no process of it is left.
 *
 * ## Example
 * ```ts
 * const rt = launch(await openWorkflow({ name: 'md' }), processes({ gracePeriod: 5 }));
 * await using ex = executor(rt, { worker: { cores: 4 } });
 * const run = ex.submit(executable(['gmx', 'mdrun', '-s', 'topol.tpr'], { inputs: { 'topol.tpr': 'in/topol.tpr' },
 * outputs: ['confout.gro'] }));
 * console.log((await run).outputs['confout.gro'].$file);
 * ```
 */
export function processes(options: ProcessesOptions = {}): Backend {
  const root = resolve(options.root ?? join(process.cwd(), '.scalems'));
  const hostCwd = process.cwd();
  const grace = options.gracePeriod ?? DEFAULT_GRACE_SECONDS;
  if (!(grace >= 0))
    throw new RangeError(`processes({ gracePeriod }): expected a non-negative number of seconds, got ${String(grace)}`);
  if (options.cores !== undefined && !(Number.isInteger(options.cores) && options.cores > 0)) {
    throw new RangeError(`processes({ cores }): expected a positive integer, got ${String(options.cores)}`);
  }
  const staging = options.staging ?? 'copy';
  const ending = new Set<Promise<void>>();
  const settle = async (): Promise<void> => {
    while (ending.size > 0) await Promise.all([...ending]);
  };
  return {
    kind: 'processes',
    open(worker, { workflow }): BackendExecutor {
      const cores = worker.cores ?? options.cores ?? availableParallelism();
      const ctx: LocalRunContext = {
        workflowDir: workflowDirectory(root, workflow.name),
        hostCwd,
        grace,
        staging,
        mpi: options.mpi ?? {},
        workerEnv: worker.env ?? {},
        ending,
        gate: new CoreGate(cores),
      };
      return {
        // One more one-core task per core is handed over ahead: it makes its working directory and files while the
        // others run, then waits at the gate, so that a core goes from program to program without waiting for the
        // file system.
        capacity: { cores, gpus: worker.gpus ?? 0, memoryMB: worker.memoryMB ?? Infinity, queue: cores },
        invokes: false,
        accept: (spec) => acceptExecutable(spec, workflow, staging),
        identity: (spec) => inputsIdentity(spec, hostCwd),
        run: (job) => runLocalExecutable(job, ctx),
        close: settle,
      };
    },
    shutdown: settle,
  };
}
