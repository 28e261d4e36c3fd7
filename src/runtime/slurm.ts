// slurm(): one allocation per executor scope (the pilot), each task attempt one job step in it.
import { join, resolve as resolvePath } from 'node:path';
import { Observable } from 'rxjs';
import { SlurmStepError, UnknownTaskError, UnregisteredFunctionError, UnsatisfiableRequirementsError, UnserializableValueError } from '../errors';
import { SPEC_FN, registeredName, type TaskSpec } from '../task/spec';
import { validateTaskRequirements, type TaskRequirements } from '../task/requirements';
import type { Backend, BackendExecutor, Job } from './backend';
import { acceptExecutable } from './executable-inputs';
import { Allocation } from './slurm-allocation';
import { jsonProblem } from './slurm-json';
import { allocationRequest, checkRequest, clusterInfo, sallocArgs, stepConflict, type AllocationRequest, type ClusterInfo, type SlurmBackendOptions } from './slurm-options';
import { DEFAULT_STEP_GRACE_SECONDS, srunEnv, startStep, type RunningStep, type StepOutcome } from './slurm-steps';
import { DEFAULT_MPIRUN_ARGS, entryCommand, planExecutable, planFunction, type StepPlan, type TaskPlanContext } from './slurm-tasks';
import { workflowDirectory } from './workdir';
import { resolveModules } from './thread-modules';

export type { SlurmBackendOptions } from './slurm-options';

/**
 * Runs tasks on a Slurm cluster, the way RADICAL-Pilot does: each executor scope obtains ONE allocation
 * (`salloc`, sized from the executor's worker requirements and the backend's options) and each task
 * attempt is one job step in it (`srun --exact`): executables directly, `ranks > 1` through `mpirun`
 * (or srun's PMIx), and `defineTask` functions of `modules` through the `scalems-task` entry point.
 * The allocation is released when the executor has shut down and its tasks have settled; it is
 * released by Slurm as well if this program dies.
 */
export function slurm(options: SlurmBackendOptions = {}): Backend {
  const launcher = options.launcher ?? 'mpirun';
  if (launcher !== 'mpirun' && launcher !== 'srun') throw new TypeError(`slurm({ launcher }): expected 'mpirun' or 'srun', got ${String(launcher)}`);
  if (options.walltime !== undefined && !(options.walltime > 0)) throw new RangeError(`slurm({ walltime }): expected a positive number of seconds, got ${String(options.walltime)}`);
  if (options.nodes !== undefined && !(Number.isInteger(options.nodes) && options.nodes > 0)) throw new RangeError(`slurm({ nodes }): expected a positive integer, got ${String(options.nodes)}`);
  const grace = options.gracePeriod ?? DEFAULT_STEP_GRACE_SECONDS;
  if (!(grace >= 0)) throw new RangeError(`slurm({ gracePeriod }): expected a non-negative number of seconds, got ${String(options.gracePeriod)}`);
  const modules = resolveModules(options.modules ?? [], 'slurm', { allowEmpty: true });
  const defined = probeModules(modules);
  const root = resolvePath(options.root ?? join(process.cwd(), '.scalems'));
  const hostCwd = process.cwd();
  const entry = modules.length > 0 ? entryCommand(modules, options.node ?? process.execPath) : [];
  const open = new Set<BackendExecutor>();
  const moduleList = modules.join(', ') || 'none';

  const acceptFunction = (spec: TaskSpec): void => {
    const fn = spec[SPEC_FN];
    const what = fn !== undefined && fn.name !== '' ? `function ${fn.name}` : spec.name !== 'anonymous' ? `function ${spec.name}` : 'an anonymous function';
    if (fn !== undefined && registeredName(fn) === undefined) {
      throw new UnregisteredFunctionError(
        `${what} cannot be sent to a Slurm job step: slurm() runs only functions registered with defineTask(name, fn) in one of its modules (${moduleList}). Move it into such a module, wrap it with defineTask, export it, and pass the module to slurm({ modules }).`,
      );
    }
    if (modules.length === 0) throw new UnregisteredFunctionError(`${what} cannot run on slurm(): no modules were given to slurm({ modules }) to load its defineTask functions from in the job steps`);
    if (defined !== undefined && !defined.has(spec.name)) {
      throw new UnknownTaskError(`no task named "${spec.name}" is defined by the modules given to slurm({ modules }) (${moduleList}): define it with defineTask("${spec.name}", fn) in one of them and export it`);
    }
    for (let i = 0; i < spec.args.length; i++) {
      const problem = jsonProblem(spec.args[i], `argument ${i}`, true);
      if (problem !== undefined) throw new UnserializableValueError(`task ${spec.label ?? spec.name}: ${problem}; arguments of slurm() function tasks travel to the job step as JSON. Pass plain data.`);
    }
  };

  return {
    kind: 'slurm',
    open(worker, { workflow, executorId }): BackendExecutor {
      const cluster = clusterInfo();
      const request = allocationRequest(worker, options);
      const capacity = checkRequest(request, cluster);
      const workflowDir = workflowDirectory(root, workflow.name);
      const alloc = new Allocation(`scalems-${executorId}-${process.pid}`, sallocArgs(request), srunEnv({}));
      const ctx: TaskPlanContext = { workflowDir, hostCwd, launcher, mpirunArgs: options.mpirunArgs ?? DEFAULT_MPIRUN_ARGS, workerEnv: worker.env ?? {}, entryCommand: entry };
      const names = new Set<string>();
      const check = (req: TaskRequirements, where: string): void => {
        const problem = taskProblem(req, request, cluster, launcher);
        if (problem !== undefined) throw new UnsatisfiableRequirementsError(`${where} can never run on this Slurm executor: ${problem}`);
      };
      const ex: BackendExecutor = {
        capacity,
        invokes: false,
        accept(spec) {
          if (spec.kind === 'executable') acceptExecutable(spec, workflow, 'copy');
          else acceptFunction(spec);
          if (spec.requirements !== undefined) check(validateTaskRequirements(spec.requirements), `task ${spec.label ?? spec.name}`);
          if (spec.kind === 'function' && (spec.requirements?.ranks ?? 1) > 1) {
            throw new UnsatisfiableRequirementsError(`task ${spec.label ?? spec.name}: function tasks with ranks > 1 run on threads() (currentTask().comm); on slurm() give ranks > 1 to MPI executables`);
          }
        },
        run: (job) => runStep(job, alloc, ctx, names, check, grace),
        close: async () => {
          await alloc.release();
          open.delete(ex);
        },
      };
      open.add(ex);
      return ex;
    },
    async shutdown() {
      await Promise.all([...open].map((ex) => ex.close()));
    },
  };
}

