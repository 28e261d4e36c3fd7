/**
 * `executable(argv, options)`: a command-line task as plain data. Browser-safe: no Node imports here;
 * the executable attempt (src/runtime/executable/) stages, runs and collects it for processes() and slurm().
 */
import { InvalidTaskDescriptionError, PathEscapeError } from '../errors';
import { isTaskHandle, isTaskRef } from './hash';
import { validateTaskRequirements, type TaskRequirements } from './requirements';
import type { TaskArg, TaskSpec } from './spec';

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

export interface ExecutableOptions {
  /** file name in the task's working directory → where it comes from; staged before the program starts */
  readonly inputs?: Readonly<Record<string, InputSource>>;
  /** files (or directories) the program must leave in its working directory; missing ones fail the task */
  readonly outputs?: readonly string[];
  /** environment for the program, over the task's `env` requirement, over this process's environment */
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

/** Names the backend keeps in every working directory: they cannot be inputs or outputs. */
export const RESERVED_NAMES: readonly string[] = ['stdout', 'stderr'];

/**
 * A command-line task: `argv[0]` is the program (looked up on PATH unless it contains a `/`; relative
 * paths resolve in the task's working directory), the rest its arguments, passed as they are: no shell
 * is ever involved. Nothing runs until the spec is submitted to an executor of a `processes()` runtime.
 */
export function executable(argv: readonly string[], options: ExecutableOptions = {}): TaskSpec<ExecutableResult> {
  const where = 'executable(argv, options)';
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string')) {
    throw new InvalidTaskDescriptionError(
      `${where}: argv must be a non-empty array of strings (program first), got ${show(argv)}`,
    );
  }
  const description: ExecutableDescription = {
    argv: [...argv],
    ...(options.inputs !== undefined ? { inputs: { ...options.inputs } } : {}),
    ...(options.outputs !== undefined ? { outputs: [...options.outputs] } : {}),
    ...(options.env !== undefined ? { env: { ...options.env } } : {}),
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
  };
  const normalised = validateDescription(description, where);
  return {
    kind: 'executable',
    name: executableName(argv),
    args: [normalised],
    ...(options.requirements !== undefined
      ? { requirements: validateTaskRequirements(options.requirements, `${where} requirements`) }
      : {}),
    ...(options.label !== undefined ? { label: options.label } : {}),
    ...(options.key !== undefined ? { key: options.key } : {}),
    ...(options.pure !== undefined ? { pure: options.pure } : {}),
  };
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
  if (typeof path !== 'string' || path.length === 0)
    throw new InvalidTaskDescriptionError('file(path): path must be a non-empty string');
  return { $file: path, name: baseName(path) };
}

export function isFileRef(value: unknown): value is FileRef {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as FileRef).$file === 'string' &&
    typeof (value as FileRef).name === 'string'
  );
}

export function isOutputOf(value: unknown): value is OutputOf {
  return (
    typeof value === 'object' && value !== null && typeof (value as OutputOf).$output === 'string' && 'of' in value
  );
}

/**
 * Checks a description (from `executable()`, a record, or a job) and returns it with normalised paths.
 * Paths that leave the working directory throw `PathEscapeError`; anything else ill-formed
 * throws `InvalidTaskDescriptionError`.
 */
