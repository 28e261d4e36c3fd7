/**
 * The communicator between the ranks of a function task with `ranks > 1` on `threads()`: a full mesh
 * of MessageChannels, one per pair of ranks, set up by the main thread and handed to each rank's worker.
 * Point-to-point messages are eager (`send` does not wait for the matching `recv`) and ordered per
 * (source, tag); collectives are numbered, so every rank must call them in the same order (as in MPI).
 */
import type { MessagePort } from 'node:worker_threads';
import { InvalidOptionsError, TaskFailedError, UnserializableValueError } from '../../errors';
import type { Communicator } from '../backend';
import { unclonable } from '../remote/wire';

type ReduceOp = 'sum' | 'min' | 'max' | 'prod';

/** On the wire: a user message has a tag `t`, a collective step has a sequence number `c`. */
interface Envelope {
  readonly t?: number;
  readonly c?: number;
  readonly v: unknown;
}

interface Waiter {
  resolve(value: unknown): void;
  reject(reason: unknown): void;
  /** the call that waits, for error messages */
  readonly what: string;
}

const REDUCERS: Readonly<Record<ReduceOp, (a: number, b: number) => number>> = {
  sum: (a, b) => a + b,
  prod: (a, b) => a * b,
  min: (a, b) => Math.min(a, b),
  max: (a, b) => Math.max(a, b),
};

export class PortCommunicator implements Communicator {
  private readonly inbox: Array<Map<string, unknown[]>> = [];
  private readonly waiting: Array<Map<string, Waiter[]>> = [];
  private readonly closed: boolean[] = [];
  private collectives = 0;
  private readonly onAbort = (): void => this.failAll(this.signal.reason);

  constructor(
    readonly rank: number,
    readonly size: number,
    private readonly ports: ReadonlyArray<MessagePort | null>,
    private readonly signal: AbortSignal,
  ) {
    for (let r = 0; r < size; r++) {
      this.inbox.push(new Map());
      this.waiting.push(new Map());
      this.closed.push(false);
      const port = ports[r];
      if (port === null || port === undefined) continue;
      port.on('message', (msg: Envelope) =>
        this.deliver(r, msg.c !== undefined ? `c${msg.c}` : `t${msg.t ?? 0}`, msg.v),
      );
      port.on('close', () => this.peerGone(r));
    }
    signal.addEventListener('abort', this.onAbort, { once: true });
  }

  send(to: number, value: unknown, tag = 0): Promise<void> {
    this.checkPeer(to, 'send');
    checkTag(tag, 'send');
    const problem = unclonable(value, `the value sent from rank ${this.rank} to rank ${to}`);
    // thrown at the call, as a bad rank or tag is: a rejection that nobody awaits (send returns at once) killed the
    // thread instead
    if (problem !== undefined) throw new UnserializableValueError(`comm.send: ${problem}`);
    this.port(to).postMessage({ t: tag, v: value } satisfies Envelope);
    return Promise.resolve();
  }

  recv<T = unknown>(from: number, tag = 0): Promise<T> {
    this.checkPeer(from, 'recv');
    checkTag(tag, 'recv');
    return this.take(from, `t${tag}`, `recv(from ${from}, tag ${tag})`) as Promise<T>;
  }

  async bcast<T>(value: T | undefined, root = 0): Promise<T> {
    this.checkRank(root, 'bcast root');
    const seq = this.collectives++;
    if (this.rank === root) {
      const problem = unclonable(value, `the value broadcast by rank ${root}`);
      if (problem !== undefined) throw new UnserializableValueError(`comm.bcast: ${problem}`);
      for (let r = 0; r < this.size; r++)
        if (r !== root) this.port(r).postMessage({ c: seq, v: value } satisfies Envelope);
      return value as T;
    }
    return (await this.take(root, `c${seq}`, `bcast(root ${root})`)) as T;
  }

  async barrier(): Promise<void> {
    await this.reduce(0, () => 0, 'barrier()');
  }

  allreduce(value: number, op: ReduceOp = 'sum'): Promise<number> {
    const reducer = REDUCERS[op];
    if (reducer === undefined)
      return Promise.reject(
        new InvalidOptionsError(
          `comm.allreduce: op must be one of ${Object.keys(REDUCERS).join(', ')}; got ${String(op)}`,
        ),
      );
    if (typeof value !== 'number')
      return Promise.reject(new InvalidOptionsError(`comm.allreduce: value must be a number; got ${typeof value}`));
    return this.reduce(value, reducer, `allreduce(${op})`);
  }

