/** Task specs (plain data: `call`, `TaskSpec`) and the registry of named task functions (`defineTask`). */
import * as t from 'io-ts';
import type { TaskRequirements } from './requirements';
import { hash128, isTaskHandle, type HasTaskId } from './hash';
import { InvalidTaskDescriptionError, TaskDefinitionError } from '../errors';

/** Where a spec keeps the live function for backends that run it in this process. Not serialised. */
export const SPEC_FN: unique symbol = Symbol.for('scalems.spec.fn');
declare const RESULT: unique symbol;

/** Any function: `never[]` parameters accept every parameter list (parameters are contravariant). */
export type AnyFunction = (...args: never[]) => unknown;

/** A task function as the engine calls it: with the arguments a record holds. */
export const invocable = (fn: AnyFunction): ((...args: readonly unknown[]) => unknown) =>
  fn as (...args: readonly unknown[]) => unknown;

/**
 * A task description: plain, serialisable data. `name` resolves the function (a `defineTask` name, or the
 * function's own name for in-process use); `args` may hold values or upstream `Task`s.
 */
export interface TaskSpec<R = unknown> {
  readonly kind: 'function' | 'executable';
  readonly name: string;
  readonly args: readonly unknown[];
  readonly requirements?: TaskRequirements;
  readonly label?: string;
  /** Distinguishes replicas of the same work: part of the task's identity. */
  readonly key?: string;
  /** `false`: every submission is a distinct task (numbered in submission order). Default `true`. */
  readonly pure?: boolean;
  readonly [SPEC_FN]?: AnyFunction;
  /** Phantom: the result type. Never present at run time. */
  readonly [RESULT]?: R;
}

/** @internal a string with at least one character */
export const NonEmptyString = new t.Type<string, string, unknown>(
  'a non-empty string',
  (u): u is string => typeof u === 'string' && u.length > 0,
  (u, c) => (typeof u === 'string' && u.length > 0 ? t.success(u) : t.failure(u, c)),
  t.identity,
);

/**
 * @internal The codecs of the fields of a spec beside its work, as users give them: `executable()` options and raw
 * descriptions (`workflow.submitDescription`) check them with these.
 */
export const SpecFields = { label: NonEmptyString, key: NonEmptyString, pure: t.boolean } as const;

export type ResultOf<S> = S extends TaskSpec<infer R> ? R : never;

/**
 * What a task argument may be: the value itself, an upstream task that produces it, or (for an array, a tuple or a
 * plain object) one whose elements or properties are either, as deep as they go: upstream tasks are replaced by
 * their results at any depth of arrays and plain objects. Other objects (functions, dates, maps, sets, bytes, class
 * instances the types cannot tell from plain objects by shape, such as these) are passed as they are. The types follow
 * tasks 6 levels deep (`Depth`): a recursive type (a JSON value) is not expanded for ever.
 */
export type TaskArg<T, Depth extends readonly unknown[] = []> =
  | T
  | (PromiseLike<T> & HasTaskId)
  | (Depth['length'] extends 6
      ? never
      : T extends PassedAsIs
        ? never
        : T extends object
          ? { readonly [K in keyof T]: TaskArg<T[K], [...Depth, unknown]> }
          : never);

/** Objects whose insides are not searched for upstream tasks (see `TaskArg`). */
type PassedAsIs =
  | AnyFunction
  | Date
  | RegExp
  | ReadonlyMap<unknown, unknown>
  | ReadonlySet<unknown>
  | ArrayBuffer
  | ArrayBufferView
  | PromiseLike<unknown>;
export type TaskArgs<A extends readonly unknown[]> = { [K in keyof A]: TaskArg<A[K]> };

/** A function registered by name with `defineTask`: resolvable in other threads, processes and hosts. */
export type DefinedTask<F extends AnyFunction> = F & { readonly taskName: string };

export interface DefineTaskOptions {
  /**
   * The version of the function's code: part of the identity of every task that calls it, so that a
   * result computed by other code is never served from the store. Set it when what the function computes
   * depends on code outside its own text (helpers it calls, data files it reads): change it when they
   * change. Non-empty, at most 200 characters.
   * @default a hash of the function's source text, as the JavaScript engine has it (`fn.toString()`); none for a
   * bound function or a Proxy, whose text the engine hides: `defineTask` then requires one
   *
   * A version given here is also checked where the function runs in another process (worker threads, Slurm job
   * steps, `scalems worker`): a task runs there only if that process's function has the same declared version.
   */
  readonly version?: string;
}

const registry = new Map<string, AnyFunction>();
const names = new WeakMap<AnyFunction, string>();
/** versions given to `defineTask` */
const versions = new WeakMap<AnyFunction, string>();
/** default versions (source hashes), computed once */
const hashes = new WeakMap<AnyFunction, string>();

