/**
 * The driver's side of `bullmq()` in Redis: a BullMQ Queue and QueueEvents per task shape, the attempts
 * in flight (each waiting for its job's outcome), adds batched per turn of the event loop, cancellation
 * (the job removed while it waits, else announced to the worker running it), re-attachment to a job a
 * previous run of the driver left in Redis, and a sweep that finds outcomes whose events were missed and
 * gives up, with a typed error, on a Redis that stays unreachable.
 */
import type { Queue, QueueEvents, QueueEventsProducer, JobsOptions } from 'bullmq';
import { BackendUnavailableError, WorkerCrashedError } from '../../errors';
import { reviveError, type RecordedError } from '../../recorded-error';
import { closeSoon, within } from './close';
import { bullmqDriver } from './driver';
import {
  CANCEL_EVENT,
  SHAPE_EVENT,
  decodeFailure,
  describeConnection,
  shapesKey,
  type CancelEvent,
  type JobData,
  type JobResult,
  type Meeting,
  type RedisConnection,
  type ShapeEvent,
} from './protocol';

export type Outcome = { readonly ok: true; readonly value: unknown } | { readonly ok: false; readonly error: Error };

/** One attempt waiting for its job. */
export interface Tracked {
  jobId: string;
  readonly shape: string;
  readonly data: JobData;
  readonly settle: (outcome: Outcome) => void;
  /** when it was last seen not finished (ms) */
  checked: number;
  /** where its job is: to be added (in its shape's batch), being added, in Redis (added by us, or found there) */
  job: 'batched' | 'adding' | 'added' | 'none';
  done: boolean;
  /** why it was cancelled, if it was: a job added meanwhile is stopped once it is in */
  cancelled?: RecordedError;
}

interface Shape {
  readonly queue: Queue<JobData, JobResult>;
  readonly events: QueueEvents;
  /** jobs to add at the end of this turn */
  batch: Tracked[];
}

export interface ClientOptions {
  readonly connection: RedisConnection;
  readonly meeting: Meeting;
  /** seconds finished jobs stay in Redis */
  readonly keepFor: number;
  /** seconds Redis may stay unreachable before the attempts waiting on it fail */
  readonly unavailableAfter: number;
}

/** ms between sweeps; an attempt is looked up in a sweep once it has waited this long without news */
const SWEEP_MS = 5000;
const RECHECK_AFTER_MS = 20_000;
const RECHECK_PER_SWEEP = 500;
/** jobs per addBulk */
const ADD_CHUNK = 500;
/** events kept in each shape queue's stream (BullMQ's default is 10 000): the driver reads completions from it */
const EVENTS_KEPT = 50_000;
/** states in which a job left by an earlier run of the driver is still going, or done */
const ALIVE = new Set(['active', 'waiting', 'delayed', 'prioritized', 'waiting-children', 'completed']);

export class BullmqClient {
  private readonly shapes = new Map<string, Promise<Shape>>();
  /** the shapes whose queue is open */
  private readonly opened = new Map<string, Shape>();
  private readonly tracked = new Map<string, Tracked>();
  private readonly jobOptions: JobsOptions;
  private control: QueueEventsProducer | undefined;
  /** every BullMQ connection opened, to close (a shape may still be waiting for Redis to open) */
  private readonly connections: Array<Queue | QueueEvents | QueueEventsProducer> = [];
  private sweeper: ReturnType<typeof setInterval> | undefined;
  private sweeping = false;
  private unreachableSince: number | undefined;
  private closed = false;
  private readonly bull = bullmqDriver('bullmq()');

  constructor(private readonly options: ClientOptions) {
    this.jobOptions = {
      attempts: 1,
      removeOnComplete: { age: options.keepFor },
      removeOnFail: { age: options.keepFor },
    };
  }