  /**
   * Closes this rank's ports (the task has ended on this rank). Resolves once they are closed here,
   * which is when the other ranks learn of it: a rank still waiting for this one is then told.
   */
  close(): Promise<void> {
    this.signal.removeEventListener('abort', this.onAbort);
    const closed: Array<Promise<void>> = [];
    this.ports.forEach((port, r) => {
      if (port === null) return;
      // a port the other side has closed already has had its (one) 'close' event
      if (!this.closed[r]!) closed.push(new Promise<void>((resolve) => port.once('close', () => resolve())));
      port.close();
    });
    return Promise.all(closed).then(() => undefined);
  }

  /** Gathers to rank 0, which combines in rank order and sends the result back. */
  private async reduce(value: number, combine: (a: number, b: number) => number, what: string): Promise<number> {
    const seq = this.collectives++;
    if (this.rank !== 0) {
      this.port(0).postMessage({ c: seq, v: value } satisfies Envelope);
      return (await this.take(0, `c${seq}`, what)) as number;
    }
    let acc = value;
    for (let r = 1; r < this.size; r++) acc = combine(acc, (await this.take(r, `c${seq}`, what)) as number);
    for (let r = 1; r < this.size; r++) this.port(r).postMessage({ c: seq, v: acc } satisfies Envelope);
    return acc;
  }

  private take(from: number, key: string, what: string): Promise<unknown> {
    const queued = this.inbox[from]!.get(key);
    if (queued !== undefined && queued.length > 0) {
      const value = queued.shift();
      if (queued.length === 0) this.inbox[from]!.delete(key);
      return Promise.resolve(value);
    }
    if (this.signal.aborted) return Promise.reject(this.signal.reason);
    if (this.closed[from]!) return Promise.reject(this.gone(from, what));
    return new Promise((resolve, reject) => {
      const list = this.waiting[from]!.get(key);
      const waiter: Waiter = { resolve, reject, what };
      if (list === undefined) this.waiting[from]!.set(key, [waiter]);
      else list.push(waiter);
    });
  }

  private deliver(from: number, key: string, value: unknown): void {
    const list = this.waiting[from]!.get(key);
    if (list !== undefined && list.length > 0) {
      const waiter = list.shift()!;
      if (list.length === 0) this.waiting[from]!.delete(key);
      waiter.resolve(value);
      return;
    }
    const queued = this.inbox[from]!.get(key);
    if (queued === undefined) this.inbox[from]!.set(key, [value]);
    else queued.push(value);
  }

  private peerGone(from: number): void {
    this.closed[from] = true;
    for (const list of this.waiting[from]!.values()) {
      for (const waiter of list) waiter.reject(this.gone(from, waiter.what));
    }
    this.waiting[from]!.clear();
  }

  private failAll(reason: unknown): void {
    for (const perRank of this.waiting) {
      for (const list of perRank.values()) for (const waiter of list) waiter.reject(reason);
      perRank.clear();
    }
  }

  private gone(from: number, what: string): Error {
    const err = new TaskFailedError(
      `rank ${this.rank}: ${what} cannot complete: rank ${from} has ended (returned, failed or was stopped) ` +
        `without sending the matching message`,
    );
    // the main thread reports the ended rank's own failure, if it failed, rather than this consequence
    return Object.assign(err, { peerEnded: from });
  }

  private port(r: number): MessagePort {
    return this.ports[r]!;
  }

  private checkRank(r: number, what: string): void {
    if (!Number.isInteger(r) || r < 0 || r >= this.size)
      throw new InvalidOptionsError(`comm.${what}: rank must be an integer in 0..${this.size - 1}; got ${r}`);
  }

  private checkPeer(r: number, what: string): void {
    this.checkRank(r, what);
    if (r === this.rank) throw new InvalidOptionsError(`comm.${what}: rank ${r} cannot ${what} to or from itself`);
  }
}

function checkTag(tag: number, what: string): void {
  if (!Number.isInteger(tag) || tag < 0)
    throw new InvalidOptionsError(`comm.${what}: tag must be a non-negative integer; got ${tag}`);
}
