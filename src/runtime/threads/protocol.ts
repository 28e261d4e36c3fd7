/**
 * What the main thread and the `threads()` workers say to each other: the pool's shared data, the serve run that
 * each thread's lane is (`lanes.ts` on the main side, `worker.ts` in the worker), the requests and answers on a lane's
 * port, and the shared slots through which a request queued on a thread is claimed by that thread or taken back by
 * the main thread. The checks on the values that cross are the remote wire's.
 */
import type { MessagePort } from 'node:worker_threads';
import type { RecordedError } from '../../recorded-error';
import type { RemoteRequest } from '../remote/runner';
import type { RemoteOutcome } from '../remote/wire';
import type { ModuleDigests } from '../remote/modules';

/** Given to every worker of a pool (piscina `workerData`). */
export interface ThreadWorkerData {
  /** absolute paths of the modules that define the tasks */
  readonly modules: readonly string[];
  /** their digests as the main thread read them (`moduleDigests`) */
  readonly digests?: ModuleDigests;
  /** what the threads are called in messages (a remote host's pool: whose threads) @default 'a threads() worker' */
  readonly where?: string;
}

/**
 * The one piscina task a lane is: the thread runs the requests that arrive on `port` until the main thread closes
 * it. The answer is nothing; a rejection means the thread died (or was terminated).
 */
export interface ServeRequest {
  readonly port: MessagePort;
  /** the request slots of the pool (see `Slot`) */
  readonly slots: Int32Array;
}

/** One rank of one attempt of one task: what the remote runner runs, with its key and slot, and the ranks' ports. */
export interface ThreadRequest extends RemoteRequest {
  /** unique per request in flight on a pool (a request taken back and queued elsewhere gets a new one) */
  readonly key: number;
  /** its index in the pool's slots */
  readonly slot: number;
  /** only for tasks with ranks > 1 */
  readonly comm?: { readonly rank: number; readonly size: number; readonly ports: ReadonlyArray<MessagePort | null> };
}

/** Main thread → worker, on a lane's port: requests to run in this order, or an abort of a running one. */
export type ToThread = readonly ThreadRequest[] | AbortRequest;

/** Stop the running request with this key (through its signal). */
export interface AbortRequest {
  readonly abort: number;
  readonly reason: RecordedError;
}

/**
 * Worker → main thread: how a request ended. The worker never throws at piscina: a task's failure comes back as
 * data, so that the main thread can tell a failed task from a crashed thread.
 */
export interface ThreadAnswer {
  readonly key: number;
  readonly outcome: RemoteOutcome;
}

/** keys stay below 2^29: a slot holds key × 4 + state in an Int32 */
export const KEY_WRAP = 2 ** 29;

/**
 * The state of one queued or running request, in shared memory: slot `i` of the pool's Int32Array holds
 * `key × 4 + state`. A request is posted to one thread `Queued`; that thread claims it (`Queued → Running`) when it
 * comes to it, or the main thread takes it back (`Queued → Taken`) to run it elsewhere or not at all. Both use
 * `Atomics.compareExchange` on the whole value, so exactly one of them wins, and a slot reused by a later request
 * (another key) fails both for the old one. The worker marks a request `Done` just before it answers.
 */
export const SlotState = {
  Taken: 0,
  Queued: 1,
  Running: 2,
  Done: 3,
} as const;

export const Slot = {
  create(size: number): Int32Array {
    return new Int32Array(new SharedArrayBuffer(size * Int32Array.BYTES_PER_ELEMENT));
  },
  /** main thread: the request is posted (before it is sent) */
  queue(slots: Int32Array, req: { readonly key: number; readonly slot: number }): void {
    Atomics.store(slots, req.slot, req.key * 4 + SlotState.Queued);
  },
  /** worker: takes the request to run it; false if the main thread took it back (or the slot is another's now) */
  claim(slots: Int32Array, req: ThreadRequest): boolean {
    const queued = req.key * 4 + SlotState.Queued;
    return Atomics.compareExchange(slots, req.slot, queued, req.key * 4 + SlotState.Running) === queued;
  },
  /** main thread: takes the request back; false if its thread has started it */
  take(slots: Int32Array, req: { readonly key: number; readonly slot: number }): boolean {
    const queued = req.key * 4 + SlotState.Queued;
    return Atomics.compareExchange(slots, req.slot, queued, req.key * 4 + SlotState.Taken) === queued;
  },
  /**
   * worker: the request has ended (its answer follows). A compare-and-swap, not a store: a thread being terminated
   * may end its request after the main thread has given up on it and reused its slot.
   */
  done(slots: Int32Array, req: ThreadRequest): void {
    Atomics.compareExchange(slots, req.slot, req.key * 4 + SlotState.Running, req.key * 4 + SlotState.Done);
  },
  /** true while the request's thread runs it */
  running(slots: Int32Array, req: { readonly key: number; readonly slot: number }): boolean {
    return Atomics.load(slots, req.slot) === req.key * 4 + SlotState.Running;
  },
};