  /**
   * Runs `data` as the job `jobId` of `shape` and calls `settle` with its outcome. If `previous` (the job id of the
   * attempt before) is still in Redis, going or done, it is the one followed instead: the driver that submitted it
   * died, and this is the re-run of that attempt.
   */
  track(
    shape: string,
    jobId: string,
    previous: string | undefined,
    data: JobData,
    settle: (o: Outcome) => void,
  ): Tracked {
    const t: Tracked = { jobId, shape, data, settle, checked: Date.now(), job: 'none', done: false };
    // tracked at once: if Redis cannot be reached to open the shape's queue, the sweep gives up on it in time
    this.tracked.set(jobId, t);
    this.startSweeping();
    // the common case, at the cost of no promise: a first attempt to a shape whose queue is open
    const open = previous === undefined ? this.opened.get(shape) : undefined;
    if (open !== undefined) {
      this.add(open, t);
      return t;
    }
    void this.start(t, previous).catch((err: unknown) => this.finish(t, { ok: false, error: this.unavailable(err) }));
    return t;
  }

  private async start(t: Tracked, previous: string | undefined): Promise<void> {
    const shape = await this.shape(t.shape);
    if (t.done) return;
    if (previous !== undefined && ALIVE.has(await shape.queue.getJobState(previous))) {
      if (t.done) return;
      this.tracked.delete(t.jobId);
      t.jobId = previous;
      t.job = 'added';
      this.tracked.set(t.jobId, t);
      await this.recheck(t);
      return;
    }
    this.add(shape, t);
  }

  /** Adds the attempt's job with the others of this turn. */
  private add(shape: Shape, t: Tracked): void {
    t.job = 'batched';
    if (shape.batch.length === 0) setImmediate(() => this.flush(shape));
    shape.batch.push(t);
  }

  private flush(shape: Shape): void {
    const batch = shape.batch.filter((t) => !t.done);
    shape.batch = [];
    if (batch.length === 0) return;
    for (const t of batch) t.job = 'adding';
    void this.addChunks(shape, batch);
  }

  /**
   * Adds a batch in chunks, one after the other: one addBulk of thousands of jobs lets workers finish the first ones
   * while it still writes the others' events, and the events stream (trimmed to its length) loses their completions.
   */
  private async addChunks(shape: Shape, batch: readonly Tracked[]): Promise<void> {
    for (let i = 0; i < batch.length; i += ADD_CHUNK) {
      const chunk = batch.slice(i, i + ADD_CHUNK).filter((t) => !t.done);
      if (chunk.length === 0) continue;
      try {
        await shape.queue.addBulk(
          chunk.map((t) => ({ name: t.data.name, data: t.data, opts: { ...this.jobOptions, jobId: t.jobId } })),
        );
      } catch {
        // Redis is unreachable: the sweep adds them again once it is back (or fails them if it stays away)
        this.unreachableSince ??= Date.now();
        for (const t of batch.slice(i)) if (t.job === 'adding') t.job = 'none';
        return;
      }
      for (const t of chunk) {
        t.job = 'added';
        if (t.cancelled !== undefined) void this.stopJob(shape, t.jobId, t.cancelled);
      }
    }
  }

  /** Stops following an attempt, and stops its job: removed if it waits, else the worker running it is told. */
  cancel(t: Tracked, reason: RecordedError): void {
    if (t.done) return;
    t.done = true;
    t.cancelled = reason;
    this.tracked.delete(t.jobId);
    // still in a batch: dropped at the flush; being added: stopped once it is in
    if (t.job === 'added') void this.shape(t.shape).then((shape) => this.stopJob(shape, t.jobId, reason));
  }

  /** stops on their way to Redis: closing waits for them, so that a cancellation made just before still arrives */
  private readonly stopping = new Set<Promise<void>>();

  /** Removes a job that waits; announces the cancellation to the worker running it otherwise. */
  private stopJob(shape: Shape, jobId: string, reason: RecordedError): Promise<void> {
    const stopping = this.sendStop(shape, jobId, reason);
    this.stopping.add(stopping);
    return stopping.finally(() => this.stopping.delete(stopping));
  }

