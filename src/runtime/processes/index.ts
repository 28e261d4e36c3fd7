/**
 * `processes()`: executables as child processes of this one, each in a working directory of its own
 * (the local executable attempt, `../executable/local.ts`); `ranks > 1` through `mpirun -np <ranks>`.
 */
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import type { Backend, BackendExecutor } from '../backend';
import { checkOptions, rules, type RulesOf } from '../../task/options';
import { acceptExecutable } from '../executable/inputs';
import { changedReads, inputsIdentity, missingFiles, upstreamReads } from '../executable/digest';
import { runLocalExecutable, type LocalRunContext } from '../executable/local';
import { ownerOf, parseToken, placeOf } from '../executable/marks';
import type { MpiOptions } from '../executable/mpi';
import { DEFAULT_GRACE_SECONDS, killMarked, startOf } from '../executable/process-tree';
import { MAX_SPAWNERS, SpawnerPool, type PoolGate } from '../executable/spawner-pool';
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
 * Runs `executable(argv, ...)` tasks as processes, never through a shell, started by a small spawner process (one
 * per backend: it makes the working directories and files and forks, so that this process does neither). Each
 * attempt runs in its own working directory, `<root>/<workflow>/tasks/<task id>/attempt-<n>/`, with its inputs staged
 * in and its stdout and stderr kept there as files. Each program leads its own session and process
 * group: cancelling the task (or exceeding its walltime) sends SIGTERM to the whole tree, then SIGKILL
 * after `gracePeriod` seconds, and the executor's scope is not released until no process of it is left. Every
 * process of an attempt carries its mark in `SCALEMS_ATTEMPT`, which also finds those that daemonised; the spawner
 * ends them all if this process dies (SIGKILL) first, and a later run of the workflow ends what a dead run
 * left before it starts anything. Unknown options, and values of the wrong type, throw `InvalidOptionsError`.
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
  checkOptions('processes', options, PROCESSES_OPTIONS);
  const root = resolve(options.root ?? join(process.cwd(), '.scalems'));
  const hostCwd = process.cwd();
  const grace = options.gracePeriod ?? DEFAULT_GRACE_SECONDS;
  const staging = options.staging ?? 'copy';
  const ending = new Set<Promise<void>>();
  const settle = async (): Promise<void> => {
    while (ending.size > 0) await Promise.all([...ending]);
  };
  // marks: <owner>-<backend>-<executor>-<attempt>-<place> (see marks.ts)
  const owner = ownerOf(process.pid, startOf(process.pid));
  const since = Number(startOf(process.pid) ?? 0);
  const prefix = `${owner}-${++backends}-`;
  // make the directories and files and fork the programs, and end them if this process dies first
  const spawners = new SpawnerPool(Math.min(availableParallelism(), MAX_SPAWNERS), prefix, grace);
  const resumed = new Map<string, Promise<void>>();
  let executors = 0;
  let attempts = 0;
  return {
    kind: 'processes',
    open(worker, { workflow }): BackendExecutor {
      const cores = worker.cores ?? options.cores ?? availableParallelism();
      const workflowDir = workflowDirectory(root, workflow.name);
      const place = placeOf(workflowDir);
      const mine = `${prefix}${++executors}-`;
      let used = false;
      const ctx: LocalRunContext<PoolGate> = {
        workflowDir,
        hostCwd,
        grace,
        staging,
        mpi: options.mpi ?? {},
        workerEnv: worker.env ?? {},
        ending,
        // the executor's cores are held in the spawners: a program starts the moment another exits
        spawner: spawners,
        spawnerGate: spawners.gate(cores),
        marks: {
          next: () => {
            used = true;
            return `${mine}${++attempts}-${place}`;
          },
        },
        ready: resumed.get(place) ?? resumed.set(place, endLeftovers(place, owner, grace)).get(place),
      };
      return {
        // One-core tasks are handed over ahead, QUEUE_PER_CORE per core: each has its working directory and files
        // made while the others run, then waits in the spawner for a core, so that a core goes from program to
        // program without waiting for the file system or for this process.
        capacity: {
          cores,
          gpus: worker.gpus ?? 0,
          memoryMB: worker.memoryMB ?? Infinity,
          queue: cores * QUEUE_PER_CORE,
        },
        invokes: false,
        accept: (spec) => acceptExecutable(spec, workflow, staging),
        identity: (spec) => inputsIdentity(spec, hostCwd),
        missing: missingFiles,
        reads: (args, resolved) => upstreamReads(args, resolved, hostCwd, workflowDir),
        changed: changedReads,
        run: (job) => runLocalExecutable(job, ctx),
        // what the programs of this scope left running (daemons, which left their trees) goes too
        close: async () => {
          await settle();
          if (used) await killMarked({ mark: (t) => t.startsWith(mine), since }, grace);
        },
      };
    },
    shutdown: async () => {
      await settle();
      if (attempts > 0) await killMarked({ mark: (t) => t.startsWith(prefix), since }, grace);
      await spawners.close();
    },
  };
}

/**
 * One-core tasks handed over ahead of a free core, per core. The spawner starts the next of them the moment a program
 * exits; once none is left there, the core waits for this process to hand over another, a round trip through its
 * event loop (about a millisecond of its CPU per task). 1 per core: 43% of 1000 `true` programs on 2 cores found none
 * left when a core freed; 2: 32%, 3: 23%, 4: 15%, 6: 11%. Each waiting one holds its two files open in the spawner.
 */
const QUEUE_PER_CORE = 4;

/** processes() backends made by this process: a part of their marks. */
let backends = 0;

/**
 * Ends what an earlier run of the workflow at `place` left running, if that run's process is dead: its spawner ends
 * it, but may not have finished (or may have been killed with it). So no program runs beside a copy of itself.
 */
function endLeftovers(place: string, owner: string, grace: number): Promise<void> {
  const ownerAlive = new Map<string, boolean>();
  const dead = (token: string): boolean => {
    const t = parseToken(token);
    if (t === undefined || t.place !== place || t.owner === owner) return false;
    let alive = ownerAlive.get(t.owner);
    if (alive === undefined) {
      const [pid, start] = t.owner.split('.') as [string, string];
      ownerAlive.set(t.owner, (alive = startOf(Number(pid)) === start));
    }
    return !alive;
  };
  return killMarked({ mark: dead }, grace).catch(() => undefined);
}

const PROCESSES_OPTIONS = {
  cores: rules.positiveInteger,
  root: rules.path('a directory path'),
  gracePeriod: rules.seconds(),
  staging: rules.oneOf('copy', 'symlink'),
  mpi: rules.object('an object { command?, args?, slots? }', {
    command: rules.text('a program (a non-empty string)'),
    args: rules.strings(),
    slots: rules.positiveInteger,
  } satisfies RulesOf<MpiOptions>),
} satisfies RulesOf<ProcessesOptions>;
