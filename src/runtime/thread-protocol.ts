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
}

/** One rank of one attempt of one task. */
export interface ThreadRequest {
  /** run key: unique per attempt within a backend; the abort announcements name it */
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
export function unclonable(value: unknown, where: string, seen: Set<object> = new Set()): string | undefined {
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
  if (value === null || seen.has(value) || isTaskHandle(value)) return undefined;
  seen.add(value);
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) {
      const problem = unclonable(value[i], `${where}[${i}]`, seen);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }
  const proto: unknown = Object.getPrototypeOf(value);
  if (proto === Object.prototype || proto === null) {
    for (const key of Object.keys(value)) {
      const problem = unclonable((value as Record<string, unknown>)[key], `${where}.${key}`, seen);
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

function describeKey(k: unknown): string {
  return typeof k === 'string' ? JSON.stringify(k) : String(k);
}