  private async sendStop(shape: Shape, jobId: string, reason: RecordedError): Promise<void> {
    try {
      const removed = await shape.queue.remove(jobId);
      if (removed === 1) return;
      const event: CancelEvent = { eventName: CANCEL_EVENT, job: jobId, reason: JSON.stringify(reason) };
      await this.controlStream().publishEvent(event);
    } catch {
      // Redis is gone: the job runs to its end, and nobody waits for it
    }
  }

  private finish(t: Tracked, outcome: Outcome): void {
    if (t.done) return;
    t.done = true;
    this.tracked.delete(t.jobId);
    t.settle(outcome);
  }

  /** The queue and events of a shape, ready, and announced to the workers. */
  private shape(name: string): Promise<Shape> {
    let shape = this.shapes.get(name);
    if (shape === undefined) {
      shape = this.openShape(name);
      this.shapes.set(name, shape);
      shape.then(
        (open) => this.opened.set(name, open),
        () => this.shapes.delete(name),
      );
    }
    return shape;
  }

  private startSweeping(): void {
    if (this.sweeper !== undefined) return;
    this.sweeper = setInterval(() => {
      if (this.sweeping) return;
      this.sweeping = true;
      void this.sweep().finally(() => {
        this.sweeping = false;
      });
    }, SWEEP_MS);
    this.sweeper.unref();
  }

  private async openShape(name: string): Promise<Shape> {
    const { connection, meeting } = this.options;
    const queue = new this.bull.Queue<JobData, JobResult>(name, {
      connection,
      prefix: meeting.prefix,
      streams: { events: { maxLen: EVENTS_KEPT } },
    });
    const events = new this.bull.QueueEvents(name, { connection, prefix: meeting.prefix });
    this.connections.push(queue, events);
    queue.on('error', () => {
      this.unreachableSince ??= Date.now();
    });
    events.on('error', () => {
      this.unreachableSince ??= Date.now();
    });
    events.on('completed', ({ jobId, returnvalue }) => {
      const t = this.tracked.get(jobId);
      if (t !== undefined) this.finish(t, { ok: true, value: (returnvalue as unknown as JobResult | null)?.value });
    });
    events.on('failed', ({ jobId, failedReason }) => {
      const t = this.tracked.get(jobId);
      if (t !== undefined) this.finish(t, { ok: false, error: this.failure(t, failedReason) });
    });
    // the job was there already (an earlier run of this workflow's driver added it): it may be done
    events.on('duplicated', ({ jobId }) => {
      const t = this.tracked.get(jobId);
      if (t !== undefined) void this.recheck(t).catch(() => undefined);
    });
    try {
      await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
      const client = await queue.client;
      await client.hset(shapesKey(meeting), { [name]: Date.now() });
      const announce: ShapeEvent = { eventName: SHAPE_EVENT, queue: name };
      await this.controlStream().publishEvent(announce);
    } catch (err) {
      await Promise.allSettled([closeSoon(queue), closeSoon(events)]);
      throw err;
    }
    return { queue, events, batch: [] };
  }

  /** Where the driver tells the workers of new shapes and cancellations. */
  private controlStream(): QueueEventsProducer {
    const { connection, meeting } = this.options;
    if (this.control === undefined) {
      this.control = new this.bull.QueueEventsProducer(meeting.queue, { connection, prefix: meeting.prefix });
      this.control.on('error', () => undefined); // the sweep reports an outage
      this.connections.push(this.control);
    }
    return this.control;
  }

  /** Looks the job of an attempt up in Redis: settles it if it is done, adds it again if Redis lost it. */
  private async recheck(t: Tracked): Promise<void> {
    const shape = await this.shape(t.shape);
    const job = await this.bull.Job.fromId<JobData, JobResult>(shape.queue, t.jobId);
    if (t.done) return;
    t.checked = Date.now();
    if (job === undefined) {
      // never added (Redis was unreachable), or Redis lost it (restarted without persistence, flushed): add it
      if (t.job === 'none' || t.job === 'added') this.add(shape, t);
      return;
    }
    t.job = 'added';
    if (job.finishedOn === undefined) return;
    if (job.failedReason !== undefined && job.failedReason !== null && job.failedReason !== '')
      this.finish(t, { ok: false, error: this.failure(t, job.failedReason) });
    else this.finish(t, { ok: true, value: (job.returnvalue as JobResult | null)?.value });
  }

