/**
 * The lanes of a `threads()` pool (main side; the worker's side is `worker.ts`): one long-lived piscina task per
 * thread (a serve run) that runs the requests posted on its MessagePort, so that handing a task to a thread is one
 * message each way instead of one piscina run, and the requests handed over in one turn of the event loop travel in
 * one message. piscina still owns the threads: it starts them, replaces one that dies, and terminates one whose serve
 * run is aborted.
 *
 * A request may be posted to a thread that is still busy (queued ahead, so that the thread goes on to it without
 * waiting for this event loop), but it stays the main thread's until the thread claims it (`Slot`): a thread that has
 * nothing to do takes back a request queued behind another thread's running one, and so does any thread while one of
 * the others has given no answer for a while (a long task), so a short task does not wait behind a long one. A request
 * of a task with `ranks > 1` goes to an idle thread only, and is never moved (its ports went with it).
 */
import { MessageChannel, receiveMessageOnPort, type MessagePort } from 'node:worker_threads';
import type Piscina from 'piscina';
import { recordError } from '../../recorded-error';
import type { RemoteRequest } from '../remote/runner';
import type { RemoteOutcome } from '../remote/wire';
import {
  KEY_WRAP,
  Slot,
  type AbortRequest,
  type ServeRequest,
  type ThreadAnswer,
  type ThreadRequest,
  type ToThread,
} from './protocol';

/** One request for a thread (one rank of one attempt), as the main thread keeps it until it has its answer. */
export interface Post {
  readonly request: RemoteRequest & { readonly comm?: ThreadRequest['comm'] };
  /** the ranks' ports, transferred with the request */
  readonly transfer?: readonly MessagePort[];
  /** the request ended on its thread (its own failure included) */
  readonly answered: (outcome: RemoteOutcome) => void;
  /** its thread died while it ran (or before it could be sent: `DataCloneError`) */
  readonly crashed: (err: unknown) => void;
  /** (kept by `Lanes`) where it is: placed on a lane, waiting in `Lanes` (null), or nowhere (answered, dropped) */
  at?: Placed | null;
}

/** Where a post is: its key and slot on the thread it was last posted to. */
interface Placed {
  readonly post: Post;
  readonly lane: Lane;
  readonly key: number;
  readonly slot: number;
  readonly wire: ThreadRequest;
  /** cancelled while running: its answer is not wanted; resolves the wait of `stopped` */
  stopped?: () => void;
}

/** One serve run: a thread's lane while it lasts (a lane ended, crashed or terminated is replaced by a new one). */
class Lane {
  /** posted and not answered (nor taken back), in the order the thread runs them */
  readonly placed = new Map<number, Placed>();
  outbox: ThreadRequest[] = [];
  outboxPlaced: Placed[] = [];
  transfer: MessagePort[] = [];
  /** `Lanes.answers` when the request now at the head of this lane became its head */
  mark = 0;
  /** answers received from this serve run (a serve run that died without any ran nothing: see `ended`) */
  answers = 0;
  /** no longer takes requests: ended (idle), terminated, or crashed */
  gone = false;
  readonly idle: ReturnType<typeof setTimeout>;

  constructor(
    readonly index: number,
    readonly port: MessagePort,
    readonly abort: AbortController,
    onIdle: (lane: Lane) => void,
  ) {
    this.idle = setTimeout(() => onIdle(this), IDLE_MS);
    this.idle.unref();
  }
}

/** An idle lane's serve run ends after this long: an idle pool keeps no piscina task (nor the process) alive. */
const IDLE_MS = 250;
/** Requests a lane may hold (running and queued behind it); more wait here. */
const DEPTH = 4;

export interface LanesOptions {
  readonly threads: number;
  readonly pool: () => Piscina<ServeRequest, void>;
  /** ms a cancelled request has to return before its thread is terminated */
  readonly grace: number;
}

/** The lanes of one pool: where requests wait, which thread runs which, and what happens when a thread dies. */
export class Lanes {
  private readonly lanes: Array<Lane | undefined>;
  /** not posted to a thread yet, in order */
  private pending: Post[] = [];
  private pendingHead = 0;
  private readonly slots: Int32Array;
  private readonly free: number[];
  private nextKey = 0;
  /** answers received, from every lane: the clock by which a lane that has answered nothing for a while is found */
  private answers = 0;
  /** a lane whose head has run while the other lanes answered this many requests holds up what is queued behind it */
  private readonly lag: number;
  private scheduled = false;
  private closing = false;
  /** runs told to stop that have not ended yet: the pool is destroyed only once they have (or their threads died) */
  private readonly stopping = new Set<Promise<void>>();

