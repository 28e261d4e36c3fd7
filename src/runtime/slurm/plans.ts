/**
 * How one task attempt becomes one job step: the srun options and command for an executable (the shared
 * executable attempt's working directory and staged inputs, stdout/stderr files, mpirun for ranks > 1)
 * or for a function task (the `scalems-task` entry point with JSON files), and how the step's outcome
 * becomes the task's result or a typed error.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import {
  ExecutableFailedError,
  InvalidTaskDescriptionError,
  SlurmStepError,
  UnsatisfiableRequirementsError,
} from '../../errors';
import { reviveError } from '../../recorded-error';
import type { Job } from '../backend';
import { executableResult, exitFailure, prepareExecutable } from '../executable/attempt';
import { rootEnv } from '../executable/mpi';
import { prepareWorkdir, tail, type Workdir } from '../executable/workdir';
import { loaderArgs, type ModuleDigests } from '../remote/modules';
import type { RemoteOutcome } from '../remote/wire';
import { stepResourceArgs } from './options';
import { mergeRanks, RANK_OUTPUT_DIR, spanningMpirun, stepCommand, type RankLauncher } from './ranks';
import {
  checkPlacement,
  inAllocationOrder,
  ranksPerNode,
  spreadPlacement,
  type AllocatedNode,
  type Placement,
} from './placement';
import type { StepOutcome } from './steps';

export interface TaskPlanContext {
  readonly workflowDir: string;
  /** the program's working directory: relative host paths resolve against it */
  readonly hostCwd: string;
  readonly launcher: 'mpirun' | 'srun';
  readonly mpirunArgs: readonly string[];
  readonly workerEnv: Readonly<Record<string, string>>;
  /** how to start the entry point: [node, ...node options, entry file, --modules ...] */
  readonly entryCommand: readonly string[];
}

/** What to launch for an attempt, and how to read its outcome. */
export interface StepPlan {
  readonly options: readonly string[];
  /** the tasks' stderr file(s) (where slurmstepd's notices go too) */
  readonly stderrFile: string | readonly string[];
  readonly command: readonly string[];
  /** the program that creates the step itself, instead of srun (see `StepLaunch.driver`) */
  readonly driver?: readonly string[];
  /** the driver's stdin */
  readonly stdinFile?: string;
  /** where the driver runs (default: where this program runs) */
  readonly cwd?: string;
  readonly env: Readonly<Record<string, string>>;
  /** The task's result, or throws its failure (`undefined` from `slurmFailure` first). */
  finish(outcome: StepOutcome): Promise<unknown>;
}

/** The step an attempt becomes: in which allocation, under which name, on which of its nodes. */
export interface StepTarget {
  readonly jobId: string;
  /** the step's --job-name */
  readonly name: string;
  /** the allocation's nodes and CPUs (asked of Slurm only for a task with ranks > 1) */
  readonly nodes: () => Promise<readonly AllocatedNode[]>;
  /**
   * Where the ranks go. Default: Slurm's choice, except for the mpirun launcher when no node of the allocation can
   * hold the task (then `spreadPlacement`).
   */
  readonly placement?: Placement;
}

/** Slurm expands `%` in --output/--error/--input file names. */
function slurmPath(path: string, where: string): string {
  if (path.includes('%'))
    throw new InvalidTaskDescriptionError(
      `${where}: the path ${path} contains "%", which Slurm would expand in file names; use a workflow name and ` +
        `root without "%"`,
    );
  return path;
}

function ioArgs(wd: Workdir, input: string | undefined, where: string, perRank: boolean): string[] {
  // %t: the task (rank) number, so that no two ranks (nor the slurmstepd of two nodes) write one file
  const t = perRank ? '.%t' : '';
  return [
    '--output',
    `${slurmPath(wd.stdout, where)}${t}`,
    '--error',
    `${slurmPath(wd.stderr, where)}${t}`,
    '--input',
    input === undefined ? 'none' : slurmPath(input, where),
  ];
}

