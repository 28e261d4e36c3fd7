/** What a persistent store accepts, checked before anything is written. */
import { UnstorableValueError } from '../errors';

/**
 * What a persistent store accepts: JSON data that survives `JSON.stringify` → `JSON.parse` unchanged.
 *
 * Accepted: `null`, booleans, strings, finite numbers, arrays, and plain objects (prototype
 * `Object.prototype` of any realm, or `null`) whose values are again storable.
 *
 * Refused with {@link UnstorableValueError} naming the key and the path (`task:abc.result.data[3]`):
 * values nested deeper than 1 000 levels, functions, symbols, bigints, `NaN` / `±Infinity`, `undefined` as the
 * whole value or as an array element, array holes, objects with symbol keys, cycles, and every non-plain object
 * (Date, Map, Set, RegExp, Error, typed arrays, Buffer, boxed primitives, class instances) — JSON would silently
 * drop, change or throw on each of these, so the value read back would not be the value written.
 *
 * Normalised (documented, not refused): an object property whose value is `undefined` is omitted
 * (it reads back as absent, as optional properties do in TypeScript); `-0` reads back as `0`; an
 * object reached twice without a cycle (a shared reference) reads back as two equal copies.
 * Not checked (too costly on large arrays, and vanishingly rare): non-index properties on arrays and
 * non-enumerable properties on objects; JSON drops both.
 */
export function assertStorable(key: string, value: unknown): void {
  if (typeof key !== 'string') {
    throw new UnstorableValueError(`Cannot store key ${String(key)}: store keys must be strings.`);
  }
  if (value === undefined) {
    refuse(key, [], 'is undefined', 'to remove a key use del(key); to store "nothing" use null');
  }
  if (isFlatStorable(value)) return;
  try {
    check(value, key, [], []);
  } catch (error) {
    if (!(error instanceof RangeError)) throw error; // call stack exhausted
    throw new UnstorableValueError(
      `Cannot store ${JSON.stringify(key)}: the value is nested too deeply. Nothing was written.`,
    );
  }
}

/** {@link assertStorable}, then the JSON text of the value. */
export function toStorableJson(key: string, value: unknown): string {
  assertStorable(key, value);
  return JSON.stringify(value);
}

type Segment = string | number;

/**
 * How deep a stored value may nest (as task arguments may: identity.ts). Deeper, writing it could exhaust the stack in
 * `JSON.stringify` (on frozen results from about 2 500 levels), and reading it back in `JSON.parse`: the whole batch
 * of records it is written with would fail, and every later one with it.
 */
const MAX_STORED_DEPTH = 1_000;

function check(value: unknown, key: string, path: Segment[], ancestors: object[]): void {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return;
    case 'number':
      if (!Number.isFinite(value)) {
        refuse(key, path, `is ${String(value)}`, 'JSON has no NaN or Infinity; store null or a string instead');
      }
      return;
    case 'undefined':
      refuse(key, path, 'is undefined inside an array', 'JSON would turn it into null; use null explicitly');
      return;
    case 'function':
      refuse(key, path, 'is a function', 'functions cannot be stored; store its name or its result');
      return;
    case 'symbol':
      refuse(key, path, 'is a symbol', 'symbols cannot be stored; use a string');
      return;
    case 'bigint':
      refuse(key, path, 'is a bigint', 'convert it with String(n) (or Number(n) if it is small enough)');
      return;
  }
  if (value === null) return;
  const object = value as object;
  if (ancestors.length >= MAX_STORED_DEPTH) {
    refuse(
      key,
      path,
      `nests deeper than ${MAX_STORED_DEPTH} levels`,
      'flatten it, or store it as a string (JSON.stringify) or a file',
    );
  }
  if (ancestors.includes(object)) {
    const at = formatPath(key, path.slice(0, ancestors.indexOf(object)));
    refuse(key, path, `refers back to ${at} (a cycle)`, 'break the cycle, for example by storing an id');
  }
  ancestors.push(object);
  if (Array.isArray(object)) {
    for (let i = 0; i < object.length; i++) {
      const item: unknown = object[i];
      if (item === undefined && !(i in object)) {
        refuse(key, [...path, i], 'is a hole in a sparse array', 'JSON would turn it into null; fill it explicitly');
      }
      path.push(i);
      check(item, key, path, ancestors);
      path.pop();
    }
  } else {
    if (!isPlainObject(object)) {
      refuse(key, path, `is ${describeInstance(object)}`, hintFor(object));
    }
    if (Object.getOwnPropertySymbols(object).length > 0) {
      refuse(key, path, 'has symbol-keyed properties', 'JSON drops them; use string keys');
    }
    const record = object as Record<string, unknown>;
    for (const prop of Object.keys(record)) {
      const item = record[prop];
      if (item === undefined) continue; // omitted, like an absent optional property
      path.push(prop);
      check(item, key, path, ancestors);
      path.pop();
    }
  }
  ancestors.pop();
}

