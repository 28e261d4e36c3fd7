/**
 * How one task attempt becomes one job step: the srun options and command for an executable (the shared
 * executable attempt's working directory and staged inputs, stdout/stderr files, mpirun for ranks > 1)
 * or for a function task (the `scalems-task` entry point with JSON files), and how the step's outcome
 * becomes the task's result or a typed error.
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { ExecutableFailedError, InvalidTaskDescriptionError, SlurmStepError } from '../../errors';
import { reviveError } from '../../recorded-error';
import type { Job } from '../backend';
import { executableResult, exitFailure, prepareExecutable } from '../executable/attempt';
import { rootEnv } from '../executable/mpi';
import { prepareWorkdir, tail, type Workdir } from '../executable/workdir';
import { loaderArgs } from '../remote/modules';
import type { RemoteOutcome } from '../remote/wire';
import { stepResourceArgs } from './options';
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
  /** the tasks' stderr file (where slurmstepd's notices go too) */
  readonly stderrFile: string;
  readonly command: readonly string[];
  readonly env: Readonly<Record<string, string>>;
  /** The task's result, or throws its failure (`undefined` from `slurmFailure` first). */
  finish(outcome: StepOutcome): Promise<unknown>;
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

function ioArgs(wd: Workdir, input: string | undefined, where: string): string[] {
  return [
    '--output',
    slurmPath(wd.stdout, where),
    '--error',
    slurmPath(wd.stderr, where),
    '--input',
    input === undefined ? 'none' : slurmPath(input, where),
  ];
}

/** The command line of an executable task inside its step. */
export function stepCommand(
  argv: readonly string[],
  ranks: number,
  ctx: Pick<TaskPlanContext, 'launcher' | 'mpirunArgs'>,
): { command: string[]; launcher: 'mpirun' | 'srun' | 'none' } {
  if (ranks <= 1) return { command: [...argv], launcher: 'none' };
  if (ctx.launcher === 'srun') return { command: [...argv], launcher: 'srun' };
  // One task of ranks × coresPerRank CPUs: mpirun sees one slot (the step's task), so it may oversubscribe it.
  return {
    command: ['mpirun', '-np', String(ranks), '--oversubscribe', ...ctx.mpirunArgs, ...argv],
    launcher: 'mpirun',
  };
}

export async function planExecutable(job: Job, ctx: TaskPlanContext, where: string): Promise<StepPlan> {
  const prep = await prepareExecutable(job, { workflowDir: ctx.workflowDir, hostCwd: ctx.hostCwd, staging: 'copy' });
  const { workdir: wd, stdin, description: d } = prep;
  let input: string | undefined;
  if (stdin !== undefined && 'path' in stdin) input = stdin.path;
  else if (stdin !== undefined) writeFileSync((input = join(wd.taskDir, `attempt-${job.attempt}.stdin`)), stdin.text);
  const ranks = job.requirements.ranks ?? 1;
  const { command, launcher } = stepCommand(d.argv, ranks, ctx);
  const launched = [...(launcher === 'srun' ? ['srun', '--mpi=pmix', '-n', String(ranks)] : []), ...command];
  return {
    stderrFile: wd.stderr,
    options: [
      ...stepResourceArgs(job.requirements, launcher),
      ...(launcher === 'srun' ? ['--mpi=pmix'] : []),
      '--chdir',
      slurmPath(wd.path, where),
      ...ioArgs(wd, input, where),
    ],
    command,
    env: { ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...d.env },
    async finish(outcome) {
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
        throw await exitFailure(
          prep,
          launched,
          { code: outcome.exitCode, signal: outcome.signal },
          `job step ${outcome.step ?? '?'} FAILED`,
        );
      }
      return executableResult(prep, launched, { code: 0, signal: null });
    },
  };
}

export async function planFunction(job: Job, ctx: TaskPlanContext, where: string): Promise<StepPlan> {
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
    options: [...stepResourceArgs(job.requirements, 'none'), '--chdir', ctx.hostCwd, ...ioArgs(wd, undefined, where)],
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
 * How a step starts the `scalems-task` entry point: this Node (same path on the nodes), with tsx's
 * CommonJS hook when the entry point or a module is TypeScript.
 */
export function entryCommand(modules: readonly string[], node: string): string[] {
  const entry = resolve(__dirname, '..', '..', 'cli', `task-entry${extname(__filename)}`);
  return [
    node,
    ...loaderArgs([entry, ...modules], 'slurm', 'job steps'),
    entry,
    ...modules.flatMap((m) => ['--modules', m]),
  ];
}
