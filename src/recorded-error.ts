/**
 * Errors as data, and back: what a thrown value becomes in a task record (stored, or sent from a worker
 * thread, a job step or a remote worker), and the typed error rebuilt from such a record. This is the
 * one place that knows every error code: each `ScalemsError` class of `errors.ts` is found here by its
 * `code`, so a new class is revived without being listed anywhere.
 */
import * as errors from './errors';

/** An error as recorded: enough to show it, branch on it and rebuild a typed error from it. */
export interface RecordedError {
  readonly name: string;
  readonly message: string;
  readonly code?: string;
  readonly stack?: string;
  /** the plain-data fields of the error (exit code, upstream id, a user error's own fields, ...) */
  readonly details?: Readonly<Record<string, unknown>>;
  /** what it was caused by (`new Error(message, { cause })`), as recorded: a chain of at most `MAX_CAUSES` */
  readonly cause?: RecordedError;
  /** an `AggregateError`'s errors, as recorded (the first `MAX_ERRORS`) */
  readonly errors?: readonly RecordedError[];
  /** a `ScalemsError` (of a class of its own, with a code of its own: a user's subclass), rebuilt as one */
  readonly scalems?: true;
}

/** Fields every error has, kept apart from `details`. */
const OWN = new Set(['name', 'message', 'code', 'stack', 'cause']);

/** Errors of an `AggregateError` kept in its record. */
const MAX_ERRORS = 32;

/** Causes kept of one error's chain (a cause may be its own cause: the chain is cut there). */
const MAX_CAUSES = 8;

/** What a thrown value becomes in a task record. */
export function recordError(err: unknown): RecordedError {
  return record(err, 0);
}

/**
 * Every read of the thrown value is guarded: a getter that throws, or a revoked Proxy, leaves out what it guards
 * (before, it threw out of the executor's failure path: on inProcess() an uncaught error that ended the process, on
 * a thread the thread's death).
 */
function record(err: unknown, depth: number): RecordedError {
  if (!read(() => err instanceof Error, false)) {
    return { name: 'Error', message: typeof err === 'string' ? err : safeString(err) };
  }
  const e = err as Error & { code?: unknown; cause?: unknown; errors?: unknown };
  let details: Record<string, unknown> | undefined;
  for (const k of read(() => Object.keys(e), [] as string[])) {
    if (OWN.has(k)) continue;
    const v = read(() => e[k as keyof typeof e] as unknown, undefined);
    if (read(() => isPlainData(v, 0), false)) (details ??= {})[k] = v;
  }
  const name = read(() => e.name, 'Error');
  const message = read(() => e.message, '(its message could not be read)');
  const code = read(() => e.code, undefined);
  const stack = read(() => e.stack, undefined);
  const cause = read(() => e.cause, undefined);
  // an AggregateError's own `errors` (not enumerable, so not among the details)
  const errors = read(
    () => (e instanceof AggregateError && Array.isArray(e.errors) ? e.errors.slice(0, MAX_ERRORS) : undefined),
    undefined,
  );
  return {
    name: typeof name === 'string' ? name : 'Error',
    message: typeof message === 'string' ? message : safeString(message),
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof stack === 'string' ? { stack } : {}),
    ...(details !== undefined ? { details } : {}),
    ...(cause !== undefined && depth < MAX_CAUSES ? { cause: record(cause, depth + 1) } : {}),
    ...(errors !== undefined && depth < MAX_CAUSES ? { errors: errors.map((x) => record(x, depth + 1)) } : {}),
    // (one of a class known by its code is rebuilt as that class anyway)
    ...(read(() => isScalemsError(e), false) && !(typeof code === 'string' && scalemsClasses().has(code))
      ? { scalems: true as const }
      : {}),
  };
}

const isScalemsError = (e: unknown): boolean => e instanceof errors.ScalemsError;

/** `get()`, or `fallback` if it throws. */
function read<T, F>(get: () => T, fallback: F): T | F {
  try {
    return get();
  } catch {
    return fallback;
  }
}

