/** Task identity at submit: arguments encoded (upstream tasks as references, edges collected) and hashed. */
import type { Workflow } from './workflow';
import { setOwn } from '../util';
import { InvalidTaskDescriptionError, UnserializableValueError } from '../errors';
import { canonical, hash128, isTaskHandle, isTaskRef, type TaskRef } from '../task/hash';
import {
  hidesSource,
  lookupTask,
  registeredName,
  sourceHash,
  versionOf,
  type AnyFunction,
  type TaskSpec,
} from '../task/spec';

export interface EncodedArgs {
  /** arguments with task handles replaced by `{ $task: id }` */
  readonly args: readonly unknown[];
  /** upstream task ids, without repeats */
  readonly inputs: readonly string[];
  /** canonical text of the arguments, for the task's identity */
  readonly canonical: string;
}

/**
 * Captures the arguments as they are at submit: plain arrays and objects, `Map`s, `Set`s, `Date`s and typed
 * arrays are copied (at any depth), so that a later change to the caller's values changes neither the task
 * nor its identity; task handles (at any depth) are replaced by references, and the edges collected.
 * Class instances and functions are kept as they are (they are identified by object, in this process only). An
 * object's keys count in their order with `keyOrder` (see `canonical`): a function's arguments.
 */
export function encodeArgs(args: readonly unknown[], workflow: Workflow, keyOrder: boolean): EncodedArgs {
  // the common case, plain values only: nothing to copy, no edges
  if (args.every(isPrimitive)) return { args: args.slice(), inputs: NO_INPUTS, canonical: canonical(args) };
  const inputs = new Set<string>();
  let depth = 0;
  const visit = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v;
    if (isTaskHandle(v)) {
      const owner = (v as { workflow?: unknown }).workflow;
      if (owner !== undefined && owner !== workflow) {
        throw new InvalidTaskDescriptionError(
          `task ${v.id} belongs to another workflow; tasks can only take inputs from their own workflow`,
        );
      }
      inputs.add(v.id);
      return { $task: v.id } satisfies TaskRef;
    }
    if (isTaskRef(v)) {
      inputs.add(v.$task);
      return { $task: v.$task } satisfies TaskRef;
    }
    if (++depth > MAX_DEPTH)
      throw new UnserializableValueError(
        `task arguments nest deeper than ${MAX_DEPTH} levels (a value that contains itself, or data nested that ` +
          'deep): a cycle cannot be a task argument; pass deeply nested data in a file',
      );
    try {
      return copy(v);
    } finally {
      depth--;
    }
  };
  const copy = (v: object): unknown => {
    if (Array.isArray(v)) {
      const out = new Array<unknown>(v.length);
      for (let i = 0; i < v.length; i++) out[i] = visit(v[i]);
      return out;
    }
    const proto: unknown = Object.getPrototypeOf(v);
    if (proto === Object.prototype || proto === null) {
      const out: Record<string, unknown> = proto === null ? (Object.create(null) as Record<string, unknown>) : {};
      for (const k of Object.keys(v)) setOwn(out, k, visit((v as Record<string, unknown>)[k]));
      return out;
    }
    if (v instanceof Date) return new Date(v.getTime());
    if (ArrayBuffer.isView(v)) {
      // memory shared on purpose (a SharedArrayBuffer: flags, progress between threads) stays shared
      if (isShared(v.buffer)) return v;
      if (v instanceof DataView) return new DataView(v.buffer.slice(v.byteOffset, v.byteOffset + v.byteLength));
      return typedArraySlice.call(v);
    }
    if (v instanceof ArrayBuffer) return v.slice(0);
    if (v instanceof Map) return new Map([...v].map(([k, e]) => [visit(k), visit(e)]));
    if (v instanceof Set) return new Set([...v].map(visit));
    return v;
  };
  const encoded = args.map(visit);
  const text = canonical(encoded, undefined, keyOrder);
  return { args: encoded, inputs: inputs.size === 0 ? NO_INPUTS : [...inputs], canonical: text };
}

const MAX_DEPTH = 1_000;

const isShared = (buffer: ArrayBufferLike): boolean =>
  typeof SharedArrayBuffer === 'function' && buffer instanceof SharedArrayBuffer;

/** `%TypedArray%.prototype.slice`: a copy of the same type, with its own memory (a `Buffer`'s own `slice` shares). */
const typedArraySlice = (Object.getPrototypeOf(Uint8Array.prototype) as { slice(this: ArrayBufferView): unknown })
  .slice;