/** Which launcher a task's ranks need, and where they go (see `StepTarget.placement`). */
async function rankPlan(
  job: Job,
  ctx: TaskPlanContext,
  target: StepTarget,
  where: string,
): Promise<{ launcher: RankLauncher; placement: Placement | undefined }> {
  const ranks = job.requirements.ranks ?? 1;
  const cpr = job.requirements.coresPerRank ?? 1;
  let placement = target.placement;
  if (placement !== undefined) {
    const nodes = await target.nodes();
    checkPlacement(placement, ranks, cpr, nodes, where);
    placement = inAllocationOrder(placement, nodes);
  }
  if (ranks <= 1) return { launcher: 'none', placement };
  if (ctx.launcher === 'srun') return { launcher: 'srun', placement };
  if (placement !== undefined)
    return { launcher: placement.nodes.length > 1 ? 'mpirun-spanning' : 'mpirun', placement };
  const nodes = await target.nodes();
  if (nodes.some((n) => n.cpus >= ranks * cpr)) return { launcher: 'mpirun', placement: undefined };
  placement = spreadPlacement(ranks, cpr, nodes);
  if (placement === undefined)
    throw new UnsatisfiableRequirementsError(
      `${where}: its ${ranks} ranks × ${cpr} cores do not fit the allocation ` +
        `(${nodes.map((n) => `${n.name}: ${n.cpus} CPUs`).join(', ')})`,
    );
  return { launcher: 'mpirun-spanning', placement };
}

/**
 * srun's options that put the step's tasks on the placement's nodes: for srun-launched ranks one node per rank
 * (`--distribution arbitrary`: rank r on the r-th name), so that each node has its `ranksPerNode` ranks.
 */
function placementArgs(placement: Placement | undefined, ranks: number, launcher: RankLauncher): string[] {
  if (placement === undefined) return [];
  const count = ['--nodes', String(placement.nodes.length)];
  if (launcher !== 'srun') return ['--nodelist', placement.nodes.join(','), ...count];
  const perNode = ranksPerNode(placement, ranks);
  const perRank = Array.from({ length: ranks }, (_, r) => placement.nodes[Math.floor(r / perNode)]!);
  return ['--nodelist', perRank.join(','), '--distribution', 'arbitrary', ...count];
}

export async function planExecutable(
  job: Job,
  ctx: TaskPlanContext,
  where: string,
  target: StepTarget,
): Promise<StepPlan> {
  const prep = await prepareExecutable(job, { workflowDir: ctx.workflowDir, hostCwd: ctx.hostCwd, staging: 'copy' });
  const { workdir: wd, stdin, description: d } = prep;
  let input: string | undefined;
  if (stdin !== undefined && 'path' in stdin) input = stdin.path;
  else if (stdin !== undefined) writeFileSync((input = join(wd.taskDir, `attempt-${job.attempt}.stdin`)), stdin.text);
  const ranks = job.requirements.ranks ?? 1;
  const cpr = job.requirements.coresPerRank ?? 1;
  const { launcher, placement } = await rankPlan(job, ctx, target, where);
  const env = { ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...d.env };
  let plan: Omit<StepPlan, 'finish'> & { launched: readonly string[] };
  if (launcher === 'mpirun-spanning') {
    const driver = spanningMpirun(
      d.argv,
      ranks,
      cpr,
      placement!,
      {
        jobId: target.jobId,
        name: target.name,
        // relative to mpirun's working directory (the attempt's): the path then has no ':' that mpirun would split
        outputDir: RANK_OUTPUT_DIR,
        stepOptions: stepResourceArgs(job.requirements, 'spanning'),
      },
      ctx.mpirunArgs,
    );
    // mpirun runs in the working directory (relative program paths), as the ranks do; it chooses plm/slurm only
    // where it finds SLURM_JOBID
    plan = {
      options: [],
      command: [],
      driver,
      cwd: wd.path,
      stdinFile: input,
      stderrFile: [],
      env: { ...env, SLURM_JOBID: target.jobId, SLURM_JOB_ID: target.jobId },
      launched: driver,
    };
  } else {
    const { command, launcher: l } = stepCommand(d.argv, ranks, ctx);
    plan = {
      stderrFile: launcher === 'srun' ? Array.from({ length: ranks }, (_, r) => `${wd.stderr}.${r}`) : wd.stderr,
      options: [
        ...stepResourceArgs(job.requirements, l),
        ...placementArgs(placement, ranks, launcher),
        // a rank that dies ends the others, as under mpirun: they would wait for it in MPI calls until the walltime
        ...(l === 'srun' ? ['--mpi=pmix', '--kill-on-bad-exit=1'] : []),
        '--chdir',
        slurmPath(wd.path, where),
        ...ioArgs(wd, input, where, l === 'srun'),
      ],
      command,
      env,
      launched: [...(l === 'srun' ? ['srun', '--mpi=pmix', '-n', String(ranks)] : []), ...command],
    };
  }
  const { launched, ...rest } = plan;
  return {
    ...rest,
    async finish(outcome) {
      if (launcher === 'srun' || launcher === 'mpirun-spanning') await mergeRanks(wd, ranks, launcher);
      if (outcome.state !== 'COMPLETED') {
        const missing = /execve\(\): ([^:]+): No such file or directory/.exec(await tail(wd.stderr));
        if (missing !== null) {
          throw new ExecutableFailedError(
            `${where}: program "${missing[1]}" was not found on the node (job step ${outcome.step ?? '?'}; ` +
              `relative paths resolve in ${wd.path}, names on the PATH the step inherits)`,
            null,
            null,
            await tail(wd.stderr),
          );
        }
        const said =
          launcher === 'mpirun-spanning' && outcome.messages !== '' ? `; mpirun said:\n${outcome.messages}` : '';
        throw await exitFailure(
          prep,
          launched,
          { code: outcome.exitCode, signal: outcome.signal },
          `job step ${outcome.step ?? '?'} FAILED${said}`,
        );
      }
      return executableResult(prep, launched, { code: 0, signal: null });
    },
  };
}

