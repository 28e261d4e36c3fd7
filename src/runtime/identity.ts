/** Task identity at submit: arguments encoded (upstream tasks as references, edges collected) and hashed. */
import type { Workflow } from './workflow';
import { canonical, hash128, isTaskHandle, isTaskRef, type TaskRef } from '../task/hash';
import type { AnyFunction, TaskSpec } from '../task/spec';

export interface EncodedArgs {
  /** arguments with task handles replaced by `{ $task: id }` */
  readonly args: readonly unknown[];
  /** upstream task ids, without repeats */
  readonly inputs: readonly string[];
  /** canonical text of the arguments, for the task's identity */
  readonly canonical: string;
}

/** Replaces task handles (at any depth of plain arrays and objects) by references, and collects the edges. */
export function encodeArgs(args: readonly unknown[], workflow: Workflow): EncodedArgs {
  // the common case, plain values only: nothing to replace, no edges
  if (args.every(isPrimitive)) return { args: args.slice(), inputs: NO_INPUTS, canonical: canonical(args) };
  const inputs = new Set<string>();
  const visit = (v: unknown): unknown => {
    if (typeof v !== 'object' || v === null) return v;
    if (isTaskHandle(v)) {
      const owner = (v as { workflow?: unknown }).workflow;
      if (owner !== undefined && owner !== workflow) {
        throw new TypeError(
          `task ${v.id} belongs to another workflow; tasks can only take inputs from their own workflow`,
        );
      }
      inputs.add(v.id);
      return { $task: v.id } satisfies TaskRef;
    }
    if (isTaskRef(v)) {
      inputs.add(v.$task);
      return v;
    }
    if (Array.isArray(v)) {
      let out: unknown[] | undefined;
      for (let i = 0; i < v.length; i++) {
        const e: unknown = v[i];
        const r = visit(e);
        if (r !== e) (out ??= v.slice())[i] = r;
      }
      return out ?? v;
    }
    if (Object.getPrototypeOf(v) !== Object.prototype) return v;
    let out: Record<string, unknown> | undefined;
    for (const [k, e] of Object.entries(v)) {
      const r = visit(e);
      if (r !== e) (out ??= { ...(v as Record<string, unknown>) })[k] = r;
    }
    return out ?? v;
  };
  const encoded = args.map(visit);
  return { args: encoded, inputs: [...inputs], canonical: canonical(encoded) };
}

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
    if (Object.getPrototypeOf(v) !== Object.prototype) return v;
    return Object.fromEntries(Object.entries(v).map(([k, e]) => [k, visit(e)]));
  };
  return args.map(visit);
}

const identities = new WeakMap<AnyFunction, string>();
const firstOfSource = new Map<string, { fn: AnyFunction; copies: number }>();

/**
 * How a function enters task identity. A `defineTask` function goes by its registered name. Any other
 * function goes by its name and a hash of its source, which stays the same when the program runs
 * again (so resume works); but two function objects with the same source may close over different
 * values (made by a factory, or inline in a loop), so each further object with that source gets its
 * own numbered identity, in the order this process meets them.
 */
function functionIdentity(name: string, fn: AnyFunction | undefined): string {
  if (fn === undefined || (fn as { taskName?: string }).taskName !== undefined) return name;
  let id = identities.get(fn);
  if (id !== undefined) return id;
  const base = `${name}~${hash128(fn.toString()).slice(0, 12)}`;
  const first = firstOfSource.get(base);
  if (first === undefined) {
    firstOfSource.set(base, { fn, copies: 0 });
    id = base;
  } else {
    id = `${base}#${++first.copies}`;
  }
  identities.set(fn, id);
  return id;
}

/** A task's identity: its function (see above), arguments (upstream tasks by id) and key. */
export function taskId(
  spec: Pick<TaskSpec, 'name' | 'key'>,
  canonicalArgs: string,
  fn: AnyFunction | undefined,
): string {
  const digest = hash128(`${functionIdentity(spec.name, fn)}\u0000${canonicalArgs}\u0000${spec.key ?? ''}`);
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
