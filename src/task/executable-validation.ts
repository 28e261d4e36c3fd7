/**
 * What an executable task may be, checked in one place for every way one is made: the options of
 * `executable(argv, options)`, the description it keeps (`{ argv, inputs, outputs, env, stdin }`) as a raw
 * description (`workflow.submitDescription`) gives it, a backend's `accept` at submit and a job at run time. A
 * mistake throws `InvalidTaskDescriptionError` (a path leaving the working directory: `PathEscapeError`), naming
 * the option, what was given and what is allowed. Browser-safe: no Node imports.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { InvalidTaskDescriptionError, PathEscapeError } from '../errors';
import type { ExecutableDescription, ExecutableOptions, FileRef, OutputOf } from './executable';
import { isTaskHandle, isTaskRef } from './hash';
import {
  EnvVars,
  describeErrors,
  isPlainObject,
  show,
  unknownField,
  validateTaskRequirements,
  type TaskRequirements,
} from './requirements';
import { SpecFields } from './spec';

/** Names the backend keeps in every working directory: they cannot be inputs or outputs. */
export const RESERVED_NAMES: readonly string[] = ['stdout', 'stderr'];

const DESCRIPTION_FIELDS = ['argv', 'inputs', 'outputs', 'env', 'stdin'] as const;
const OPTION_FIELDS = ['inputs', 'outputs', 'env', 'stdin', 'requirements', 'label', 'key', 'pure'] as const;
const requirement = (name: string): string => `${name} is a requirement: { requirements: { ${name} } }`;
/** What a user may have meant by a field neither an executable's options nor its description have. */
const HINTS: Readonly<Record<string, string>> = {
  cwd: "a task runs in its own working directory: stage files into it with inputs, there is no 'cwd'",
  workdir: "a task runs in its own working directory: stage files into it with inputs, there is no 'workdir'",
  shell: "no shell is ever involved: to run a script, pass ['sh', '-c', script] as argv",
  argv: 'argv is the first argument of executable(argv, options)',
  timeout: 'the time limit is a requirement: { requirements: { walltime } } (seconds)',
  ...Object.fromEntries(
    ['ranks', 'coresPerRank', 'gpusPerRank', 'memoryMB', 'walltime', 'retries'].map((r) => [r, requirement(r)]),
  ),
};

/** What `executable(argv, options)` was given, checked: its description and the fields of its spec. */
export interface CheckedExecutable {
  readonly description: ExecutableDescription;
  readonly requirements?: TaskRequirements;
  readonly label?: string;
  readonly key?: string;
  readonly pure?: boolean;
}

/** Checks `executable(argv, options)`'s arguments as they were given (nothing is spread or copied before). */
export function validateExecutable(argv: unknown, options: unknown, where: string): CheckedExecutable {
  if (options === undefined) return { description: validateDescription({ argv }, where) };
  if (!isPlainObject(options))
    throw new InvalidTaskDescriptionError(
      `${where}: options must be an object { ${OPTION_FIELDS.join('?, ')}? }, got ${show(options)}`,
    );
  refuseUnknown(options, OPTION_FIELDS, `${where}: options`);
  const o = options as Readonly<Record<(typeof OPTION_FIELDS)[number], unknown>>;
  const description = validateDescription(
    Object.fromEntries(
      Object.entries({ argv, inputs: o.inputs, outputs: o.outputs, env: o.env, stdin: o.stdin }).filter(
        ([, v]) => v !== undefined,
      ),
    ),
    where,
  );
  const fields = t.partial(SpecFields).decode({ label: o.label, key: o.key, pure: o.pure });
  if (isLeft(fields))
    throw new InvalidTaskDescriptionError(describeErrors(`${where}: options`, fields.left).join('\n'));
  const { label, key, pure } = fields.right as Pick<ExecutableOptions, 'label' | 'key' | 'pure'>;
  return {
    description,
    ...(o.requirements !== undefined
      ? { requirements: validateTaskRequirements(o.requirements, `${where}: options.requirements`) }
      : {}),
    ...(label !== undefined ? { label } : {}),
    ...(key !== undefined ? { key } : {}),
    ...(pure !== undefined ? { pure } : {}),
  };
}