  constructor(private readonly options: LanesOptions) {
    this.lanes = new Array<Lane | undefined>(options.threads).fill(undefined);
    const size = 64 + 8 * options.threads;
    this.slots = Slot.create(size);
    this.free = Array.from({ length: size }, (_, i) => size - 1 - i);
    this.lag = 4 * options.threads;
  }

  /** Runs the request on a thread; its answer (or crash) comes to the post's callbacks. */
  submit(post: Post): void {
    post.at = null;
    this.pending.push(post);
    this.schedule();
  }

  /**
   * The post is no longer wanted (cancelled, timed out, another rank failed). Not started yet: it never will be.
   * Running: its signal aborts with `reason`, and its thread is terminated if it has not returned within the grace
   * period; `close` waits for it to end. Resolves once it has (returned, or its thread was terminated); undefined if it
   * was not running.
   */
  cancel(post: Post, reason: unknown): Promise<void> | undefined {
    const placed = post.at;
    if (placed === undefined) return undefined; // answered
    post.at = undefined;
    if (placed === null) return undefined; // still here: `assign` passes over it
    const lane = placed.lane;
    if (this.takeBack(lane, placed)) return undefined;
    // running: abort its signal, and give it its grace period
    const settled = new Promise<void>((resolve) => (placed.stopped = resolve));
    this.stopping.add(settled);
    void settled.then(() => this.stopping.delete(settled));
    this.abortSoon(lane, { abort: placed.key, reason: recordError(reason) });
    const killer = setTimeout(() => this.expire(lane, placed), this.options.grace);
    killer.unref();
    void settled.then(() => clearTimeout(killer));
    return settled;
  }

  /** aborts of running requests, posted once the current synchronous run of cancels is over (see `abortSoon`) */
  private aborts: Array<[Lane, AbortRequest]> = [];

  /**
   * Tells the lane to abort a request it runs, after the current synchronous work. Tasks are cancelled in runs (a
   * user cancels a list, a pipeline's teardown its window): told at once, a thread that stopped the first of them
   * took the next request queued on its lane before the run came to cancel that one, and started it.
   */
  private abortSoon(lane: Lane, request: AbortRequest): void {
    if (this.aborts.push([lane, request]) > 1) return;
    queueMicrotask(() => {
      const due = this.aborts;
      this.aborts = [];
      for (const [l, r] of due) if (!l.gone) l.port.postMessage(r);
    });
  }

  /** Resolves once the runs told to stop have ended (or their threads were terminated); then ends every lane. */
  async close(): Promise<void> {
    // a cancelled task has its grace period to return, even when its executor closes at once
    while (this.stopping.size > 0) await Promise.all(this.stopping);
    this.closing = true;
    for (const lane of this.lanes) if (lane !== undefined) this.end(lane);
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = true;
    queueMicrotask(() => this.flush());
  }

  /** Places what waits, moves what waits behind a busy thread to an idle one, and sends what was placed. */
  private flush(): void {
    this.scheduled = false;
    if (this.closing) return;
    this.unblock();
    this.assign();
    this.steal();
    for (const lane of this.lanes) if (lane !== undefined && lane.outbox.length > 0) this.send(lane);
  }

  /** Posts the waiting requests, in order, while there is a lane for the next one. */
  private assign(): void {
    while (this.pendingHead < this.pending.length) {
      const post = this.pending[this.pendingHead]!;
      if (post.at !== null) {
        this.pendingHead++; // cancelled meanwhile
        continue;
      }
      const index = post.request.comm !== undefined ? this.idleLane() : this.openLane();
      if (index === undefined || this.free.length === 0) break;
      this.pendingHead++;
      this.place(index, post);
    }
    if (this.pendingHead === this.pending.length) {
      this.pending = [];
      this.pendingHead = 0;
    } else if (this.pendingHead > 1024 && this.pendingHead * 2 > this.pending.length) {
      this.pending = this.pending.slice(this.pendingHead);
      this.pendingHead = 0;
    }
  }

  /** The least busy lane that may queue another request: not held up, not full. */
  private openLane(): number | undefined {
    let best: number | undefined;
    let load = DEPTH;
    for (let i = 0; i < this.lanes.length; i++) {
      const lane = this.lanes[i];
      const n = lane === undefined ? 0 : lane.placed.size;
      if (n === 0) return i;
      if (n < load && !this.heldUp(lane!)) {
        best = i;
        load = n;
      }
    }
    return best;
  }

  private idleLane(): number | undefined {
    for (let i = 0; i < this.lanes.length; i++) {
      const lane = this.lanes[i];
      if (lane === undefined || lane.placed.size === 0) return i;
    }
    return undefined;
  }

  /** The lane's head has run while the others answered `lag` requests: it may be a long task. */
  private heldUp(lane: Lane): boolean {
    return this.answers - lane.mark > this.lag;
  }

