/**
 * What the main thread and the `threads()` workers say to each other, and the checks on values that
 * cross between them (structured clone). Shared by `threads.ts` and `thread-worker.ts`.
 */
import type { MessagePort } from 'node:worker_threads';
import * as errors from '../errors';
import { recordError } from './outcome';
import { isTaskHandle } from '../task/hash';
import type { RecordedError } from '../store/state';

/** Given to every worker of a pool (piscina `workerData`). */
export interface ThreadWorkerData {
  /** absolute paths of the modules that define the tasks */
  readonly modules: readonly string[];
  /** name of the BroadcastChannel on which aborts are announced */
  readonly channel: string;
  /** aborted run keys (see `Ring`) */
  readonly aborts: Int32Array;
  /** run key + rank → id of the thread running it (see `Ring`) */
  readonly placed: Int32Array;
}

/** One rank of one attempt of one task. */
export interface ThreadRequest {
  /** run key: unique per attempt within a backend (keys key .. key + ranks - 1 are the attempt's); aborts name it */
  readonly key: number;
  /** registered task name */
  readonly name: string;
  readonly args: readonly unknown[];
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  /** only for tasks with ranks > 1 */
  readonly comm?: { readonly rank: number; readonly size: number; readonly ports: ReadonlyArray<MessagePort | null> };
}

/** The worker never throws at piscina: a task's own failure comes back as data, so a rejection means a crash. */
export type ThreadResponse = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: RecordedError };

/** Announced on the BroadcastChannel: stop the run with this key. */
export interface AbortAnnouncement {
  readonly key: number;
  readonly reason: RecordedError;
}

export const serializeError = recordError;

/** Errors the workers raise on purpose come back as their own class; any other keeps its name, message, stack, code and plain-data fields. */
const REVIVABLE: Readonly<Record<string, new (message: string) => Error>> = {
  UNKNOWN_TASK: errors.UnknownTaskError,
  UNSERIALIZABLE_VALUE: errors.UnserializableValueError,
  UNREGISTERED_FUNCTION: errors.UnregisteredFunctionError,
  TASK_CANCELLED: errors.TaskCancelledError,
  WALLTIME_EXCEEDED: errors.WalltimeExceededError,
  NO_AMBIENT_SCOPE: errors.NoAmbientScopeError,
  WORKER_CRASHED: errors.WorkerCrashedError,
};

/** Rebuilds an error that crossed a thread boundary, keeping its name and message. */
export function deserializeError(rec: RecordedError): Error {
  const Known = rec.code !== undefined ? REVIVABLE[rec.code] : undefined;
  const err = Known !== undefined ? new Known(rec.message) : new Error(rec.message);
  if (Known === undefined) {
    Object.defineProperty(err, 'name', { value: rec.name, writable: true, configurable: true, enumerable: false });
    if (rec.code !== undefined) Object.assign(err, { code: rec.code });
  }
  if (rec.details !== undefined) Object.assign(err, rec.details);
  if (rec.stack !== undefined) err.stack = rec.stack;
  return err;
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
      return `${where} is a function${(value as { name?: string }).name ? ` (${(value as { name: string }).name})` : ''}`;
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
      const problem = unclonable(k, `${where} (a Map key)`, seen) ?? unclonable(v, `${where}.get(${describeKey(k)})`, seen);
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
  return `${where} is an instance of ${name}, which structured clone cannot copy with its class (it would arrive as a bare object, or not at all)`;
}

/** A value structured clone copies as it is (no object, function or symbol). */
export function isPrimitive(v: unknown): boolean {
  const t = typeof v;
  return v === null || (t !== 'object' && t !== 'function' && t !== 'symbol');
}

function describeKey(k: unknown): string {
  return typeof k === 'string' ? JSON.stringify(k) : String(k);
}

const RING = 4096;

/**
 * A small map in shared memory from run keys to an int, written by one thread and read by another
 * without messages: slot `key % 4096` holds [key, value], so an entry lives until 4096 keys later.
 * Used for aborts (key → reason code: an announcement on the BroadcastChannel reaches only the threads
 * that already listen, so a run aborted before its thread started is found here when it starts) and for
 * placement (key + rank → thread id, so that the main thread can terminate the thread of a run that
 * ignores its signal).
 */
export const Ring = {
  create(): Int32Array {
    return new Int32Array(new SharedArrayBuffer(RING * 2 * Int32Array.BYTES_PER_ELEMENT));
  },
  set(ring: Int32Array, key: number, value: number): void {
    const slot = (key % RING) * 2;
    Atomics.store(ring, slot + 1, value);
    Atomics.store(ring, slot, key);
  },
  get(ring: Int32Array, key: number): number | undefined {
    const slot = (key % RING) * 2;
    const value = Atomics.load(ring, slot + 1);
    return Atomics.load(ring, slot) === key ? value : undefined;
  },
};

export function markAborted(ring: Int32Array, key: number, reason: unknown): void {
  Ring.set(ring, key, reason instanceof errors.WalltimeExceededError ? 2 : reason instanceof errors.TaskCancelledError ? 1 : 3);
}

/** The reason a run was aborted before it started, if it was. */
export function abortedBeforeStart(ring: Int32Array, key: number): Error | undefined {
  switch (Ring.get(ring, key)) {
    case undefined:
      return undefined;
    case 1:
      return new errors.TaskCancelledError('the task was cancelled before it started on its thread');
    case 2:
      return new errors.WalltimeExceededError('the task ran out of walltime before it started on its thread');
    default:
      return new errors.TaskFailedError('the task was stopped before it started on its thread (another of its ranks failed)');
  }
}
