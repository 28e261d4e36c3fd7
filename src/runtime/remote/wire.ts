/**
 * What crosses between this process and the remote side of a backend (a worker thread, a job step, a
 * remote worker): the outcome of a run, and the checks that say, naming where, why a value would not
 * arrive as it was sent. Arguments are checked at submit, results where they are made.
 */
import type { RecordedError } from '../../recorded-error';
import { isTaskHandle } from '../../task/hash';

/** How one run of a task ended, as the remote side answers it: its value, or its error as data. */
export type RemoteOutcome =
  { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly error: RecordedError };

/** How values travel to and from a backend's remote side. */
export interface Wire {
  /** for messages: "structured clone", "JSON" */
  readonly name: string;
  /**
   * Why `value` would not arrive as it is (naming where: `argument 1.options.cb`), or undefined.
   * Upstream tasks among arguments are fine: their results are substituted when the task runs.
   */
  problem(value: unknown, where: string): string | undefined;
}

/** Worker threads: structured clone. */
export const structuredCloneWire: Wire = {
  name: 'structured clone',
  problem: (value, where) => (isPrimitive(value) ? undefined : unclonable(value, where)),
};

/** Job steps and remote workers: JSON. */
export const jsonWire: Wire = { name: 'JSON', problem: (value, where) => jsonProblem(value, where, true) };

/** A value structured clone copies as it is (no object, function or symbol). */
export function isPrimitive(v: unknown): boolean {
  const t = typeof v;
  return v === null || (t !== 'object' && t !== 'function' && t !== 'symbol');
}

const CLONABLE_CLASSES: ReadonlyArray<abstract new (...args: never[]) => object> = [
  Date,
  RegExp,
  ArrayBuffer,
  SharedArrayBuffer,
  Error,
  Boolean,
  Number,
  String,
];

/**
 * Why structured clone cannot copy `value` faithfully, naming where (`argument 1.options.cb`), or
 * undefined if it can. Functions, symbols, and class instances (which would arrive as bare objects
 * without their methods) are refused; plain objects, arrays, Map, Set, Date, RegExp, errors, typed
 * arrays and (Shared)ArrayBuffers pass.
 */
export function unclonable(value: unknown, where: string, seen?: Set<object>): string | undefined {
  switch (typeof value) {
    case 'function':
      return (
        `${where} is a ` +
        `function${(value as { name?: string }).name ? ` (${(value as { name: string }).name})` : ''}`
      );
    case 'symbol':
      return `${where} is a symbol (${String(value)})`;
    case 'object':
      break;
    default:
      return undefined;
  }
  // an upstream task: its result is substituted (and checked by structured clone) when the task runs
  if (value === null || seen?.has(value) === true || isTaskHandle(value)) return undefined;
  (seen ??= new Set()).add(value);
  // (elements that are primitives are passed over without making their path: this runs per task)
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const item: unknown = value[i];
      if (isPrimitive(item)) continue;
      const problem = unclonable(item, `${where}[${i}]`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    for (const key of Object.keys(value)) {
      const item = (value as Record<string, unknown>)[key];
      if (isPrimitive(item)) continue;
      const problem = unclonable(item, `${where}.${key}`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (value instanceof Map) {
    for (const [k, v] of value) {
      const problem =
        unclonable(k, `${where} (a Map key)`, seen) ?? unclonable(v, `${where}.get(${describeKey(k)})`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (value instanceof Set) {
    for (const v of value) {
      const problem = unclonable(v, `${where} (a Set member)`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  if (ArrayBuffer.isView(value) || CLONABLE_CLASSES.some((C) => value instanceof C)) return undefined;
  const name = (value as { constructor?: { name?: string } }).constructor?.name ?? 'an object with a custom prototype';
  return (
    `${where} is an instance of ${name}, which structured clone cannot copy with its class (it would arrive ` +
    `as a bare object, or not at all)`
  );
}

function describeKey(k: unknown): string {
  return typeof k === 'string' ? JSON.stringify(k) : String(k);
}

/**
 * Why JSON would not carry `value` faithfully (naming where: `argument 1.options.when`), or undefined.
 * Upstream `Task`s are fine among arguments (`tasksAllowed`): their results are substituted.
 */
export function jsonProblem(
  value: unknown,
  where: string,
  tasksAllowed = false,
  seen: Set<object> = new Set(),
): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${where} is ${String(value)}, which JSON cannot carry`;
    case 'undefined':
      return undefined;
    case 'function':
      return `${where} is a function`;
    case 'symbol':
      return `${where} is a symbol`;
    case 'bigint':
      return `${where} is a bigint (pass it as a string)`;
  }
  if (value === null) return undefined;
  const obj = value as object;
  if (tasksAllowed && isTaskHandle(obj)) return undefined;
  if (seen.has(obj)) return `${where} refers to itself (a cycle)`;
  const proto: unknown = Object.getPrototypeOf(obj);
  if (Array.isArray(obj)) {
    seen.add(obj);
    for (let i = 0; i < obj.length; i++) {
      if (obj[i] === undefined) return `${where}[${i}] is undefined (JSON makes it null)`;
      const p = jsonProblem(obj[i], `${where}[${i}]`, tasksAllowed, seen);
      if (p !== undefined) return p;
    }
    seen.delete(obj);
    return undefined;
  }
  if (proto !== Object.prototype && proto !== null && !isObjectPrototype(proto)) {
    const name = (obj.constructor as { name?: string } | undefined)?.name ?? 'object';
    return (
      `${where} is a ${name}, which JSON does not carry faithfully (pass plain objects, arrays, strings, ` +
      `numbers, booleans, null)`
    );
  }
  seen.add(obj);
  for (const [k, v] of Object.entries(obj)) {
    const p = jsonProblem(v, `${where}.${k}`, tasksAllowed, seen);
    if (p !== undefined) return p;
  }
  seen.delete(obj);
  return undefined;
}

/**
 * `Object.prototype` of another realm: a plain object made there (a value a worker thread sent, deserialised in the
 * main realm while this code runs in a `vm` context, as under jest). Its prototype chain ends at once and its
 * constructor is that realm's `Object`.
 */
function isObjectPrototype(proto: unknown): boolean {
  if (typeof proto !== 'object' || proto === null || Object.getPrototypeOf(proto) !== null) return false;
  const ctor = (proto as { constructor?: unknown }).constructor;
  return typeof ctor === 'function' && ctor.name === 'Object' && (ctor as { prototype?: unknown }).prototype === proto;
}