  /** Puts a post on lane `index` (starting its serve run if it has none), to be sent at the end of this flush. */
  private place(index: number, post: Post): void {
    const lane = this.lanes[index] ?? this.start(index);
    const slot = this.free.pop()!;
    this.nextKey = (this.nextKey % (KEY_WRAP - 1)) + 1;
    const key = this.nextKey;
    const r = post.request;
    const wire: ThreadRequest =
      r.comm === undefined
        ? { key, slot, name: r.name, args: r.args, id: r.id, label: r.label, attempt: r.attempt, version: r.version }
        : { ...r, key, slot };
    const placed: Placed = { post, lane, key, slot, wire };
    Slot.queue(this.slots, placed);
    if (lane.placed.size === 0) lane.mark = this.answers;
    lane.placed.set(key, placed);
    post.at = placed;
    lane.outbox.push(wire);
    lane.outboxPlaced.push(placed);
    if (post.transfer !== undefined) lane.transfer.push(...post.transfer);
  }

  /** Takes a queued request back from its lane; false if its thread has started it. */
  private takeBack(lane: Lane, placed: Placed): boolean {
    if (!Slot.take(this.slots, placed)) return false;
    this.unplace(lane, placed);
    return true;
  }

  private unplace(lane: Lane, placed: Placed): void {
    lane.placed.delete(placed.key);
    this.free.push(placed.slot);
    if (lane.placed.size === 0 && !lane.gone) lane.idle.refresh();
  }

  /**
   * Requests queued behind a lane that has answered nothing while the others answered `lag` (a long task, most
   * likely) go back to wait here, first: the next lane to free takes them.
   */
  private unblock(): void {
    if (this.lanes.length === 1) return;
    let back: Post[] | undefined;
    for (const lane of this.lanes) {
      if (lane === undefined || lane.placed.size < 2 || !this.heldUp(lane)) continue;
      let first = true;
      for (const placed of lane.placed.values()) {
        if (first || placed.post.request.comm !== undefined) {
          first = false;
          continue;
        }
        if (!this.takeBack(lane, placed)) continue;
        placed.post.at = null;
        (back ??= []).push(placed.post);
      }
    }
    if (back !== undefined) this.putFirst(back);
  }

  /** Puts posts taken back from a lane at the head of what waits here, in their order. */
  private putFirst(back: readonly Post[]): void {
    this.pending = [...back, ...this.pending.slice(this.pendingHead)];
    this.pendingHead = 0;
  }

  /** An idle lane takes a request queued behind another lane's running one. */
  private steal(): void {
    if (this.lanes.length === 1 || this.pendingHead < this.pending.length) return;
    for (let i = 0; i < this.lanes.length; i++) {
      const idle = this.lanes[i];
      if (idle !== undefined && idle.placed.size > 0) continue;
      const victim = this.queuedBehind();
      if (victim === undefined) return;
      this.place(i, victim);
    }
  }

  /** Takes back the oldest request queued behind another one, if any. */
  private queuedBehind(): Post | undefined {
    let oldest: { lane: Lane; placed: Placed } | undefined;
    for (const lane of this.lanes) {
      if (lane === undefined || lane.placed.size < 2) continue;
      let first = true;
      for (const placed of lane.placed.values()) {
        if (first) {
          first = false;
          continue;
        }
        if (placed.post.request.comm !== undefined) continue;
        if (oldest === undefined || older(placed.key, oldest.placed.key, this.nextKey)) oldest = { lane, placed };
        break;
      }
    }
    if (oldest === undefined || !this.takeBack(oldest.lane, oldest.placed)) return undefined;
    return oldest.placed.post;
  }

  /** Sends what was placed on the lane this turn, in one message. */
  private send(lane: Lane): void {
    const batch = lane.outbox;
    const placed = lane.outboxPlaced;
    const transfer = lane.transfer;
    lane.outbox = [];
    lane.outboxPlaced = [];
    lane.transfer = [];
    try {
      lane.port.postMessage(batch satisfies ToThread, transfer);
    } catch {
      // one of them cannot be cloned (an upstream result that is a function, ...): send them one by one
      for (let i = 0; i < batch.length; i++) {
        const p = placed[i]!;
        try {
          lane.port.postMessage([batch[i]!] satisfies ToThread, p.post.transfer as MessagePort[] | undefined);
        } catch (err) {
          if (p.post.at !== p || !this.takeBack(lane, p)) continue;
          p.post.at = undefined;
          p.post.crashed(err);
        }
      }
    }
  }

