import { isPlainObject } from '../task/requirements';
import { setOwn } from '../util';

/**
 * Results as a workflow keeps them: frozen copies. A result is handed to every consumer (awaiters, pipelines, the
 * tasks that take it as input) and written to the store; a consumer that changed it in place changed it for all
 * the others and for the store, which then served the changed value on resume.
 */

/**
 * A frozen copy of `value`: its plain objects and arrays, at any depth, copied and frozen (the function that made it
 * keeps its own, still mutable); shared parts and cycles stay so among the copies. Other objects (class instances,
 * `Map`s, ...: only a memory store takes them) are kept as they are. With `asJson` (a persistent store, which has
 * checked the value), it is made what the store gives back on resume, so that the first run and a resumed one see the
 * same value: `-0` becomes `0`, an object property whose value is `undefined` is left out, and an object of null
 * prototype becomes a plain one.
 */
export function frozenResult(value: unknown, asJson: boolean): unknown {
  // most results are numbers or strings: no map made for them (this runs once per task)
  if (typeof value !== 'object' || value === null) return asJson && Object.is(value, -0) ? 0 : value;
  return copy(value, asJson, new Map());
}

function copy(v: unknown, asJson: boolean, seen: Map<object, unknown>): unknown {
  if (typeof v !== 'object' || v === null) return asJson && Object.is(v, -0) ? 0 : v;
  if (!Array.isArray(v) && !isPlainObject(v)) return v;
  const done = seen.get(v);
  if (done !== undefined) return done;
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    seen.set(v, out);
    for (let i = 0; i < v.length; i++) out[i] = copy(v[i], asJson, seen);
    return Object.freeze(out);
  }
  // (JSON gives back a plain object: with asJson, a null-prototype one becomes one too)
  const out: Record<string, unknown> =
    Object.getPrototypeOf(v) === null && !asJson ? (Object.create(null) as Record<string, unknown>) : {};
  seen.set(v, out);
  for (const k of Object.keys(v)) {
    const e = v[k];
    if (!(asJson && e === undefined)) setOwn(out, k, copy(e, asJson, seen));
  }
  return Object.freeze(out);
}
