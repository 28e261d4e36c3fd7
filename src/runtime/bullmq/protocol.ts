/**
 * What the `bullmq()` driver and `scalems worker` agree on, through Redis: the queue of each task shape,
 * the job a task attempt becomes (its data, validated by the worker before anything runs), how the
 * outcome comes back (a result, or a recorded error in the job's failed reason), and the control channel
 * (new shapes, cancellations). Both sides import it; nothing in it talks to Redis.
 */
import * as t from 'io-ts';
import { InvalidOptionsError } from '../../errors';
import type { RecordedError } from '../../recorded-error';
import { rules } from '../../task/options';
import { footprint, type Footprint, type TaskRequirements as Requirements } from '../../task/requirements';
import { AttemptData, decodeWith } from '../remote/attempt-data';

/** Where driver and workers meet: BullMQ's key prefix, and the name the task queues start with. */
export interface Meeting {
  readonly prefix: string;
  readonly queue: string;
}

export const DEFAULT_PREFIX = 'scalems';
export const DEFAULT_QUEUE = 'tasks';

/** Checks a prefix or queue name option (BullMQ refuses `:` in queue names; keys are built with it). */
export function meetingName(value: unknown, option: string, fallback: string): string {
  if (value === undefined) return fallback;
  if (typeof value !== 'string' || !/^[A-Za-z0-9_.-]+$/.test(value)) {
    throw new InvalidOptionsError(
      `${option}: expected a name of letters, digits, "_", "." and "-", got ${JSON.stringify(value) ?? String(value)}`,
    );
  }
  return value;
}

/**
 * The queue of one task shape. Tasks of one shape (cores, GPUs, memory of the whole task) share a queue, so that a
 * worker takes from exactly the queues whose tasks fit its capacity.
 */
export function shapeQueue(meeting: Meeting, shape: Footprint): string {
  // memory may be asked in fractions of a MB: its queue is named after the whole MB above
  return `${meeting.queue}.c${shape.cores}.g${shape.gpus}.m${Math.ceil(shape.memoryMB)}`;
}

export function parseShapeQueue(meeting: Meeting, name: string): Footprint | undefined {
  const m = /^(.*)\.c(\d+)\.g(\d+)\.m(\d+)$/.exec(name);
  if (m === null || m[1] !== meeting.queue) return undefined;
  return { cores: Number(m[2]), gpus: Number(m[3]), memoryMB: Number(m[4]) };
}

/** The Redis hash of the shape queues tasks have been sent to (workers look there for queues they can serve). */
export const shapesKey = (m: Meeting): string => `${m.prefix}:${m.queue}:shapes`;
/** The key a live worker keeps (with an expiry) to say what it offers. */
export const workerKey = (m: Meeting, name: string): string => `${m.prefix}:${m.queue}:worker:${name}`;

/**
 * Events on the control stream (BullMQ's custom events of the queue named `meeting.queue`, which holds no jobs): a new
 * shape queue, and the cancellation of a job that a worker may be running.
 */
export const SHAPE_EVENT = 'scalems-shape';
export const CANCEL_EVENT = 'scalems-cancel';

export interface ShapeEvent {
  readonly eventName: typeof SHAPE_EVENT;
  readonly queue: string;
}

export interface CancelEvent {
  readonly eventName: typeof CANCEL_EVENT;
  readonly job: string;
  /** the recorded error, as JSON */
  readonly reason: string;
}

/** The reason of a cancel event, or a plain one if it is not readable. */
export function cancelReason(event: Partial<CancelEvent>): RecordedError {
  return (
    parseRecorded(String(event.reason)) ?? {
      name: 'TaskCancelledError',
      code: 'TASK_CANCELLED',
      message: `job ${String(event.job)} was cancelled`,
    }
  );
}

/** A recorded error from its JSON, or undefined when the text is not one (not ours). */
function parseRecorded(text: string): RecordedError | undefined {
  try {
    const parsed = JSON.parse(text) as Partial<RecordedError> | null;
    return typeof parsed?.name === 'string' && typeof parsed.message === 'string'
      ? (parsed as RecordedError)
      : undefined;
  } catch {
    return undefined;
  }
}

/** The BullMQ job id of one attempt of one task of one workflow instance (see `workflowInstance`). */
export const jobIdOf = (instance: string, taskId: string, attempt: number): string =>
  `${instance}.${taskId}.${attempt}`;

/** The data of the BullMQ job of one task attempt: the attempt (`AttemptData`), marked as ours. */
export const JobData = t.intersection([t.type({ scalems: t.literal(1) }), AttemptData]);
export type JobData = t.TypeOf<typeof JobData>;

