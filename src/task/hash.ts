/**
 * Content identity of task inputs. A value is encoded canonically (types tagged; object keys in their order, or sorted)
 * and hashed to 128 bits with cyrb128, a small synchronous hash that gives the same result in every
 * JavaScript engine. (WebCrypto is asynchronous and node:crypto is not in browsers; identity must be
 * computed synchronously at submit and agree between a browser, a worker thread and a resumed process.)
 */

/** A reference to another task's result inside task arguments, as stored in a record. */
export interface TaskRef {
  readonly $task: string;
}

export function isTaskRef(value: unknown): value is TaskRef {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as { $task?: unknown }).$task === 'string' &&
    Object.keys(value).length === 1
  );
}

/** Anything that can stand for an upstream task in arguments (a Task handle exposes its id). */
export interface HasTaskId {
  readonly id: string;
  readonly [TASK_HANDLE]: true;
}
export const TASK_HANDLE: unique symbol = Symbol.for('scalems.task');

export function isTaskHandle(value: unknown): value is HasTaskId {
  return typeof value === 'object' && value !== null && (value as Partial<HasTaskId>)[TASK_HANDLE] === true;
}

const identityTokens = new WeakMap<object, number>();
let nextToken = 0;

/**
 * Canonical text of a value. `portable` is cleared when the value holds something whose identity is
 * only meaningful in this process (a function, a class instance): such tasks still run in-process,
 * but their identity will not match in another process. An object's keys count in their order with `keyOrder` (a
 * function's arguments: it may read them in that order, with `Object.keys`, `for...in` or `JSON.stringify`), else
 * sorted (what reaches a program, whose environment and files have no order that matters).
 */
export function canonical(value: unknown, state?: { portable: boolean }, keyOrder = false): string {
  switch (typeof value) {
    case 'undefined':
      return 'u';
    case 'boolean':
      return value ? 't' : 'f';
    case 'number':
      return Object.is(value, -0) ? 'n-0' : `n${value}`;
    case 'bigint':
      return `b${value}`;
    case 'string':
      return JSON.stringify(value);
    case 'symbol':
      if (state !== undefined) state.portable = false;
      return `~${symbolToken(value)}`;
    case 'function':
      if (state !== undefined) state.portable = false;
      return `~${token(value)}`;
  }
  if (value === null) return 'z';
  if (isTaskHandle(value)) return `T${value.id}`;
  if (isTaskRef(value)) return `T${value.$task}`;
  if (Array.isArray(value)) {
    let text = '[';
    for (let i = 0; i < value.length; i++) text += (i === 0 ? '' : ',') + canonical(value[i], state, keyOrder);
    return `${text}]`;
  }
  if (value instanceof Date) return Number.isNaN(value.getTime()) ? 'D?' : `D${value.toISOString()}`;
  // bytes are any characters: their count first tells where they end
  if (ArrayBuffer.isView(value)) {
    const bytes = new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
    return `${value.constructor.name}${bytes.length}(${bytesToLatin1(bytes)})`;
  }
  if (value instanceof ArrayBuffer) return `AB${value.byteLength}(${bytesToLatin1(new Uint8Array(value))})`;
  if (value instanceof Map) {
    const entries = [...value].map(([k, v]) => `${canonical(k, state, keyOrder)}:${canonical(v, state, keyOrder)}`);
    return `M{${entries.join(',')}}`;
  }
  if (value instanceof Set) return `S{${[...value].map((v) => canonical(v, state, keyOrder)).join(',')}}`;
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    if (state !== undefined) state.portable = false;
    return `~${token(value as object)}`;
  }
  const obj = value as Record<string, unknown>;
  const keys = keyOrder ? Object.keys(obj) : Object.keys(obj).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(obj[k], state, keyOrder)}`).join(',')}}`;
}

/** A number that stands for this object (or function) in this process, the same each time. */
export const objectToken = (value: object): number => token(value);

/** A text that stands for this symbol in this process: a registered one's key, else a number of its own. */
function symbolToken(value: symbol): string {
  const registered = Symbol.keyFor(value);
  if (registered !== undefined) return `s${JSON.stringify(registered)}`;
  let t = symbolTokens.get(value);
  if (t === undefined) symbolTokens.set(value, (t = nextToken++));
  return String(t);
}

/** (kept for the life of the process, as symbols in task arguments are rare) */
const symbolTokens = new Map<symbol, number>();

function token(value: object): number {
  let t = identityTokens.get(value);
  if (t === undefined) identityTokens.set(value, (t = nextToken++));
  return t;
}

function bytesToLatin1(bytes: Uint8Array): string {
  let s = '';
  for (let i = 0; i < bytes.length; i += 4096) s += String.fromCharCode(...bytes.subarray(i, i + 4096));
  return s;
}

/** cyrb128 (public domain, bryc): four 32-bit lanes, returned as 32 hex digits. */
export function hash128(text: string): string {
  let h1 = 1779033703,
    h2 = 3144134277,
    h3 = 1013904242,
    h4 = 2773480762;
  for (let i = 0; i < text.length; i++) {
    const k = text.charCodeAt(i);
    h1 = h2 ^ Math.imul(h1 ^ k, 597399067);
    h2 = h3 ^ Math.imul(h2 ^ k, 2869860233);
    h3 = h4 ^ Math.imul(h3 ^ k, 951274213);
    h4 = h1 ^ Math.imul(h4 ^ k, 2716044179);
  }
  h1 = Math.imul(h3 ^ (h1 >>> 18), 597399067);
  h2 = Math.imul(h4 ^ (h2 >>> 22), 2869860233);
  h3 = Math.imul(h1 ^ (h3 >>> 17), 951274213);
  h4 = Math.imul(h2 ^ (h4 >>> 19), 2716044179);
  h1 ^= h2 ^ h3 ^ h4;
  h2 ^= h1;
  h3 ^= h1;
  h4 ^= h1;
  // digits by table into one buffer, then one string (`toString(16).padStart` cost more than the hash)
  hex8(h1, 0);
  hex8(h2, 8);
  hex8(h3, 16);
  hex8(h4, 24);
  return String.fromCharCode.apply(null, DIGITS as unknown as number[]);
}

const HEX_CODES = Array.from('0123456789abcdef', (c) => c.charCodeAt(0));
const DIGITS = new Uint16Array(32);

/** Writes the 8 hex digits of a 32-bit number into DIGITS at `at`. */
function hex8(h: number, at: number): void {
  for (let i = 7; i >= 0; i--) {
    DIGITS[at + i] = HEX_CODES[h & 15]!;
    h >>>= 4;
  }
}

/** A cheap 32-bit string hash (FNV-1a), used to spread keys over table buckets. */
export function hash32(text: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) h = Math.imul(h ^ text.charCodeAt(i), 0x01000193);
  return h >>> 0;
}
