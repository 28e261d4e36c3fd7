import { setOwn } from '../util';

/**
 * Results as a workflow keeps them: frozen copies. A result is handed to every consumer (awaiters, pipelines, the
 * tasks that take it as input) and written to the store; a consumer that changed it in place changed it for all
 * the others and for the store, which then served the changed value on resume.
 */

const isPlain = (v: object): boolean => {
  if (Array.isArray(v)) return true;
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
};

/**
 * A frozen copy of `value`: its plain objects and arrays, at any depth, copied and frozen (the function that made it
 * keeps its own, still mutable). Other objects (class instances, `Map`s, ...: only a memory store takes them) are kept
 * as they are. With `asJson` (a persistent store, which has checked the value), it is made what the store gives back
 * on resume, so that the first run and a resumed one see the same value: `-0` becomes `0`, and an object property
 * whose value is `undefined` is left out.
 */
export function frozenResult(value: unknown, asJson: boolean): unknown {
  if (typeof value !== 'object' || value === null) return asJson && Object.is(value, -0) ? 0 : value;
  return asJson ? copyJson(value) : copyShared(value, new Map());
}

/** A checked JSON value: no cycles, only plain objects and arrays. */
function copyJson(v: unknown): unknown {
  if (typeof v !== 'object' || v === null) return Object.is(v, -0) ? 0 : v;
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    for (let i = 0; i < v.length; i++) out[i] = copyJson(v[i]);
    return Object.freeze(out);
  }
  if (!isPlain(v)) return v;
  const out: Record<string, unknown> =
    Object.getPrototypeOf(v) === null ? (Object.create(null) as Record<string, unknown>) : {};
  for (const k of Object.keys(v)) {
    const e = (v as Record<string, unknown>)[k];
    if (e !== undefined) setOwn(out, k, copyJson(e));
  }
  return Object.freeze(out);
}

/** Any value (a memory store's): shared references and cycles kept as they are, among the copies. */
function copyShared(v: object, seen: Map<object, unknown>): unknown {
  if (!isPlain(v)) return v;
  const done = seen.get(v);
  if (done !== undefined) return done;
  const visit = (e: unknown): unknown => (typeof e === 'object' && e !== null ? copyShared(e, seen) : e);
  if (Array.isArray(v)) {
    const out = new Array<unknown>(v.length);
    seen.set(v, out);
    for (let i = 0; i < v.length; i++) out[i] = visit(v[i]);
    return Object.freeze(out);
  }
  const out: Record<string, unknown> =
    Object.getPrototypeOf(v) === null ? (Object.create(null) as Record<string, unknown>) : {};
  seen.set(v, out);
  for (const k of Object.keys(v)) setOwn(out, k, visit((v as Record<string, unknown>)[k]));
  return Object.freeze(out);
}