/** Why a task's requirements cannot hold in this allocation, or undefined. */
function taskProblem(req: TaskRequirements, allocation: AllocationRequest, cluster: ClusterInfo, launcher: 'mpirun' | 'srun'): string | undefined {
  const conflict = stepConflict(req.slurm, allocation, cluster);
  if (conflict !== undefined) return conflict;
  const ranks = req.ranks ?? 1;
  if (ranks > 1 && launcher === 'srun') return undefined;
  const partition = cluster.partitions.get(allocation.partition ?? cluster.defaultPartition ?? '');
  const perNode = Math.max(0, ...(partition?.nodes.map((n) => n.cpus) ?? []));
  const need = ranks * (req.coresPerRank ?? 1);
  if (partition !== undefined && need > perNode) {
    return `it needs ${need} cores on one node (ranks ${ranks} × coresPerRank ${req.coresPerRank ?? 1}${ranks > 1 ? ', started by mpirun in one step' : ''}) but the nodes of partition "${partition.name}" have at most ${perNode}${ranks > 1 ? "; use slurm({ launcher: 'srun' }) to spread ranks over nodes" : ''}`;
  }
  return undefined;
}

/** A step name srun and squeue take as it is: the task's label, else its id; unique among the live steps of the allocation. */
function stepName(job: Job, live: Set<string>): string {
  const base = (job.label ?? job.id).replace(/[^\w.:@+-]/g, '_').slice(0, 100) || job.id;
  let name = base;
  for (let i = 2; live.has(name); i++) name = `${base}~${i}`;
  live.add(name);
  return name;
}

