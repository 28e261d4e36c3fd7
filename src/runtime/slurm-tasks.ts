// How one task attempt becomes one job step: the srun options and command for an executable (its
// working directory, staged inputs, stdout/stderr files, mpirun for ranks > 1) or for a function task
// (the `scalems-task` entry point with JSON files), and how the step's outcome becomes the task's
// result or a typed error.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { extname, join, resolve } from 'node:path';
import { ExecutableFailedError, InvalidTaskDescriptionError, SlurmStepError, TaskFailedError } from '../errors';
import type { RecordedError } from '../store/state';
import { validateDescription, type ExecutableResult } from '../task/executable';
import type { Job } from './backend';
import { resolveSource } from './executable-inputs';
import { rootEnv } from './mpi';
import { reviveError } from './outcome';
import type { StepResult } from './slurm-json';
import { stepResourceArgs } from './slurm-options';
import type { StepOutcome } from './slurm-steps';
import { collectOutputs, fileRef, prepareWorkdir, stageInputs, tail, type Workdir } from './workdir';

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

export const DEFAULT_MPIRUN_ARGS: readonly string[] = ['--bind-to', 'none'];

/** Slurm expands `%` in --output/--error/--input file names. */
function slurmPath(path: string, where: string): string {
  if (path.includes('%')) throw new InvalidTaskDescriptionError(`${where}: the path ${path} contains "%", which Slurm would expand in file names; use a workflow name and root without "%"`);
  return path;
}

function ioArgs(wd: Workdir, input: string | undefined, where: string): string[] {
  return ['--output', slurmPath(wd.stdout, where), '--error', slurmPath(wd.stderr, where), '--input', input === undefined ? 'none' : slurmPath(input, where)];
}

/** The command line of an executable task inside its step. */
export function stepCommand(argv: readonly string[], ranks: number, ctx: Pick<TaskPlanContext, 'launcher' | 'mpirunArgs'>): { command: string[]; launcher: 'mpirun' | 'srun' | 'none' } {
  if (ranks <= 1) return { command: [...argv], launcher: 'none' };
  if (ctx.launcher === 'srun') return { command: [...argv], launcher: 'srun' };
  // One task of ranks × coresPerRank CPUs: mpirun sees one slot (the step's task), so it may oversubscribe it.
  return { command: ['mpirun', '-np', String(ranks), '--oversubscribe', ...ctx.mpirunArgs, ...argv], launcher: 'mpirun' };
}

