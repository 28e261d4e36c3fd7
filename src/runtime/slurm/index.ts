/**
 * `slurm()`: one allocation per executor scope (the pilot), each task attempt one job step in it.
 * The parts: `options.ts` (what the cluster offers, requests as salloc/srun options), `allocation.ts`
 * (the salloc holder), `steps.ts` (one srun step and its outcome), `plans.ts` (a task as a step),
 * `placement.ts` (the allocation's nodes and where a task's ranks go), `ranks.ts` (how MPI ranks start, on one
 * node or several, and their output).
 */
import { hostname } from 'node:os';
import { join, resolve as resolvePath } from 'node:path';
import type { Observable } from 'rxjs';
import { SlurmStepError, UnsatisfiableRequirementsError } from '../../errors';
import { optionalDependency } from '../../optional-dependency';
import { checkOptions, rules, type RulesOf } from '../../task/options';
import { validateTaskRequirements, type TaskRequirements } from '../../task/requirements';
import { attemptOf, type Backend, type BackendExecutor, type Job } from '../backend';
import { acceptExecutable } from '../executable/inputs';
import { changedReads, inputsIdentity, missingFiles, upstreamReads } from '../executable/digest';
import { DEFAULT_MPIRUN_ARGS } from '../executable/mpi';
import { workflowDirectory } from '../executable/workdir';
import { acceptFunction, type RemoteFunctions } from '../remote/accept';
import { moduleDigests, probeModules, resolveModules, type ModuleDigests } from '../remote/modules';
import { jsonWire } from '../remote/wire';
import { Allocation, allocationName } from './allocation';
import {
  allocationRequest,
  checkRequest,
  clusterInfo,
  sallocArgs,
  stepConflict,
  type AllocationRequest,
  type ClusterInfo,
  type SlurmBackendOptions,
} from './options';
import { AgentMode } from './on-agents';
import { AHEAD_PER_CORE } from './agent-places';
import { allocatedNodes, type AllocatedNode, type Placement } from './placement';
import {
  entryCommand,
  planExecutable,
  planFunction,
  type StepPlan,
  type StepTarget,
  type TaskPlanContext,
} from './plans';
import { DEFAULT_STEP_GRACE_SECONDS, srunEnv, startStep, type RunningStep, type StepOutcome } from './steps';

export type { SlurmBackendOptions } from './options';

const SLURM_OPTIONS = {
  partition: rules.text('a partition name'),
  account: rules.text('an account name'),
  walltime: rules.seconds(true),
  nodes: rules.positiveInteger,
  launcher: rules.oneOf('mpirun', 'srun'),
  modules: rules.strings('an array of module paths'),
  root: rules.path('a directory path'),
  gracePeriod: rules.seconds(),
  node: rules.text('a node name'),
  mpirunArgs: rules.strings(),
  mode: rules.oneOf('agents', 'steps'),
  address: rules.text('a host name or address'),
} satisfies RulesOf<SlurmBackendOptions>;

/**
 * Runs tasks on a Slurm cluster, the way RADICAL-Pilot does: each executor scope obtains ONE allocation
 * (`salloc`, sized from the executor's worker requirements and the backend's options) and each task
 * attempt is one job step in it (`srun --exact`): executables directly, `ranks > 1` through `mpirun`
 * (or srun's PMIx), and `defineTask` functions of `modules` through the `scalems-task` entry point.
 * The allocation is released when the executor has shut down and its tasks have settled; it is
 * released by Slurm as well if this program dies.
 *
 * ## Example
 * ```ts
 * const rt = launch(wf, slurm({ partition: 'compute', walltime: 3600, modules: ['./dist/tasks.js'] }));
 * await using md = executor(rt, { worker: { cores: 16, memoryMB: 32_000 }, task: { coresPerRank: 4 } });
 * const mdrun = (m: string) => executable(['gmx', 'mdrun', '-deffnm', m], { requirements: { ranks: 4 } });
 * const runs = members.map((m) => md.submit(mdrun(m)));
 * // score: a defineTask function of tasks.js, run in a job step on each run's result
 * const scores = await Promise.all(runs.map((run) => md.submit(score, run)));
 * ```
 */
/** what else a user without piscina can do */
const AGENT_HINT =
  "or run functions in job steps of their own (mode: 'steps'), or give slurm() no modules to run only programs";

