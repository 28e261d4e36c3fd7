/**
 * `executable(argv, options)`: a command-line task as plain data. Browser-safe: no Node imports here;
 * the executable attempt (src/runtime/executable/) stages, runs and collects it for processes() and slurm().
 */
import { InvalidTaskDescriptionError } from '../errors';
import { baseName, isFileRef, taskPath, RESERVED_NAMES, validateExecutable } from './executable-validation';
import { isTaskHandle, isTaskRef } from './hash';
import { show, type TaskRequirements } from './requirements';
import type { TaskArg, TaskSpec } from './spec';

export { RESERVED_NAMES, isFileRef, isOutputOf, taskPath, validateDescription } from './executable-validation';

/** A file on the host, as plain data: what executables produce and take. `name` is its base name. */
export interface FileRef {
  readonly $file: string;
  readonly name: string;
}

/** An upstream executable's output (a declared output, or `'stdout'` / `'stderr'`), as a task input. */
export interface OutputOf {
  readonly $output: string;
  readonly of: TaskArg<ExecutableResult>;
}

/**
 * Where an input file comes from: a host path (relative paths resolve against the directory the
 * processes() backend was created in), a file reference, an upstream output (`outputOf(task, name)`),
 * or an upstream task whose result is a file reference or a path.
 */
export type InputSource = string | FileRef | OutputOf | TaskArg<FileRef | string>;

/** What stdin gets: a string is the TEXT itself; a file (reference, upstream output or task) is piped in. */
export type StdinSource = string | FileRef | OutputOf | TaskArg<FileRef | string>;

/**
 * The options of `executable(argv, options)`, all checked when it is called: an unknown or ill-typed one throws
 * `InvalidTaskDescriptionError` naming it (`requirements`: `InvalidRequirementsError`).
 */
export interface ExecutableOptions {
  /**
   * file name in the task's working directory → where it comes from; staged before the program starts. Names are
   * relative paths that stay in the working directory, neither the same file nor one inside another.
   */
  readonly inputs?: Readonly<Record<string, InputSource>>;
  /** files (or directories) the program must leave in its working directory; missing ones fail the task */
  readonly outputs?: readonly string[];
  /**
   * environment for the program, over the task's `env` requirement, over this process's environment: names without
   * `=`, names and values without NUL characters
   */
  readonly env?: Readonly<Record<string, string>>;
  readonly stdin?: StdinSource;
  /** task requirements (`ranks > 1` launches through `mpirun -np <ranks>`); also settable with `withRequirements` */
  readonly requirements?: TaskRequirements;
  readonly label?: string;
  /** distinguishes replicas of the same command (part of the task's identity) */
  readonly key?: string;
  /** `false`: every submission is a distinct task */
  readonly pure?: boolean;
}

/** The result of an executable task. Every file is a `FileRef` a later task can take as input. */
export interface ExecutableResult {
  readonly exitCode: number;
  readonly stdout: FileRef;
  readonly stderr: FileRef;
  /** declared output name → file */
  readonly outputs: Readonly<Record<string, FileRef>>;
  /** the attempt's working directory (absolute) */
  readonly workdir: string;
  /** the argv that was launched (with the `mpirun` prefix for `ranks > 1`) */
  readonly command: readonly string[];
}

/** The description kept in `spec.args[0]` (and in the task record, with upstream tasks as `{ $task: id }`). */
export interface ExecutableDescription {
  readonly argv: readonly string[];
  readonly inputs?: Readonly<Record<string, unknown>>;
  readonly outputs?: readonly string[];
  readonly env?: Readonly<Record<string, string>>;
  readonly stdin?: unknown;
}

/**
 * A command-line task: `argv[0]` is the program (looked up on PATH unless it contains a `/`; relative
 * paths resolve in the task's working directory), the rest its arguments, passed as they are: no shell
 * is ever involved. Nothing runs until the spec is submitted to an executor of a `processes()` runtime.
 */
export function executable(argv: readonly string[], options: ExecutableOptions = {}): TaskSpec<ExecutableResult> {
  const { description, ...fields } = validateExecutable(argv, options, 'executable(argv, options)');
  return { kind: 'executable', name: executableName(description.argv), args: [description], ...fields };
}

/** `executable:<base name of the program>`: deterministic, it is part of the task id. */
export function executableName(argv: readonly string[]): string {
  return `executable:${baseName(argv[0] ?? '')}`;
}

/** An upstream executable's output as an input of another task: the dependency edge is recorded. */
export function outputOf(task: TaskArg<ExecutableResult>, name: string): OutputOf {
  if (!isTaskHandle(task) && !isTaskRef(task))
    throw new InvalidTaskDescriptionError(`outputOf(task, name): task must be a Task handle, got ${show(task)}`);
  if (typeof name !== 'string' || name.length === 0)
    throw new InvalidTaskDescriptionError('outputOf(task, name): name must be a declared output, "stdout" or "stderr"');
  return { $output: RESERVED_NAMES.includes(name) ? name : taskPath(name, 'outputOf(task, name)'), of: task };
}

/** A reference to a file on the host (an absolute path is best: relative ones resolve where the backend runs). */
export function file(path: string): FileRef {
  if (typeof path !== 'string' || path.length === 0 || path.includes('\0'))
    throw new InvalidTaskDescriptionError(
      `file(path): path must be a non-empty string without NUL characters, got ${show(path)}`,
    );
  return { $file: path, name: baseName(path) };
}

/** The files an executable task left, for its record's `artifacts` (name → absolute path). */
export function artifactsOf(result: unknown): Record<string, string> | undefined {
  if (typeof result !== 'object' || result === null) return undefined;
  const r = result as Partial<ExecutableResult>;
  if (!isFileRef(r.stdout) || !isFileRef(r.stderr)) return undefined;
  const artifacts: Record<string, string> = { stdout: r.stdout.$file, stderr: r.stderr.$file };
  for (const [name, ref] of Object.entries(r.outputs ?? {})) if (isFileRef(ref)) artifacts[name] = ref.$file;
  return artifacts;
}
