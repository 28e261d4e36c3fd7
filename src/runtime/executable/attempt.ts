/**
 * One attempt of an executable task, wherever its program runs: the working directory made and its
 * inputs staged (`prepareExecutable`), then, once the program has exited, the task's result or its
 * typed failure: a non-zero exit, or a declared output it did not leave (`executableResult`). Shared by
 * `processes()` (a local child process: `local.ts`) and `slurm()` (a job step).
 */
import { ExecutableFailedError } from '../../errors';
import { validateDescription, type ExecutableDescription, type ExecutableResult } from '../../task/executable';
import type { Job } from '../backend';
import { resolveSource, type ResolvedSource } from './inputs';
import { changedInputs } from './digest';
import {
  collectOutputs,
  fileRef,
  prepareWorkdir,
  stageInputs,
  tail,
  workdirOf,
  type StagingMode,
  type Workdir,
} from './workdir';

/** Where an executor's attempts go on the host. */
export interface ExecutablePlace {
  /** `<root>/<workflow>`: attempts run in `tasks/<id>/attempt-<n>/` under it */
  readonly workflowDir: string;
  /** the submitting program's working directory: relative host paths resolve against it */
  readonly hostCwd: string;
  readonly staging: StagingMode;
}

/** What an attempt needs of its job. */
export type ExecutableJob = Pick<
  Job,
  'id' | 'label' | 'name' | 'attempt' | 'args' | 'requirements' | 'contentAtSubmit' | 'holdUntil'
>;

/** An attempt ready to start: its description (upstream results substituted), working directory and stdin. */
export interface PreparedExecutable {
  /** `task <label> (<id>)`, for messages */
  readonly where: string;
  readonly description: ExecutableDescription;
  readonly workdir: Workdir;
  /** a host file, or text to pipe in */
  readonly stdin: ResolvedSource | undefined;
  /** false: the working directory is still to be made (by the spawner, which starts the program) */
  readonly made: boolean;
}

/** How the program ended. */
export interface ExitStatus {
  readonly code: number | null;
  readonly signal: string | null;
}

/**
 * Makes the attempt's working directory and stages its inputs into it. `deferred`: an attempt without inputs leaves
 * its directory to be made where its program starts (`spawner.ts`), and only says where it is.
 */
export async function prepareExecutable(
  job: ExecutableJob,
  place: ExecutablePlace,
  deferred = false,
): Promise<PreparedExecutable> {
  const where = `task ${job.label ?? job.name} (${job.id})`;
  const description = validateDescription(job.args[0], where, { resolved: true });
  const inputs: Record<string, string> = {};
  for (const [name, source] of Object.entries(description.inputs ?? {})) {
    inputs[name] = (resolveSource(source, `${where}: input "${name}"`, place.hostCwd, false) as { path: string }).path;
  }
  const stdin =
    description.stdin === undefined
      ? undefined
      : resolveSource(description.stdin, `${where}: stdin`, place.hostCwd, true);
  const stdinPath = stdin !== undefined && 'path' in stdin ? stdin.path : undefined;
  // the files are what the task's id says (their content at submit), and stayed so while they were copied in
  const atSubmit = job.contentAtSubmit;
  if (atSubmit !== undefined) assertUnchanged(where, atSubmit, inputs, stdinPath, 'since');
  if (deferred && Object.keys(inputs).length === 0)
    return { where, description, workdir: workdirOf(place.workflowDir, job), stdin, made: false };
  const workdir = await prepareWorkdir(place.workflowDir, job);
  await stageInputs(workdir.path, inputs, place.staging, where);
  if (atSubmit !== undefined && place.staging === 'copy') assertUnchanged(where, atSubmit, inputs, undefined, 'while');
  return { where, description, workdir, stdin, made: true };
}

/**
 * Refuses to start a program on input files that are not what its task was submitted with: its id holds their content
 * then, and a result made from other content would be filed, and served on resume, under it.
 */
function assertUnchanged(
  where: string,
  atSubmit: string,
  inputs: Readonly<Record<string, string>>,
  stdinPath: string | undefined,
  when: 'since' | 'while',
): void {
  const changed = changedInputs(atSubmit, inputs, stdinPath);
  if (changed.length === 0) return;
  const what = changed.map((name) =>
    name === '<stdin>' ? `stdin ${stdinPath!}` : `input "${name}" (${inputs[name]!})`,
  );
  throw new ExecutableFailedError(
    `${where}: ${what.join(', ')} changed ${when === 'since' ? 'since the task was submitted' : 'while copied in'}` +
      '; a task is identified by the content its input files had at submit, so it does not run on other content: ' +
      'submit it again (a new task, for the new content)',
    null,
    null,
    '',
  );
}

/**
 * The task's result once its program has exited with `exit`: a non-zero exit (or a signal) and a
 * declared output that is missing fail it with `ExecutableFailedError`, naming the command as launched
 * (`command`) and ending with the end of its stderr.
 */
export async function executableResult(
  prep: PreparedExecutable,
  command: readonly string[],
  exit: ExitStatus,
): Promise<ExecutableResult> {
  if (exit.code !== 0) throw await exitFailure(prep, command, exit);
  const { workdir, description } = prep;
  const collected = await collectOutputs(workdir.path, description.outputs ?? []);
  if (collected.missing.length > 0) {
    const missing = collected.missing.map((m) => `"${m}"`).join(', ');
    throw new ExecutableFailedError(
      `${prep.where}: ${shown(command)} exited with code 0 but did not produce the declared ` +
        `output${collected.missing.length > 1 ? 's' : ''} ${missing} in ${workdir.path}`,
      0,
      null,
      await tail(workdir.stderr),
    );
  }
  return {
    exitCode: 0,
    stdout: fileRef(workdir.stdout),
    stderr: fileRef(workdir.stderr),
    outputs: collected.files,
    workdir: workdir.path,
    command,
  };
}

/**
 * The failure of a program that exited non-zero or was killed: the exit code or signal, and the end of stderr. `note`
 * says more (the job step).
 */
export async function exitFailure(
  prep: PreparedExecutable,
  command: readonly string[],
  exit: ExitStatus,
  note?: string,
): Promise<ExecutableFailedError> {
  const { workdir } = prep;
  const stderrTail = await tail(workdir.stderr);
  const how = exit.code !== null ? `exited with code ${exit.code}` : `was killed by signal ${exit.signal ?? 'unknown'}`;
  const output =
    stderrTail !== ''
      ? `; end of stderr (${workdir.stderr}):\n${stderrTail}`
      : ` (stderr is empty; stdout: ${workdir.stdout})`;
  return new ExecutableFailedError(
    `${prep.where}: ${shown(command)} ${how}${note !== undefined ? ` (${note})` : ''}${output}`,
    exit.code,
    exit.signal,
    stderrTail,
  );
}

/** A command as a reader would type it, shortened (for messages only: nothing is ever run through a shell). */
export function shown(command: readonly string[], max = 160): string {
  const text = command.map(quote).join(' ');
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}