/**
 * Whether `check` would accept the value as a leaf: a string, a boolean, a finite number or null. (`undefined` is
 * not one: check refuses it in an array, and an object's property with it is skipped where the object is walked.)
 */
const isStorableLeaf = (value: unknown): boolean =>
  typeof value === 'string' ||
  typeof value === 'boolean' ||
  value === null ||
  (typeof value === 'number' && Number.isFinite(value));

/**
 * Whether the value is one `check` accepts, known without walking it with a path: a leaf, or an array or plain object
 * of leaves (most task arguments and results). `false` says nothing: `check` then walks the value, and names what it
 * refuses. Checked once per task argument list and result, where the path and ancestors `check` keeps were most of
 * what a persistent store cost the engine per task in memory to collect.
 */
function isFlatStorable(value: unknown): boolean {
  if (isStorableLeaf(value)) return true;
  if (typeof value !== 'object' || value === null) return false;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) if (!isStorableLeaf(value[i])) return false; // a hole reads undefined
    return true;
  }
  if (!isPlainObject(value) || Object.getOwnPropertySymbols(value).length > 0) return false;
  const record = value as Record<string, unknown>;
  for (const prop in record) {
    if (!Object.prototype.hasOwnProperty.call(record, prop)) continue;
    const item = record[prop];
    if (item !== undefined && !isStorableLeaf(item)) return false;
  }
  return true;
}

function isPlainObject(object: object): boolean {
  const proto: unknown = Object.getPrototypeOf(object);
  if (proto === null || proto === Object.prototype) return true;
  // A plain object from another realm (vm context, jest sandbox): its prototype is that realm's Object.prototype.
  return Object.getPrototypeOf(proto) === null && Object.prototype.toString.call(object) === '[object Object]';
}

function describeInstance(object: object): string {
  const ctor = (object as { constructor?: { name?: unknown } }).constructor;
  return typeof ctor?.name === 'string' && ctor.name !== '' ? `an instance of ${ctor.name}` : 'a non-plain object';
}

function hintFor(object: object): string {
  // By tag rather than instanceof, so that objects from other realms get the same hint.
  switch (Object.prototype.toString.call(object).slice(8, -1)) {
    case 'Date':
      return 'store date.toISOString() or date.getTime() instead';
    case 'Map':
      return 'store Object.fromEntries(map) or [...map] instead';
    case 'Set':
      return 'store [...set] instead';
    case 'Error':
      return 'store { name, message, stack } instead';
  }
  if (ArrayBuffer.isView(object) || object instanceof ArrayBuffer) {
    return 'store an array of numbers or a base64 string instead';
  }
  return 'only plain objects and arrays are stored; convert it to a plain object first';
}

function refuse(key: string, path: readonly Segment[], problem: string, hint: string): never {
  const at = formatPath(key, path);
  throw new UnstorableValueError(
    `Cannot store ${JSON.stringify(key)}: the value at ${at} ${problem}; ${hint}. ` +
      'Stores keep JSON data only (plain objects, arrays, strings, finite numbers, booleans, null). ' +
      'Nothing was written.',
  );
}

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `task:abc` + `['result', 'data', 3]` → `task:abc.result.data[3]`. */
export function formatPath(key: string, path: readonly Segment[]): string {
  let out = key;
  for (const segment of path) {
    if (typeof segment === 'number') out += `[${segment}]`;
    else if (IDENTIFIER.test(segment)) out += `.${segment}`;
    else out += `[${JSON.stringify(segment)}]`;
  }
  return out;
}