/**
 * Registers `fn` under `name`, so that backends running elsewhere (threads, processes, Slurm steps,
 * BullMQ workers) can find it by name in a registered module. Names are unique per process. Tasks of
 * `fn` are identified by its name and version (see {@link DefineTaskOptions.version}).
 */
export function defineTask<F extends AnyFunction>(
  name: string,
  fn: F,
  options: DefineTaskOptions = {},
): DefinedTask<F> {
  if (typeof name !== 'string' || !NAME.test(name))
    throw new TaskDefinitionError(
      'defineTask(name, fn): name must be a non-empty string of printable characters, got ' +
        (typeof name === 'string' ? JSON.stringify(name) : typeof name) +
        ' (a name has no space at either end and no invisible character: it finds the function in other processes ' +
        'and names its tasks)',
    );
  if (typeof fn !== 'function') throw new TaskDefinitionError(`defineTask("${name}", fn): fn must be a function`);
  if (isClass(fn))
    throw new TaskDefinitionError(
      `defineTask("${name}", fn): fn is a class, which cannot be called without new; define a function that ` +
        `makes the instance, ${wrapper(name, `new ${fn.name || 'TheClass'}`, 'the class')}`,
    );
  const plain =
    typeof options === 'object' &&
    options !== null &&
    (Object.getPrototypeOf(options) === Object.prototype || Object.getPrototypeOf(options) === null);
  const unknown = plain ? Object.keys(options).filter((k) => k !== 'version') : [];
  if (!plain || unknown.length > 0)
    throw new TaskDefinitionError(
      `defineTask("${name}", fn, options): options must be an object { version? }, got ` +
        (plain ? `the unknown option "${unknown[0]!}"` : options === null ? 'null' : typeof options),
    );
  const version: unknown = options.version;
  if (
    version !== undefined &&
    (typeof version !== 'string' || version.length === 0 || version.length > 200 || CONTROL.test(version))
  )
    throw new TaskDefinitionError(
      `defineTask("${name}", fn, { version }): version must be a non-empty string of at most 200 printable ` +
        `characters, got ${typeof version === 'string' ? JSON.stringify(version.slice(0, 40)) : typeof version}`,
    );
  const existing = registry.get(name);
  if (existing !== undefined && existing !== fn) {
    throw new TaskDefinitionError(
      `defineTask: the name "${name}" is already registered to another function; task names must be unique`,
    );
  }
  const other = names.get(fn);
  if (other !== undefined && other !== name)
    throw new TaskDefinitionError(
      `defineTask("${name}", fn): this function is already defined as "${other}"; a function has one task name ` +
        `(for a second one, define a wrapper, ${wrapper(name, 'fn', 'fn')})`,
    );
  if (other === undefined && !Object.isExtensible(fn))
    throw new TaskDefinitionError(
      `defineTask("${name}", fn): fn is frozen or sealed, and defineTask marks it with its name (fn.taskName); ` +
        `define a wrapper instead, ${wrapper(name, 'fn', 'fn')}`,
    );
  if (version === undefined && versions.get(fn) === undefined && hidesSource(fn))
    throw new TaskDefinitionError(
      `defineTask("${name}", fn): fn does not show its source (it reads "function () { [native code] }": a bound ` +
        'function or a Proxy), so the default version, a hash of its source, would stay the same when the code it ' +
        'runs or the values it binds change, and a store would serve results of other code. Give it a version, and ' +
        `change it when that code changes: defineTask("${name}", fn, { version: '1' })`,
    );
  const known = versions.get(fn);
  if (existing === fn && known !== undefined && version !== undefined && known !== version)
    throw new TaskDefinitionError(
      `defineTask("${name}", fn): already defined with version "${known}", now "${version}"`,
    );
  registry.set(name, fn);
  names.set(fn, name);
  if (version !== undefined) versions.set(fn, version);
  Object.defineProperty(fn, 'taskName', { value: name, enumerable: false });
  definedHook?.(defineTask);
  return fn as DefinedTask<F>;
}

/** What `defineTask` calls, with itself, once it has registered a function (see `setDefinedHook`). */
let definedHook: ((define: AnyFunction) => void) | undefined;

/**
 * @internal Sets what `defineTask` calls, with itself (so that the hook can find its callers), once it has registered a
 * function. On Node: the files being loaded then are read, as the modules a remote side must load as they were
 * (`remote/modules.ts`).
 */
export function setDefinedHook(hook: (define: AnyFunction) => void): void {
  definedHook = hook;
}

/** The registered function of that name, if any module of this process defined it. */
export function lookupTask(name: string): AnyFunction | undefined {
  return registry.get(name);
}

/**
 * The version of a registered function: the one given to `defineTask`, else a hash of its source (computed
 * once). Undefined for a function not registered with `defineTask`.
 */