export function slurm(options: SlurmBackendOptions = {}): Backend {
  checkOptions('slurm', options, SLURM_OPTIONS);
  const launcher = options.launcher ?? 'mpirun';
  const mode = options.mode ?? 'agents';
  const grace = options.gracePeriod ?? DEFAULT_STEP_GRACE_SECONDS;
  const modules = resolveModules(options.modules ?? [], 'slurm', { allowEmpty: true });
  // the agents run the modules' functions on threads (piscina): found missing only on the nodes, it failed every task
  // with SlurmAllocationError once an allocation was granted, the install advice deep in an agent's stderr
  if (mode === 'agents' && modules.length > 0)
    optionalDependency('piscina', '5', 'slurm({ modules })', () => require.resolve('piscina'), AGENT_HINT);
  const remote: RemoteFunctions = {
    backend: 'slurm',
    where: 'a Slurm job step',
    modules,
    defined: probeModules(modules, 'slurm'),
    wire: jsonWire,
  };
  // the modules as this program has them, and the files that defined its tasks, when a step or the agents start (not
  // now: an ES module this program imports after slurm() is made defines its tasks later): a node loads only the same
  const digests = (): ModuleDigests => moduleDigests(modules);
  const root = resolvePath(options.root ?? join(process.cwd(), '.scalems'));
  const hostCwd = process.cwd();
  const node = options.node ?? process.execPath;
  const open = new Set<BackendExecutor>();

  return {
    kind: 'slurm',
    open(worker, { workflow, executorId, executorName, group }): BackendExecutor {
      const cluster = clusterInfo();
      const request = allocationRequest(worker, options);
      const capacity = checkRequest(request, cluster);
      const workflowDir = workflowDirectory(root, workflow.name);
      // with agents, a failed node does not end the allocation (--no-kill): its attempts go to the other nodes
      const salloc = [...sallocArgs(request), ...(mode === 'agents' ? ['--no-kill'] : [])];
      // the executor's name, if it was given one (its id otherwise), so that the user finds the job in squeue; an
      // executor of several worker groups has an allocation per group: its name is in the job's
      const named = executorName ?? executorId;
      const executorShown = named === executorId ? executorId : `${JSON.stringify(named)} (${executorId})`;
      const alloc = new Allocation(allocationName(named, group, process.pid), salloc, srunEnv({}));
      const ctx: TaskPlanContext = {
        workflowDir,
        hostCwd,
        launcher,
        mpirunArgs: options.mpirunArgs ?? DEFAULT_MPIRUN_ARGS,
        workerEnv: worker.env ?? {},
        get entryCommand() {
          return modules.length > 0 ? entryCommand(modules, node, digests()) : [];
        },
      };
      const names = new Set<string>();
      const agents =
        mode === 'agents'
          ? new AgentMode(alloc, {
              where: `slurm() executor ${executorShown}${group === undefined ? '' : ` (group "${group}")`}`,
              address: options.address ?? hostname(),
              modules,
              digests,
              node: options.node ?? process.execPath,
              hostCwd,
              workflowDir,
              grace,
              workerEnv: worker.env ?? {},
              memoryOf: memoryPerNode(request),
              log: workflow.log,
              nodes: () => allocationNodes(alloc),
            })
          : undefined;
      const check = (req: TaskRequirements, where: string, kind: 'function' | 'executable'): void => {
        const problem = taskProblem(req, request, cluster, kind);
        if (problem !== undefined)
          throw new UnsatisfiableRequirementsError(`${where} can never run on this Slurm executor: ${problem}`);
      };
      const ex: BackendExecutor = {
        // on agents, one-core tasks are handed over ahead, to wait prepared at their node's agent (AHEAD_PER_CORE)
        capacity: agents !== undefined ? { ...capacity, queue: capacity.cores * AHEAD_PER_CORE } : capacity,
        invokes: false,
        ready: alloc.granted,
        identity: (spec) => inputsIdentity(spec, hostCwd),
        missing: missingFiles,
        reads: (args, resolved) => upstreamReads(args, resolved, hostCwd, workflowDir),
        changed: changedReads,
        accept(spec) {
          if (spec.kind === 'executable') acceptExecutable(spec, workflow, 'copy');
          else acceptFunction(spec, remote);
          if (spec.requirements !== undefined)
            check(validateTaskRequirements(spec.requirements), `task ${spec.label ?? spec.name}`, spec.kind);
          if (agents === undefined && spec.kind === 'function' && (spec.requirements?.ranks ?? 1) > 1) {
            throw new UnsatisfiableRequirementsError(
              `task ${spec.label ?? spec.name}: function tasks with ranks > 1 run on threads() ` +
                `(currentTask().comm); on slurm() give ranks > 1 to MPI executables`,
            );
          }
        },
        run: (job) =>
          agents === undefined
            ? runStep(job, alloc, ctx, names, check, grace)
            : agents.run(job, launcher, (placement, hold) =>
                runStep(job, alloc, ctx, names, check, grace, { placement, hold }),
              ),
        close: async () => {
          await agents?.close();
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

/**
 * Why a task's requirements cannot hold in this allocation, or undefined. A rank's cores must be on one node; the
 * ranks of an MPI program may spread over the allocation's nodes, with either launcher (mpirun then runs on this host
 * and starts its daemons on the nodes as one step); a function's ranks are threads of one node. That the allocation
 * has the cores at all is the executor's check.
 */
function taskProblem(
  req: TaskRequirements,
  allocation: AllocationRequest,
  cluster: ClusterInfo,
  kind: 'function' | 'executable',
): string | undefined {
  const conflict = stepConflict(req.slurm, allocation, cluster);
  if (conflict !== undefined) return conflict;
  const partition = cluster.partitions.get(allocation.partition ?? cluster.defaultPartition ?? '');
  const perNode = widestNode(allocation, cluster);
  const cpr = req.coresPerRank ?? 1;
  const ranks = req.ranks ?? 1;
  if (partition !== undefined && cpr > perNode) {
    return (
      `it needs ${cpr} cores on one node (coresPerRank ${cpr}: a rank's cores are on one node) but the nodes ` +
      `of partition "${partition.name}" have at most ${perNode}`
    );
  }
  if (partition !== undefined && kind === 'function' && ranks * cpr > perNode) {
    return (
      `it needs ${ranks * cpr} cores on one node (ranks ${ranks} × coresPerRank ${cpr}: a function's ranks are ` +
      `threads of one node) but the nodes of partition "${partition.name}" have at most ${perNode}`
    );
  }
  return undefined;
}

/** The most cores one node of the allocation's partition has (Infinity if the partition is not known). */
function widestNode(allocation: AllocationRequest, cluster: ClusterInfo): number {
  const partition = cluster.partitions.get(allocation.partition ?? cluster.defaultPartition ?? '');
  return partition === undefined ? Infinity : Math.max(0, ...partition.nodes.map((n) => n.cpus));
}

/** MB of memory a node with this many of the allocation's cores has, as the allocation asked (Infinity: not asked). */
function memoryPerNode(request: AllocationRequest): (cores: number) => number {
  const mb = request.memoryMB;
  if (mb === undefined) return () => Infinity;
  return request.nodes !== undefined ? () => mb / request.nodes! : (cores) => (mb / request.cores) * cores;
}

/**
 * A step name srun and squeue take as it is: the task's label, else its id; unique among the live steps of the
 * allocation.
 */
function stepName(job: Job, live: Set<string>): string {
  const base = (job.label ?? job.id).replace(/[^\w.:@+-]/g, '_').slice(0, 100) || job.id;
  let name = base;
  for (let i = 2; live.has(name); i++) name = `${base}~${i}`;
  live.add(name);
  return name;
}

/** The nodes of each allocation and its CPUs on them, asked of Slurm once (when a task with ranks > 1 needs them). */
const nodesOf = new WeakMap<Allocation, Promise<readonly AllocatedNode[]>>();

function allocationNodes(alloc: Allocation): Promise<readonly AllocatedNode[]> {
  let nodes = nodesOf.get(alloc);
  if (nodes === undefined) {
    const usable = alloc.usable();
    nodes = (usable !== undefined ? allocatedNodes(usable) : alloc.ready().then(allocatedNodes)) as Promise<
      readonly AllocatedNode[]
    >;
    nodes.catch(() => nodesOf.delete(alloc));
    nodesOf.set(alloc, nodes);
  }
  return nodes;
}

/**
 * One attempt of a task as one job step of the allocation. `pinned.placement` pins its ranks to nodes of the
 * allocation (see `Placement`); without it Slurm places them, or for the mpirun launcher, one node if one can hold the
 * task, else `spreadPlacement`. `pinned.hold` is told, as the job is, when a step stopped while it runs has ended.
 */
export function runStep(
  job: Job,
  alloc: Allocation,
  ctx: TaskPlanContext,
  names: Set<string>,
  check: (req: TaskRequirements, where: string, kind: 'function' | 'executable') => void,
  grace: number,
  pinned?: { placement: Placement; hold: (ended: Promise<unknown>) => void },
): Observable<unknown> {
  let step: RunningStep | undefined;
  let ended = false;
  const where = `task ${job.label ?? job.name} (${job.id})`;
  return attemptOf(
    async (stopped) => {
      check(job.requirements, where, job.kind);
      const jobId = alloc.usable() ?? (await alloc.ready());
      if (stopped()) return undefined;
      const name = stepName(job, names);
      let outcome: StepOutcome;
      let plan: StepPlan;
      try {
        const target: StepTarget = { jobId, name, nodes: () => allocationNodes(alloc), placement: pinned?.placement };
        plan =
          job.kind === 'executable'
            ? await planExecutable(job, ctx, where, target)
            : await planFunction(job, ctx, where, target);
        if (stopped()) return undefined;
        step = startStep({
          jobId,
          name,
          options: plan.options,
          command: plan.command,
          driver: plan.driver,
          stdinFile: plan.stdinFile,
          env: srunEnv(plan.env),
          cwd: plan.cwd ?? ctx.hostCwd,
          stderrFile: plan.stderrFile,
        });
        outcome = await step.done;
      } finally {
        ended = true;
        names.delete(name);
      }
      if (stopped()) return undefined;
      // a step has a Slurm time limit of its own only with a walltime (a backstop: see stepResourceArgs)
      const failure = await slurmFailure(outcome, alloc, where, jobId, job.requirements.walltime !== undefined);
      if (failure !== undefined) throw failure;
      return plan.finish(outcome);
    },
    () => {
      if (step === undefined || ended) return;
      // its cores are held until Slurm has ended the step: a retry's step would wait for them in srun meanwhile
      const cancelled = step.cancel(grace);
      alloc.track(cancelled);
      job.holdUntil?.(cancelled);
      pinned?.hold(cancelled);
    },
  );
}

/** The failure Slurm itself reports for a step (not the program's own exit code), if any. */
async function slurmFailure(
  outcome: StepOutcome,
  alloc: Allocation,
  where: string,
  jobId: string,
  hasStepLimit: boolean,
): Promise<Error | undefined> {
  const ended =
    outcome.state === 'COMPLETED' || (outcome.state === 'FAILED' && outcome.launched)
      ? undefined
      : await alloc.checkEnded(outcome.state === 'TIMEOUT');
  const said = outcome.messages !== '' ? `; Slurm said:\n${outcome.messages}` : '';
  if (!outcome.launched && outcome.state === 'FAILED') {
    if (ended !== undefined) return ended;
    return new SlurmStepError(
      outcome.step !== null
        ? `${where}: Slurm could not start every task of job step ${outcome.step} (the program did not run; ` +
            `the slurmd logs of the nodes say why)${said}`
        : `${where}: srun could not start a job step in allocation ${jobId}${said}`,
      'FAILED',
      outcome.exitCode,
      outcome.step,
    );
  }
  const step = outcome.step ?? `${jobId}.?`;
  switch (outcome.state) {
    case 'COMPLETED':
    case 'FAILED':
      return undefined;
    case 'TIMEOUT':
      return new SlurmStepError(
        ended?.state === 'TIMEOUT' || !hasStepLimit
          ? `${where}: job step ${step} was stopped because its allocation ${jobId} reached its time limit (the ` +
              `executor's worker walltime); give the executor a longer walltime${said}`
          : `${where}: job step ${step} reached its Slurm time limit${said}`,
        'TIMEOUT',
        outcome.exitCode,
        step,
      );
    case 'CANCELLED':
      return new SlurmStepError(
        `${where}: job step ${step} was cancelled outside this program ` +
          `${ended !== undefined ? `(its allocation ended: ${ended.state ?? 'unknown'})` : '(scancel?)'}${said}`,
        'CANCELLED',
        outcome.exitCode,
        step,
      );
    case 'OUT_OF_MEMORY':
      return new SlurmStepError(
        `${where}: job step ${step} ran out of memory (OUT_OF_MEMORY); ask for more with the memoryMB ` +
          `requirement${said}`,
        'OUT_OF_MEMORY',
        outcome.exitCode,
        step,
      );
    default:
      return new SlurmStepError(
        `${where}: job step ${step} ended with state ${outcome.state}${said}`,
        outcome.state,
        outcome.exitCode,
        step,
      );
  }
}