const NO_INPUTS: readonly string[] = Object.freeze([]);

function isPrimitive(v: unknown): boolean {
  return v === null || (typeof v !== 'object' && typeof v !== 'function');
}

/** Substitutes upstream results for references. */
export function resolveArgs(args: readonly unknown[], resultOf: (id: string) => unknown): unknown[] {
  const visit = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v;
    if (isTaskRef(v)) return resultOf(v.$task);
    if (Array.isArray(v)) return v.map(visit);
    // (encodeArgs replaced the tasks in maps and sets too: memoryStore keeps them)
    if (v instanceof Map) return new Map([...v].map(([k, e]) => [visit(k), visit(e)]));
    if (v instanceof Set) return new Set([...v].map(visit));
    if (Object.getPrototypeOf(v) !== Object.prototype) return v;
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, visit(e)]));
  };
  return args.map(visit);
}

/** the identity of a closure by its name and source (computed once per function object) */
const bases = new WeakMap<AnyFunction, string>();
const copyIds = new WeakMap<AnyFunction, string>();
const firstOfSource = new Map<string, { fn: AnyFunction; copies: number }>();
/** closures whose source the engine hides (see `hidesSource`) */
const hidden = new WeakSet<AnyFunction>();

/**
 * How a function enters task identity.
 * - A `defineTask` function (passed, or named by a spec from JSON and registered in this process): its
 *   name and version (a hash of its source unless `defineTask` was given one). A name this process has
 *   not registered (a function only workers load) goes by the name alone.
 * - Any other function (a closure): its name and a hash of its source, the same in every run (so
 *   resume works). Two function objects with the same source may close over different values, which
 *   no hash can see: with a store that outlives the process, the executor refuses to take them for the
 *   same task (`AmbiguousTaskError`); with `numbered` (a memory store, where identity never leaves the
 *   process), each further object with that source gets its own identity, in the order met. A closure whose
 *   source the engine hides (a bound function, a Proxy: `hidesSource`) is refused with a store that outlives the
 *   process (`InvalidTaskDescriptionError`): its text is the same whatever it runs.
 */
export function functionIdentity(name: string, fn: AnyFunction | undefined, numbered: boolean): string {
  const registered = fn === undefined ? lookupTask(name) : registeredName(fn) !== undefined ? fn : undefined;
  if (registered !== undefined) return `${name}@${versionOf(registered)!}`;
  if (fn === undefined) return name;
  let base = bases.get(fn);
  if (base === undefined) {
    bases.set(fn, (base = `${name}~${sourceHash(fn)}`));
    if (hidesSource(fn)) hidden.add(fn);
  }
  if (!numbered) {
    if (hidden.has(fn))
      throw new InvalidTaskDescriptionError(
        `task "${name}": its function does not show its source (it reads "function () { [native code] }": a bound ` +
          'function or a Proxy), so neither the code it runs nor the values it binds can be part of the task’s ' +
          'identity, and a store that outlives the process could serve a later run the result of other code or ' +
          'values. Define it with defineTask(name, fn, { version }), changing the version when that code changes, ' +
          'and pass the values it binds as arguments',
      );
    return base;
  }
  let id = copyIds.get(fn);
  if (id !== undefined) return id;
  const first = firstOfSource.get(base);
  if (first === undefined) {
    firstOfSource.set(base, { fn, copies: 0 });
    id = base;
  } else {
    id = `${base}#${++first.copies}`;
  }
  copyIds.set(fn, id);
  return id;
}

/** A task's identity: its function (see above), arguments (upstream tasks by id), key, and `extra`. */
export function taskId(spec: Pick<TaskSpec, 'name' | 'key'>, canonicalArgs: string, fn: string, extra = ''): string {
  const digest = hash128(`${fn}\u0000${canonicalArgs}\u0000${spec.key ?? ''}${extra === '' ? '' : `\u0000${extra}`}`);
  return `${slug(spec.name)}-${digest.slice(0, 24)}`;
}

const slugs = new Map<string, string>();

/** The readable start of task ids of function `name` (made once per name). */
function slug(name: string): string {
  let s = slugs.get(name);
  if (s === undefined) {
    s = name.replace(/[^A-Za-z0-9_.-]+/g, '_').slice(0, 40);
    if (s.length === 0) s = 'task';
    if (slugs.size < 10_000) slugs.set(name, s);
  }
  return s;
}