/**
 * Checks a description (from `executable()`, a record, or a job) and returns a copy with normalised paths.
 * `resolved`: upstream results are already in place of the tasks (at run time); sources are checked when used.
 */
export function validateDescription(
  value: unknown,
  where: string,
  options: { readonly resolved?: boolean } = {},
): ExecutableDescription {
  if (!isPlainObject(value))
    throw new InvalidTaskDescriptionError(
      `${where}: expected an executable description { argv, inputs?, outputs?, env?, stdin? }, got ${show(value)}`,
    );
  refuseUnknown(value, DESCRIPTION_FIELDS, where);
  const resolved = options.resolved === true;
  const out: { -readonly [K in keyof ExecutableDescription]: ExecutableDescription[K] } = {
    argv: checkArgv(value.argv, where),
  };
  if (value.inputs !== undefined) out.inputs = checkInputs(value.inputs, where, resolved);
  if (value.outputs !== undefined) out.outputs = checkOutputs(value.outputs, where);
  if (value.env !== undefined) {
    const env = EnvVars.decode(value.env);
    if (isLeft(env)) throw new InvalidTaskDescriptionError(describeErrors(`${where}: env`, env.left).join('\n'));
    out.env = env.right;
  }
  if (value.stdin !== undefined) out.stdin = resolved ? value.stdin : checkSource(value.stdin, `${where}: stdin`, true);
  return out;
}

function refuseUnknown(value: object, known: readonly string[], where: string): void {
  const unknown = Object.keys(value).filter((k) => !known.includes(k));
  if (unknown.length > 0)
    throw new InvalidTaskDescriptionError(unknown.map((k) => `${where}: ${unknownField(k, known, HINTS)}`).join('\n'));
}

function checkArgv(argv: unknown, where: string): string[] {
  const wanted = `${where}: argv must be a non-empty array of strings (program first)`;
  if (typeof argv === 'string')
    throw new InvalidTaskDescriptionError(
      `${wanted}, got ${show(argv)}; no shell splits it: write ${show(argv.split(/\s+/).filter((a) => a !== ''))}`,
    );
  if (!Array.isArray(argv) || argv.length === 0) throw new InvalidTaskDescriptionError(`${wanted}, got ${show(argv)}`);
  for (let i = 0; i < argv.length; i++) {
    const a: unknown = argv[i];
    if (!(i in argv) || typeof a !== 'string')
      throw new InvalidTaskDescriptionError(`${wanted}: argv[${i}] is ${i in argv ? show(a) : 'missing'}`);
    if (a.includes('\0'))
      throw new InvalidTaskDescriptionError(
        `${where}: argv[${i}] ${show(a)} contains a NUL character, which no program can receive`,
      );
  }
  if (argv[0] === '') throw new InvalidTaskDescriptionError(`${wanted}: argv[0], the program, is empty`);
  return [...(argv as string[])];
}

function checkInputs(inputs: unknown, where: string, resolved: boolean): Record<string, unknown> {
  if (!isPlainObject(inputs))
    throw new InvalidTaskDescriptionError(
      `${where}: inputs must be an object { "name in the working directory": source }, got ${show(inputs)}`,
    );
  const entries: [string, unknown][] = [];
  const given = new Map<string, string>();
  for (const [name, source] of Object.entries(inputs)) {
    const key = taskPath(name, `${where}: input`);
    for (const [other, otherName] of given) {
      const [outer, inner] = other.length <= key.length ? [other, key] : [key, other];
      if (inner === outer || inner.startsWith(`${outer}/`))
        throw new InvalidTaskDescriptionError(
          inner === outer
            ? `${where}: inputs ${show(otherName)} and ${show(name)} both name the file "${key}"`
            : `${where}: inputs ${show(otherName)} and ${show(name)} overlap: "${inner}" would be staged inside ` +
                `"${outer}", which is itself an input; give them separate paths`,
        );
    }
    given.set(key, name);
    entries.push([key, resolved ? source : checkSource(source, `${where}: input ${show(name)}`, false)]);
  }
  return Object.fromEntries(entries);
}