/** The job data, validated; a malformed payload is an `InvalidTaskDescriptionError` naming each problem. */
export const decodeJobData = (data: unknown, jobId: string): JobData =>
  decodeWith(JobData, data, `BullMQ job ${jobId} is not a scalems task (was it added by something else?)`, 'job data');

/** The shape of a task (what its queue is named after). */
export const shapeOf = (requirements: Requirements): Footprint => footprint(requirements);

/** What a job completes with: the task's value, wrapped so that `undefined` survives JSON. */
export interface JobResult {
  readonly value?: unknown;
}

/** A failed job's reason starts with this when it is a recorded scalems error (JSON after it). */
const FAILURE_PREFIX = 'scalems-error:';

export const encodeFailure = (error: RecordedError): string => FAILURE_PREFIX + JSON.stringify(error);

/** The recorded error of a failed job, or undefined when BullMQ itself failed it (stalled too often, ...). */
export function decodeFailure(reason: string): RecordedError | undefined {
  return reason.startsWith(FAILURE_PREFIX) ? parseRecorded(reason.slice(FAILURE_PREFIX.length)) : undefined;
}

/** What a live worker says of itself (its key's value). */
export interface WorkerInfo {
  readonly name: string;
  readonly host: string;
  readonly pid: number;
  readonly cores: number;
  readonly gpus: number;
  readonly memoryMB: number;
  readonly concurrency: number;
  readonly running: number;
}

/** Whether a task of `shape` fits a worker of `capacity`. */
export const fits = (shape: Footprint, capacity: Footprint): boolean =>
  shape.cores <= capacity.cores && shape.gpus <= capacity.gpus && shape.memoryMB <= capacity.memoryMB;

/**
 * The Redis connection a driver or worker is given: ioredis options (`host`, `port`, `username`, `password`, `tls`,
 * `db`, and any other of ioredis's `RedisOptions`, given to BullMQ as they are). Declared here, not as ioredis's
 * type, so that the typings of `scalems/node` compile where bullmq (an optional peer dependency) is not installed.
 */
export interface RedisConnection {
  readonly host?: string;
  readonly port?: number;
  /** a Unix socket instead of host and port */
  readonly path?: string;
  readonly username?: string;
  readonly password?: string;
  readonly db?: number;
  /** Node's `tls.connect` options: `{}` for TLS with the defaults */
  readonly tls?: object;
  readonly [option: string]: unknown;
}

/**
 * ioredis options from a `redis://[user:password@]host[:port][/db]` URL (`rediss://` for TLS). Credentials may be
 * percent-encoded. Throws InvalidOptionsError naming what is wrong.
 */
export function connectionFromUrl(text: string, option: string): RedisConnection {
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new InvalidOptionsError(
      `${option}: "${text}" is not a URL: expected redis://[user:password@]host[:port][/db]`,
    );
  }
  if (url.protocol !== 'redis:' && url.protocol !== 'rediss:')
    throw new InvalidOptionsError(`${option}: expected a redis:// or rediss:// URL, got ${url.protocol}//`);
  const db = url.pathname.replace(/^\//, '');
  if (db !== '' && !/^\d+$/.test(db)) throw new InvalidOptionsError(`${option}: the database "${db}" is not a number`);
  return {
    host: url.hostname.replace(/^\[|\]$/g, '') || '127.0.0.1',
    port: url.port === '' ? 6379 : Number(url.port),
    ...(url.username !== '' ? { username: decodeURIComponent(url.username) } : {}),
    ...(url.password !== '' ? { password: decodeURIComponent(url.password) } : {}),
    ...(db !== '' ? { db: Number(db) } : {}),
    ...(url.protocol === 'rediss:' ? { tls: {} } : {}),
  };
}

/** Where a connection goes, for messages (never its password). */
export function describeConnection(c: RedisConnection): string {
  return `${c.tls !== undefined ? 'rediss' : 'redis'}://${c.host ?? '127.0.0.1'}:${c.port ?? 6379}/${c.db ?? 0}`;
}

/** The options a driver (`bullmq()`) and its workers (`ScalemsWorker.start`) share: where they meet, the modules. */
export const MEETING_OPTIONS = {
  connection: {
    allowed: 'a redis:// URL or a connection object { host, port, ... }',
    ok: (v: unknown) => typeof v === 'string' || (typeof v === 'object' && v !== null && !Array.isArray(v)),
  },
  prefix: rules.text('a name'),
  queue: rules.text('a name'),
  modules: rules.strings('an array of module paths'),
};