export function versionOf(fn: AnyFunction): string | undefined {
  if (!names.has(fn)) return undefined;
  let v = versions.get(fn) ?? hashes.get(fn);
  if (v === undefined) hashes.set(fn, (v = sourceHash(fn)));
  return v;
}

/**
 * The version given to `defineTask` for a registered function, if one was. Only such versions are compared between
 * the submitting process and a remote side: a default one hashes the source text as each process's loader made it
 * (tsx, ts-jest, tsc and coverage instrumentation each make other text of the same source).
 */
export function declaredVersion(fn: AnyFunction): string | undefined {
  return versions.get(fn);
}

/**
 * How to define a wrapper that calls `callee` (`what` in words), with the version it needs: its default version, a
 * hash of its own source, stays the same when the code it calls changes, and a store would serve results of old code.
 */
const wrapper = (name: string, callee: string, what: string): string =>
  `with a version that you change when ${what} changes (the wrapper's own source, its default version, does not): ` +
  `defineTask("${name}", (...args) => ${callee}(...args), { version: '1' })`;

/** Control characters (NUL, newlines, ...): not in a task's name or version. */
const CONTROL = /\p{Cc}/u;

/**
 * A task's name: no control or invisible (format: zero-width space, joiners, marks of direction) character, and no
 * space at either end, where `" m.run"` and `"m.run"` would look one and be two.
 */
const NAME = /^(?![\s\p{Cf}])[^\p{Cc}\p{Cf}]+(?<!\s)$/u;

/** Whether `fn` is a class, which a task cannot call (calling one without `new` throws). */
export const isClass = (fn: AnyFunction): boolean => /^class[\s{]/.test(Function.prototype.toString.call(fn));

/** 16 hex digits of a hash of the function's source text. */
export const sourceHash = (fn: AnyFunction): string => hash128(Function.prototype.toString.call(fn)).slice(0, 16);

/**
 * Whether the engine hides the function's source: a bound function or a Proxy reads `function () { [native code] }`
 * (in V8; `function bound f() {...}` elsewhere), whatever code it runs and whatever values it binds, so a hash of its
 * text sees neither. A built-in shows its name (`function max() { [native code] }`): its code is the engine's.
 */
export function hidesSource(fn: AnyFunction): boolean {
  const text = Function.prototype.toString.call(fn);
  return (
    /\[native code\]\s*\}\s*$/.test(text) && (/^function\s*(?:bound\s[^(]*)?\(/.test(text) || /^bound /.test(fn.name))
  );
}

/** The registered name of a function, or undefined for a plain function or closure. */
export function registeredName(fn: AnyFunction): string | undefined {
  return names.get(fn);
}

/** The name a function is known by in task records: its registered name, else its own name. */
export function taskNameOf(fn: AnyFunction): string {
  return names.get(fn) ?? (fn.name !== '' ? fn.name : 'anonymous');
}

/** Pure data for "call fn with args": nothing runs until it is submitted. */
export function call<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): TaskSpec<Awaited<ReturnType<F>>> {
  if (typeof fn !== 'function')
    throw new InvalidTaskDescriptionError(`call(fn, ...args): fn must be a function, got ${typeof fn}`);
  if (isClass(fn))
    throw new InvalidTaskDescriptionError(
      `call(fn, ...args): fn is a class (${fn.name || 'anonymous'}), which cannot be called without new; submit a ` +
        'function that makes the instance instead: (...args) => new TheClass(...args)',
    );
  return { kind: 'function', name: taskNameOf(fn), args, [SPEC_FN]: fn };
}

/**
 * @internal Throws `InvalidTaskDescriptionError` unless `value` is a task spec: for the operators over streams of specs
 * (`withRequirements`, `labelled`), which would otherwise make a spec of anything, losing the value.
 */
export function assertTaskSpec(value: unknown, where: string): asserts value is TaskSpec {
  if (isTaskSpec(value)) return;
  const got = isTaskHandle(value)
    ? `a Task (${(value as { id: string }).id}), already submitted: apply ${where} to its spec, before submitOn`
    : value === null || typeof value !== 'object'
      ? `${value === null ? 'null' : typeof value}: make specs of plain values first (map((v) => call(fn, v))), ` +
        `then apply ${where}`
      : `an object that is not one (${Object.keys(value).slice(0, 5).join(', ') || 'no fields'})`;
  throw new InvalidTaskDescriptionError(
    `${where} applies to task specs (call(fn, ...args), executable(...), task(...)); got ${got}`,
  );
}

export function isTaskSpec(value: unknown): value is TaskSpec {
  if (typeof value !== 'object' || value === null || isTaskHandle(value)) return false;
  const v = value as Partial<TaskSpec>;
  return (v.kind === 'function' || v.kind === 'executable') && typeof v.name === 'string' && Array.isArray(v.args);
}