function runStep(job: Job, alloc: Allocation, ctx: TaskPlanContext, names: Set<string>, check: (req: TaskRequirements, where: string) => void, grace: number): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    let stopped = false;
    let step: RunningStep | undefined;
    let ended = false;
    const where = `task ${job.label ?? job.name} (${job.id})`;
    const attempt = async (): Promise<{ value: unknown } | undefined> => {
      check(job.requirements, where);
      const jobId = alloc.usable() ?? (await alloc.ready());
      if (stopped) return undefined;
      const plan: StepPlan = job.kind === 'executable' ? await planExecutable(job, ctx, where) : await planFunction(job, ctx, where);
      if (stopped) return undefined;
      const name = stepName(job, names);
      step = startStep({ jobId, name, options: plan.options, command: plan.command, env: srunEnv(plan.env), cwd: ctx.hostCwd, stderrFile: plan.stderrFile });
      let outcome: StepOutcome;
      try {
        outcome = await step.done;
      } finally {
        ended = true;
        names.delete(name);
      }
      if (stopped) return undefined;
      // a step has a Slurm time limit of its own only with a walltime (a backstop: see stepResourceArgs)
      const failure = await slurmFailure(outcome, alloc, where, jobId, job.requirements.walltime !== undefined);
      if (failure !== undefined) throw failure;
      return { value: await plan.finish(outcome) };
    };
    attempt().then(
      (result) => {
        if (result === undefined || stopped) return;
        subscriber.next(result.value);
        subscriber.complete();
      },
      (err: unknown) => {
        if (!stopped) subscriber.error(err);
      },
    );
    return () => {
      stopped = true;
      if (step !== undefined && !ended) alloc.track(step.cancel(grace));
    };
  });
}

/** The failure Slurm itself reports for a step (not the program's own exit code), if any. */
async function slurmFailure(outcome: StepOutcome, alloc: Allocation, where: string, jobId: string, hasStepLimit: boolean): Promise<Error | undefined> {
  const ended = outcome.state === 'COMPLETED' || (outcome.state === 'FAILED' && outcome.launched) ? undefined : await alloc.checkEnded(outcome.state === 'TIMEOUT');
  const said = outcome.messages !== '' ? `; Slurm said:\n${outcome.messages}` : '';
  if (!outcome.launched && outcome.state === 'FAILED') {
    if (ended !== undefined) return ended;
    return new SlurmStepError(`${where}: srun could not start a job step in allocation ${jobId}${said}`, 'FAILED', outcome.exitCode, null);
  }
  const step = outcome.step ?? `${jobId}.?`;
  switch (outcome.state) {
    case 'COMPLETED':
    case 'FAILED':
      return undefined;
    case 'TIMEOUT':
      return new SlurmStepError(
        ended?.state === 'TIMEOUT' || !hasStepLimit
          ? `${where}: job step ${step} was stopped because its allocation ${jobId} reached its time limit (the executor's worker walltime); give the executor a longer walltime${said}`
          : `${where}: job step ${step} reached its Slurm time limit${said}`,
        'TIMEOUT',
        outcome.exitCode,
        step,
      );
    case 'CANCELLED':
      return new SlurmStepError(
        `${where}: job step ${step} was cancelled outside this program${ended !== undefined ? ` (its allocation ended: ${ended.state ?? 'unknown'})` : ' (scancel?)'}${said}`,
        'CANCELLED',
        outcome.exitCode,
        step,
      );
    case 'OUT_OF_MEMORY':
      return new SlurmStepError(`${where}: job step ${step} ran out of memory (OUT_OF_MEMORY); ask for more with the memoryMB requirement${said}`, 'OUT_OF_MEMORY', outcome.exitCode, step);
    default:
      return new SlurmStepError(`${where}: job step ${step} ended with state ${outcome.state}${said}`, outcome.state, outcome.exitCode, step);
  }
}


/** Loads the modules here too, to refuse unknown task names at submit. Undefined if they cannot be loaded here (ESM). */
function probeModules(modules: readonly string[]): Set<string> | undefined {
  const names = new Set<string>();
  for (const path of modules) {
    let exports: unknown;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- loading the user's task modules, synchronously
      exports = require(path);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_REQUIRE_ESM' || code === 'ERR_UNKNOWN_FILE_EXTENSION' || (/\.[cm]?ts$/.test(path) && err instanceof SyntaxError)) return undefined;
      throw new TypeError(`slurm({ modules }): module ${path} failed to load: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    for (const value of [exports, ...(typeof exports === 'object' && exports !== null ? Object.values(exports) : [])]) {
      if (typeof value === 'function') {
        const name = registeredName(value as (...args: never[]) => unknown);
        if (name !== undefined) names.add(name);
      }
    }
  }
  return names;
}