export async function planExecutable(job: Job, ctx: TaskPlanContext, where: string): Promise<StepPlan> {
  const d = validateDescription(job.args[0], where, { resolved: true });
  const inputs: Record<string, string> = {};
  for (const [name, source] of Object.entries(d.inputs ?? {})) inputs[name] = (resolveSource(source, `${where}: input "${name}"`, ctx.hostCwd, false) as { path: string }).path;
  const stdin = d.stdin === undefined ? undefined : resolveSource(d.stdin, `${where}: stdin`, ctx.hostCwd, true);
  const wd = await prepareWorkdir(ctx.workflowDir, job);
  await stageInputs(wd.path, inputs);
  let input: string | undefined;
  if (stdin !== undefined && 'path' in stdin) input = stdin.path;
  else if (stdin !== undefined) writeFileSync((input = join(wd.taskDir, `attempt-${job.attempt}.stdin`)), stdin.text);
  const ranks = job.requirements.ranks ?? 1;
  const { command, launcher } = stepCommand(d.argv, ranks, ctx);
  const shown = [...(launcher === 'srun' ? ['srun', '--mpi=pmix', '-n', String(ranks)] : []), ...command];
  return {
    stderrFile: wd.stderr,
    options: [...stepResourceArgs(job.requirements, launcher), ...(launcher === 'srun' ? ['--mpi=pmix'] : []), '--chdir', slurmPath(wd.path, where), ...ioArgs(wd, input, where)],
    command,
    env: { ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...d.env },
    async finish(outcome): Promise<ExecutableResult> {
      const step = outcome.step ?? '?';
      if (outcome.state !== 'COMPLETED') {
        const stderrTail = await tail(wd.stderr);
        const missing = /execve\(\): ([^:]+): No such file or directory/.exec(stderrTail);
        if (missing !== null) {
          throw new ExecutableFailedError(`${where}: program "${missing[1]}" was not found on the node (job step ${step}; relative paths resolve in ${wd.path}, names on the PATH the step inherits)`, null, null, stderrTail);
        }
        const how = outcome.exitCode !== null ? `exited with code ${outcome.exitCode}` : `was killed by signal ${outcome.signal ?? 'unknown'}`;
        throw new ExecutableFailedError(
          `${where}: ${shown.join(' ')} ${how} (job step ${step} FAILED)${stderrTail !== '' ? `; end of stderr (${wd.stderr}):\n${stderrTail}` : ` (stderr is empty; stdout: ${wd.stdout})`}`,
          outcome.exitCode,
          outcome.signal,
          stderrTail,
        );
      }
      const collected = await collectOutputs(wd.path, d.outputs ?? []);
      if (collected.missing.length > 0) {
        const stderrTail = await tail(wd.stderr);
        throw new ExecutableFailedError(
          `${where}: ${shown.join(' ')} exited with code 0 but did not produce the declared output${collected.missing.length > 1 ? 's' : ''} ${collected.missing.map((m) => `"${m}"`).join(', ')} in ${wd.path}`,
          0,
          null,
          stderrTail,
        );
      }
      return { exitCode: 0, stdout: fileRef(wd.stdout), stderr: fileRef(wd.stderr), outputs: collected.files, workdir: wd.path, command: shown };
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
    '--workdir',
    wd.path,
  ];
  return {
    // the entry point starts where this program runs (so that its modules resolve as they do here), then changes into the working directory
    stderrFile: wd.stderr,
    options: [...stepResourceArgs(job.requirements, 'none'), '--chdir', ctx.hostCwd, ...ioArgs(wd, undefined, where)],
    command,
    env: { ...ctx.workerEnv, ...job.requirements.env },
    async finish(outcome): Promise<unknown> {
      if (existsSync(resultFile)) {
        const result = JSON.parse(readFileSync(resultFile, 'utf8')) as StepResult;
        if (result.ok) return result.value;
        throw reviveRemote(result.error);
      }
      const stderrTail = await tail(wd.stderr);
      const how = outcome.exitCode !== null ? `exit code ${outcome.exitCode}` : `signal ${outcome.signal ?? 'unknown'}`;
      throw new SlurmStepError(
        `${where}: the scalems-task entry point in job step ${outcome.step ?? '?'} ended (${how}) without writing its result${stderrTail !== '' ? `; end of its stderr (${wd.stderr}):\n${stderrTail}` : ''}`,
        'FAILED',
        outcome.exitCode,
        outcome.step,
      );
    },
  };
}

/** A failure recorded in the step as the error this process would have had: scalems errors by code, others with their name. */
function reviveRemote(rec: RecordedError): Error {
  const known = reviveError(rec);
  if (!(known instanceof TaskFailedError) || rec.code === 'TASK_FAILED') return known;
  const err = new Error(rec.message);
  Object.defineProperty(err, 'name', { value: rec.name, writable: true, configurable: true, enumerable: false });
  if (rec.code !== undefined) Object.assign(err, { code: rec.code });
  if (rec.details !== undefined) Object.assign(err, rec.details);
  if (rec.stack !== undefined) err.stack = rec.stack;
  return err;
}

/**
 * How a step starts the `scalems-task` entry point: this Node (same path on the nodes), with tsx's
 * CommonJS hook when the entry point or a module is TypeScript.
 */
export function entryCommand(modules: readonly string[], node: string): string[] {
  const ext = extname(__filename);
  const entry = resolve(__dirname, '..', 'cli', `task-entry${ext}`);
  const ts = (p: string): boolean => /\.[cm]?ts$/.test(p);
  const args = [node];
  if (ts(entry) || modules.some(ts)) {
    let tsx: string;
    try {
      tsx = require.resolve('tsx/cjs', { paths: [process.cwd(), __dirname] });
    } catch (err) {
      throw new TypeError(`slurm(): ${modules.find(ts) ?? entry} is TypeScript, and job steps load TypeScript with tsx, which is not installed: npm install --save-dev tsx, or compile to JavaScript`, { cause: err });
    }
    args.push('--require', tsx);
  }
  args.push(entry);
  for (const m of modules) args.push('--modules', m);
  return args;
}