export async function planFunction(
  job: Job,
  ctx: TaskPlanContext,
  where: string,
  target: StepTarget,
): Promise<StepPlan> {
  if (target.placement !== undefined)
    checkPlacement(target.placement, 1, job.requirements.coresPerRank ?? 1, await target.nodes(), where);
  const wd = await prepareWorkdir(ctx.workflowDir, job);
  const argsFile = join(wd.taskDir, `attempt-${job.attempt}.args.json`);
  const resultFile = join(wd.taskDir, `attempt-${job.attempt}.result.json`);
  writeFileSync(argsFile, JSON.stringify(job.args));
  const command = [
    ...ctx.entryCommand,
    '--name',
    job.name,
    '--args',
    argsFile,
    '--result',
    resultFile,
    '--id',
    job.id,
    ...(job.label !== undefined ? ['--label', job.label] : []),
    '--attempt',
    String(job.attempt),
    ...(job.version !== undefined ? ['--version', job.version] : []),
    '--workdir',
    wd.path,
  ];
  return {
    // the entry point starts where this program runs (so that its modules resolve as they do here), then changes into
    // the working directory
    stderrFile: wd.stderr,
    options: [
      ...stepResourceArgs(job.requirements, 'none'),
      ...placementArgs(target.placement, 1, 'none'),
      '--chdir',
      ctx.hostCwd,
      ...ioArgs(wd, undefined, where, false),
    ],
    command,
    env: { ...ctx.workerEnv, ...job.requirements.env },
    async finish(outcome): Promise<unknown> {
      if (existsSync(resultFile)) {
        const result = JSON.parse(readFileSync(resultFile, 'utf8')) as RemoteOutcome;
        if (result.ok) return result.value;
        throw reviveError(result.error);
      }
      const stderrTail = await tail(wd.stderr);
      const how = outcome.exitCode !== null ? `exit code ${outcome.exitCode}` : `signal ${outcome.signal ?? 'unknown'}`;
      throw new SlurmStepError(
        `${where}: the scalems-task entry point in job step ${outcome.step ?? '?'} ended (${how}) without ` +
          `writing its result${stderrTail !== '' ? `; end of its stderr (${wd.stderr}):\n${stderrTail}` : ''}`,
        'FAILED',
        outcome.exitCode,
        outcome.step,
      );
    },
  };
}

/**
 * How a step starts one of the Node entries of `cli/` (`task-entry`: the `scalems-task` entry point of a function
 * step; `agent-entry`: a node's agent) with the task modules: this Node (same path on the nodes), with tsx's CommonJS
 * hook when the entry or a module is TypeScript.
 */
export function nodeEntryCommand(
  name: 'task-entry' | 'agent-entry',
  modules: readonly string[],
  node: string,
  what: string,
  digests: ModuleDigests = { modules: [], defining: {} },
): string[] {
  const entry = resolve(__dirname, '..', '..', 'cli', `${name}${extname(__filename)}`);
  // each module with its digest as the driver read it (`moduleDigests`): the node loads it only if it still reads so;
  // then each file that defined tasks in the driver, as it read there (`--defined <digest>:<path>`)
  const args = [
    ...modules.flatMap((m, i) => [
      '--modules',
      m,
      ...(digests.modules[i] !== undefined ? ['--digest', digests.modules[i]] : []),
    ]),
    ...(modules.length === 0 ? [] : Object.entries(digests.defining)).flatMap(([file, digest]) => [
      '--defined',
      `${digest}:${file}`,
    ]),
  ];
  return [node, ...loaderArgs([entry, ...modules], 'slurm', what), entry, ...args];
}

/** How a step starts the `scalems-task` entry point. */
export const entryCommand = (modules: readonly string[], node: string, digests?: ModuleDigests): string[] =>
  nodeEntryCommand('task-entry', modules, node, 'job steps', digests);
