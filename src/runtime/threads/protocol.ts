/**
 * What the main thread and the `threads()` workers say to each other: the pool's shared data, one rank
 * of a run, the answer (a `RemoteOutcome`), and the aborts. Shared by `index.ts` (main thread) and
 * `worker.ts` (in the worker); the checks on the values that cross are the remote wire's.
 */
import type { MessagePort } from 'node:worker_threads';
import { TaskCancelledError, TaskFailedError, WalltimeExceededError } from '../../errors';
import type { RecordedError } from '../../recorded-error';
import type { RemoteRequest } from '../remote/runner';
import type { RemoteOutcome } from '../remote/wire';

/** Given to every worker of a pool (piscina `workerData`). */
export interface ThreadWorkerData {
  /** absolute paths of the modules that define the tasks */
  readonly modules: readonly string[];
  /** name of the BroadcastChannel on which aborts are announced */
  readonly channel: string;
  /** aborted run keys → why (an `AbortCode`; see `Ring`) */
  readonly aborts: Int32Array;
  /** run key + rank → id of the thread running it (see `Ring`) */
  readonly placed: Int32Array;
}

/** One rank of one attempt of one task: what the remote runner runs, with the run's key and the ranks' ports. */
export interface ThreadRequest extends RemoteRequest {
  /** run key: unique per attempt within a backend (keys key .. key + ranks - 1 are the attempt's); aborts name it */
  readonly key: number;
  /** only for tasks with ranks > 1 */
  readonly comm?: { readonly rank: number; readonly size: number; readonly ports: ReadonlyArray<MessagePort | null> };
}

/** The worker never throws at piscina: a task's own failure comes back as data, so a rejection means a crash. */
export type ThreadResponse = RemoteOutcome;

/** Announced on the BroadcastChannel: stop the run with this key. */
export interface AbortAnnouncement {
  readonly key: number;
  readonly reason: RecordedError;
}

/** Why a run was aborted, as kept in the `aborts` ring (0 = not aborted). */
const AbortCode = {
  Cancelled: 1,
  Walltime: 2,
  /** another rank of the run failed */
  Stopped: 3,
} as const;

const RING = 4096;

/**
 * A small map in shared memory from run keys to an int, written by one thread and read by another
 * without messages: slot `key % 4096` holds [key, value], so an entry lives until 4096 keys later.
 * Used for aborts (key → `AbortCode`: an announcement on the BroadcastChannel reaches only the threads
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
  const code =
    reason instanceof WalltimeExceededError
      ? AbortCode.Walltime
      : reason instanceof TaskCancelledError
        ? AbortCode.Cancelled
        : AbortCode.Stopped;
  Ring.set(ring, key, code);
}

/** The reason a run was aborted before it started, if it was. */
export function abortedBeforeStart(ring: Int32Array, key: number): Error | undefined {
  switch (Ring.get(ring, key)) {
    case undefined:
      return undefined;
    case AbortCode.Cancelled:
      return new TaskCancelledError('the task was cancelled before it started on its thread');
    case AbortCode.Walltime:
      return new WalltimeExceededError('the task ran out of walltime before it started on its thread');
    default:
      return new TaskFailedError('the task was stopped before it started on its thread (another of its ranks failed)');
  }
}