/**
 * Rebuilds an error from its record: a scalems error as its own class with its fields (by `code`); any
 * other (a user's error class, which cannot be rebuilt here) as an `Error` with its name, message,
 * code, stack and plain-data fields, so that `err.name`, `err.code` and `err.message` read as they did
 * where it was thrown.
 */
export function reviveError(recorded: RecordedError): Error {
  const Known = recorded.code !== undefined ? scalemsClasses().get(recorded.code) : undefined;
  const Builtin = Known === undefined && Object.hasOwn(BUILTIN, recorded.name) ? BUILTIN[recorded.name] : undefined;
  const err =
    Known !== undefined
      ? new Known(recorded.message)
      : recorded.name === 'AggregateError'
        ? new AggregateError((recorded.errors ?? []).filter(isRecorded).map(reviveError), recorded.message)
        : Builtin !== undefined
          ? new Builtin(recorded.message)
          : recorded.scalems === true
            ? new errors.ScalemsError(recorded.message)
            : new Error(recorded.message);
  // (a user's subclass of a scalems error, or a name set by hand: rebuilt as that scalems class, under its own name)
  if (err.name !== recorded.name)
    Object.defineProperty(err, 'name', { value: recorded.name, writable: true, configurable: true, enumerable: false });
  if (Known === undefined && recorded.code !== undefined) Object.assign(err, { code: recorded.code });
  if (recorded.details !== undefined) Object.assign(err, recorded.details);
  if (recorded.stack !== undefined) err.stack = recorded.stack;
  if (isRecorded(recorded.cause)) {
    // as `new Error(message, { cause })` makes it: an own property that is not enumerable
    Object.defineProperty(err, 'cause', {
      value: reviveError(recorded.cause),
      writable: true,
      configurable: true,
      enumerable: false,
    });
  }
  return err;
}

/** JavaScript's own error classes, by name: a `RangeError` thrown on a thread or a worker is one here too. */
const BUILTIN: Readonly<Record<string, ErrorConstructor>> = {
  RangeError,
  TypeError,
  SyntaxError,
  ReferenceError,
  EvalError,
  URIError,
};

type ScalemsErrorClass = new (message: string) => errors.ScalemsError;

let classes: Map<string, ScalemsErrorClass> | undefined;

/** Every class of `errors.ts` by its code (made once, when an error is first revived). */
function scalemsClasses(): Map<string, ScalemsErrorClass> {
  if (classes === undefined) {
    classes = new Map();
    for (const value of Object.values(errors) as unknown[]) {
      if (
        typeof value !== 'function' ||
        !(value === errors.ScalemsError || value.prototype instanceof errors.ScalemsError)
      )
        continue;
      const C = value as ScalemsErrorClass;
      // the code is an instance field: read it off one instance (constructors take the message first)
      classes.set(new C('').code, C);
    }
  }
  return classes;
}

/** A recorded error's shape (a cause read back from a store or a wire is checked before it is revived). */
function isRecorded(v: unknown): v is RecordedError {
  const r = v as Partial<RecordedError> | null | undefined;
  return typeof r === 'object' && r !== null && typeof r.name === 'string' && typeof r.message === 'string';
}

/** JSON-shaped data a record can keep (bounded depth: details are for branching, not for payloads). */
function isPlainData(v: unknown, depth: number): boolean {
  if (v === null) return true;
  switch (typeof v) {
    case 'string':
    case 'boolean':
      return true;
    case 'number':
      return Number.isFinite(v);
    case 'object':
      break;
    default:
      return false;
  }
  if (depth >= 4) return false;
  if (Array.isArray(v)) return v.every((item) => isPlainData(item, depth + 1));
  const proto: unknown = Object.getPrototypeOf(v);
  return (
    (proto === Object.prototype || proto === null) &&
    Object.values(v as object).every((item) => isPlainData(item, depth + 1))
  );
}

function safeString(v: unknown): string {
  for (const show of [
    (x: unknown) => JSON.stringify(x) ?? String(x),
    String,
    (x: unknown) => Object.prototype.toString.call(x),
  ]) {
    const text = read(() => show(v) as unknown, undefined);
    if (typeof text === 'string') return text;
  }
  return 'a thrown value that cannot be shown';
}