export function validateDescription(
  value: unknown,
  where: string,
  options: { readonly resolved?: boolean } = {},
): ExecutableDescription {
  // `resolved`: upstream results are already in place of the tasks (at run time); sources are checked when they are
  // used
  const check = options.resolved === true ? (): void => undefined : checkSource;
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    throw new InvalidTaskDescriptionError(
      `${where}: expected an executable description { argv, inputs?, outputs?, env?, stdin? }, got ${show(value)}`,
    );
  const d = value as Record<string, unknown>;
  const unknownKeys = Object.keys(d).filter((k) => !['argv', 'inputs', 'outputs', 'env', 'stdin'].includes(k));
  if (unknownKeys.length > 0)
    throw new InvalidTaskDescriptionError(
      `${where}: unknown field(s) ${unknownKeys.join(', ')} (known: argv, inputs, outputs, env, stdin)`,
    );
  const argv = d.argv;
  if (!Array.isArray(argv) || argv.length === 0 || !argv.every((a) => typeof a === 'string') || argv[0] === '') {
    throw new InvalidTaskDescriptionError(
      `${where}: argv must be a non-empty array of strings (program first), got ${show(argv)}`,
    );
  }
  const out: { -readonly [K in keyof ExecutableDescription]: ExecutableDescription[K] } = { argv: argv as string[] };
  if (d.inputs !== undefined) {
    if (typeof d.inputs !== 'object' || d.inputs === null || Array.isArray(d.inputs))
      throw new InvalidTaskDescriptionError(
        `${where}: inputs must be an object { name: source }, got ${show(d.inputs)}`,
      );
    const inputs: Record<string, unknown> = {};
    for (const [name, source] of Object.entries(d.inputs)) {
      const key = taskPath(name, `${where}: input`);
      if (key in inputs)
        throw new InvalidTaskDescriptionError(`${where}: inputs "${name}" and another input name the same file ${key}`);
      check(source, `${where}: input "${name}"`, false);
      inputs[key] = source;
    }
    out.inputs = inputs;
  }
  if (d.outputs !== undefined) {
    if (!Array.isArray(d.outputs) || !d.outputs.every((o) => typeof o === 'string'))
      throw new InvalidTaskDescriptionError(`${where}: outputs must be an array of file names, got ${show(d.outputs)}`);
    out.outputs = [...new Set(d.outputs.map((o: string) => taskPath(o, `${where}: output`)))];
  }
  if (d.env !== undefined) {
    if (
      typeof d.env !== 'object' ||
      d.env === null ||
      Array.isArray(d.env) ||
      !Object.values(d.env).every((v) => typeof v === 'string')
    ) {
      throw new InvalidTaskDescriptionError(`${where}: env must be an object of string values, got ${show(d.env)}`);
    }
    out.env = d.env as Record<string, string>;
  }
  if (d.stdin !== undefined) {
    check(d.stdin, `${where}: stdin`, true);
    out.stdin = d.stdin;
  }
  return out;
}

function checkSource(source: unknown, where: string, textAllowed: boolean): void {
  if (typeof source === 'string') {
    if (source.length === 0 && !textAllowed) throw new InvalidTaskDescriptionError(`${where}: the host path is empty`);
    return;
  }
  if (isTaskHandle(source) || isTaskRef(source) || isFileRef(source)) return;
  if (isOutputOf(source)) {
    if (!isTaskHandle(source.of) && !isTaskRef(source.of))
      throw new InvalidTaskDescriptionError(
        `${where}: outputOf(task, name) needs a Task handle, got ${show(source.of)}`,
      );
    return;
  }
  throw new InvalidTaskDescriptionError(
    `${where}: expected ${textAllowed ? 'text, ' : 'a host path, '}a file reference (file(path)), outputOf(task, ` +
      `name) or an upstream Task, got ${show(source)}`,
  );
}

/**
 * Normalises a path relative to the task's working directory (`a/./b` → `a/b`). Absolute paths and
 * paths that climb out (`../x`, `a/../../x`) throw `PathEscapeError`; `stdout`/`stderr` are reserved.
 */
export function taskPath(path: string, what: string): string {
  if (typeof path !== 'string' || path.length === 0)
    throw new InvalidTaskDescriptionError(`${what} name must be a non-empty string, got ${show(path)}`);
  if (path.includes('\0')) throw new InvalidTaskDescriptionError(`${what} "${path}" contains a NUL character`);
  if (path.startsWith('/')) {
    throw new PathEscapeError(
      `${what} "${path}" is an absolute path: names in a task's working directory must be relative (e.g. ` +
        `"${baseName(path)}")`,
    );
  }
  const parts: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (parts.length === 0)
        throw new PathEscapeError(
          `${what} "${path}" escapes the task's working directory: ".." may not climb above it`,
        );
      parts.pop();
    } else parts.push(segment);
  }
  if (parts.length === 0)
    throw new InvalidTaskDescriptionError(`${what} "${path}" names the working directory itself; name a file in it`);
  if (RESERVED_NAMES.includes(parts[0]!)) {
    throw new InvalidTaskDescriptionError(
      `${what} "${path}": "${parts[0]}" is reserved for the program's ${parts[0]} (use outputOf(task, ` +
        `"${parts[0]}") to pass it on)`,
    );
  }
  return parts.join('/');
}

function baseName(path: string): string {
  const parts = path.split('/').filter((p) => p !== '');
  return parts[parts.length - 1] ?? path;
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  try {
    const s = JSON.stringify(value);
    return s === undefined ? String(value) : s.length > 80 ? `${s.slice(0, 77)}...` : s;
  } catch {
    return String(value);
  }
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