  /** Starts the serve run of lane `index`. */
  private start(index: number): Lane {
    const { port1, port2 } = new MessageChannel();
    const abort = new AbortController();
    const lane = new Lane(index, port1, abort, (l) => this.idled(l));
    this.lanes[index] = lane;
    port1.on('message', (msg: ThreadAnswer) => {
      this.answered(lane, msg);
      // the answers that have arrived meanwhile, at once: the tasks they free start in one message
      for (let m = receiveMessageOnPort(port1); m !== undefined; m = receiveMessageOnPort(port1)) {
        this.answered(lane, m.message as ThreadAnswer);
      }
    });
    this.options
      .pool()
      .run({ port: port2, slots: this.slots }, { transferList: [port2], signal: abort.signal })
      .then(
        () => this.ended(lane, undefined),
        (err: unknown) => this.ended(lane, err ?? new Error('the thread ended')),
      );
    return lane;
  }

  private answered(lane: Lane, { key, outcome }: ThreadAnswer): void {
    const placed = lane.placed.get(key);
    if (placed === undefined) return; // (of a lane already dealt with)
    this.answers++;
    lane.answers++;
    this.unplace(lane, placed);
    lane.mark = this.answers;
    this.schedule();
    if (placed.stopped !== undefined) {
      placed.stopped();
      return;
    }
    placed.post.at = undefined;
    placed.post.answered(outcome);
  }

  /** The cancelled request has had its grace period: terminate its thread if it still runs it. */
  private expire(lane: Lane, placed: Placed): void {
    if (lane.placed.get(placed.key) !== placed) return;
    // what is queued behind it goes elsewhere first, so that the thread can start nothing else before it dies
    this.requeue(lane, new Error('its thread was terminated'), placed);
    if (!Slot.running(this.slots, placed)) return; // it has returned: its answer is on the way
    lane.gone = true;
    if (this.lanes[lane.index] === lane) this.lanes[lane.index] = undefined;
    lane.abort.abort();
    // its place takes a new lane: a rank of a wider task may wait for an idle one (nothing else may come to place it)
    this.schedule();
  }

  /**
   * Takes back every request queued on the lane (but `except`), to wait here first. A rank of a task with several
   * cannot move (its ports went to that thread): it fails with `err`, as its thread ended before it could start.
   */
  private requeue(lane: Lane, err: unknown, except?: Placed): void {
    const back: Post[] = [];
    for (const placed of [...lane.placed.values()]) {
      if (placed === except || !this.takeBack(lane, placed)) continue;
      if (placed.post.request.comm !== undefined) {
        placed.post.at = undefined;
        placed.post.crashed(err);
        continue;
      }
      placed.post.at = null;
      back.push(placed.post);
    }
    if (back.length === 0) return;
    this.putFirst(back);
    this.schedule();
  }

  /** A lane idle for `IDLE_MS`: its serve run ends (a new one starts when work comes). */
  private idled(lane: Lane): void {
    if (lane.gone || lane.placed.size > 0 || lane.outbox.length > 0) return;
    this.end(lane);
  }

  private end(lane: Lane): void {
    lane.gone = true;
    clearTimeout(lane.idle);
    if (this.lanes[lane.index] === lane) this.lanes[lane.index] = undefined;
    lane.port.close();
  }

  /**
   * The lane's serve run has ended: closed by us (nothing to do), or its thread died (a crash, or terminated after a
   * cancelled task's grace period). The answers it sent first are read; a request it was running fails with the
   * crash (unless cancelled); those queued behind never started, and run on another lane.
   */
  private ended(lane: Lane, err: unknown): void {
    // (a lane ended by us, idle, has nothing placed and its port closed)
    if (this.closing || (lane.placed.size === 0 && (err === undefined || lane.gone))) return;
    for (let m = receiveMessageOnPort(lane.port); m !== undefined; m = receiveMessageOnPort(lane.port)) {
      this.answered(lane, m.message as ThreadAnswer);
    }
    this.end(lane);
    this.requeue(lane, err);
    this.schedule(); // its place takes a new lane (see `expire`)
    let failed = false;
    for (const placed of [...lane.placed.values()]) {
      lane.placed.delete(placed.key);
      this.free.push(placed.slot);
      if (placed.stopped !== undefined) {
        placed.stopped();
        continue;
      }
      placed.post.at = undefined;
      failed = true;
      placed.post.crashed(err);
    }
    // A thread that died before it ran anything (it could not start): the first request fails, so that a thread that
    // cannot start does not take the same requests over and over.
    if (!failed && lane.answers === 0 && !lane.abort.signal.aborted) {
      const first = this.pending[this.pendingHead];
      if (first !== undefined && first.at === null) {
        this.pendingHead++;
        first.at = undefined;
        first.crashed(err);
      }
    }
  }
}

/** Whether key `a` was given before key `b` (keys wrap: `last` is the newest). */
function older(a: number, b: number, last: number): boolean {
  const age = (k: number): number => (last - k + KEY_WRAP) % KEY_WRAP;
  return age(a) > age(b);
}