  private failure(t: Tracked, reason: string): Error {
    const recorded = decodeFailure(reason);
    if (recorded !== undefined) return reviveError(recorded);
    return new WorkerCrashedError(
      `task ${t.data.label ?? t.data.name} (${t.data.id}): BullMQ failed its job ${t.jobId}: ${reason}` +
        (/stalled/.test(reason) ? ' (the workers running it died, or their event loops were blocked)' : ''),
    );
  }

  /**
   * Every few seconds while attempts wait: says again which shapes have tasks (a Redis restarted empty forgot them,
   * and workers started since would not know their queues), adds what Redis refused or lost, looks up attempts
   * without news for a while, and fails every attempt once Redis has been unreachable for longer than
   * `unavailableAfter`.
   */
  private async sweep(): Promise<void> {
    if (this.tracked.size === 0 || this.closed) return;
    const now = Date.now();
    const waiting = [...this.tracked.values()];
    let problem: unknown;
    const answered = await within(
      this.reassertShapes(waiting).catch((err: unknown) => {
        problem = err;
        throw err;
      }),
      2000,
    );
    if (!answered || problem !== undefined) {
      this.unreachableSince ??= now;
      if (now - this.unreachableSince > this.options.unavailableAfter * 1000) {
        const why = problem ?? new Error('no answer within 2 s');
        for (const t of waiting) this.finish(t, { ok: false, error: this.unavailable(why) });
      }
      return;
    }
    // back after an outage: Redis may have come back without the jobs (restarted without persistence), look now
    const back = this.unreachableSince !== undefined;
    this.unreachableSince = undefined;
    const stale = waiting
      .filter((t) => back || t.job === 'none' || now - t.checked > RECHECK_AFTER_MS)
      .slice(0, RECHECK_PER_SWEEP);
    await within(Promise.allSettled(stale.map((t) => this.recheck(t))), SWEEP_MS);
  }

  /**
   * Writes the shapes of waiting attempts into the shapes hash again (also the sweep's check that Redis answers),
   * through the queue of a shape: it waits for Redis while none could be opened yet.
   */
  private async reassertShapes(waiting: readonly Tracked[]): Promise<void> {
    const shape = await (this.shapes.get(waiting[0]!.shape) ?? this.shape(waiting[0]!.shape));
    const client = await shape.queue.client;
    const now = Date.now();
    await client.hset(shapesKey(this.options.meeting), Object.fromEntries(waiting.map((t) => [t.shape, now])));
  }

  private unavailable(err: unknown): Error {
    const since =
      this.unreachableSince !== undefined ? ` for ${Math.round((Date.now() - this.unreachableSince) / 1000)} s` : '';
    return new BackendUnavailableError(
      `bullmq(): Redis at ${describeConnection(this.options.connection)} is unreachable${since} ` +
        `(${err instanceof Error ? err.message : String(err)}): start it (or fix bullmq({ connection })) and run the ` +
        `workflow again; what succeeded is kept`,
      { cause: err },
    );
  }

  async close(): Promise<void> {
    this.closed = true;
    // a cancellation whose shape was still being opened is a turn or two behind
    await new Promise((resolve) => setImmediate(resolve));
    // (a stop on its way to a Redis that is gone is given up after a few seconds)
    await within(Promise.all([...this.stopping]), 5000);
    if (this.sweeper !== undefined) clearInterval(this.sweeper);
    this.shapes.clear();
    this.opened.clear();
    this.control = undefined;
    const connections = this.connections.splice(0);
    await Promise.allSettled(connections.map(closeSoon));
  }
}