function checkOutputs(outputs: unknown, where: string): string[] {
  const hint = typeof outputs === 'string' ? ` (write ${show([outputs])})` : '';
  if (!Array.isArray(outputs))
    throw new InvalidTaskDescriptionError(
      `${where}: outputs must be an array of file names, got ${show(outputs)}${hint}`,
    );
  const names: string[] = [];
  for (let i = 0; i < outputs.length; i++) {
    const o: unknown = outputs[i];
    if (!(i in outputs) || typeof o !== 'string')
      throw new InvalidTaskDescriptionError(
        `${where}: outputs must be an array of file names: outputs[${i}] is ${i in outputs ? show(o) : 'missing'}`,
      );
    names.push(taskPath(o, `${where}: output`));
  }
  return [...new Set(names)];
}

/** Checks an input's (or stdin's) source; returns it with an `outputOf` name normalised. */
function checkSource(source: unknown, where: string, textAllowed: boolean): unknown {
  if (typeof source === 'string') {
    if (textAllowed) return source;
    if (source.length === 0) throw new InvalidTaskDescriptionError(`${where}: the host path is empty`);
    if (source.includes('\0'))
      throw new InvalidTaskDescriptionError(`${where}: the host path ${show(source)} contains a NUL character`);
    return source;
  }
  if (isTaskHandle(source) || isTaskRef(source)) return source;
  if (isFileRef(source)) {
    if (source.$file.length === 0 || source.$file.includes('\0'))
      throw new InvalidTaskDescriptionError(
        `${where}: a file reference needs a host path without NUL characters, got ${show(source.$file)}`,
      );
    return source;
  }
  if (isOutputOf(source)) {
    if (!isTaskHandle(source.of) && !isTaskRef(source.of))
      throw new InvalidTaskDescriptionError(
        `${where}: outputOf(task, name) needs a Task handle, got ${show(source.of)}`,
      );
    const name = RESERVED_NAMES.includes(source.$output)
      ? source.$output
      : taskPath(source.$output, `${where}: output`);
    return name === source.$output ? source : { $output: name, of: source.of };
  }
  throw new InvalidTaskDescriptionError(
    `${where}: expected ${textAllowed ? 'text, ' : 'a host path, '}a file reference (file(path)), outputOf(task, ` +
      `name) or an upstream Task, got ${show(source)}`,
  );
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
 * Normalises a path relative to the task's working directory (`a/./b` → `a/b`). Absolute paths and
 * paths that climb out (`../x`, `a/../../x`) throw `PathEscapeError`; `stdout`/`stderr` are reserved.
 */
export function taskPath(path: string, what: string): string {
  if (typeof path !== 'string' || path.length === 0)
    throw new InvalidTaskDescriptionError(`${what} name must be a non-empty string, got ${show(path)}`);
  if (path.includes('\0')) throw new InvalidTaskDescriptionError(`${what} ${show(path)} contains a NUL character`);
  if (path.startsWith('/')) {
    throw new PathEscapeError(
      `${what} ${show(path)} is an absolute path: names in a task's working directory must be relative (e.g. ` +
        `"${baseName(path)}")`,
    );
  }
  const parts: string[] = [];
  for (const segment of path.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') {
      if (parts.length === 0)
        throw new PathEscapeError(
          `${what} ${show(path)} escapes the task's working directory: ".." may not climb above it`,
        );
      parts.pop();
    } else parts.push(segment);
  }
  if (parts.length === 0)
    throw new InvalidTaskDescriptionError(
      `${what} ${show(path)} names the working directory itself; name a file in it`,
    );
  if (RESERVED_NAMES.includes(parts[0]!)) {
    throw new InvalidTaskDescriptionError(
      `${what} ${show(path)}: "${parts[0]}" is reserved for the program's ${parts[0]} (use outputOf(task, ` +
        `"${parts[0]}") to pass it on)`,
    );
  }
  return parts.join('/');
}

export function baseName(path: string): string {
  const parts = path.split('/').filter((p) => p !== '');
  return parts[parts.length - 1] ?? path;
}
