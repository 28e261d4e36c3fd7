/**
 * `scalems worker`: a Node process that takes task attempts from the BullMQ queues of `bullmq()` drivers
 * and runs them here: functions by their `defineTask` name from the modules it was started with (on a
 * `threads()` pool of its cores: the remote runner, a thread per task, so that a busy function never
 * stalls the job locks), programs through the local executable attempt of `processes()` (both through `TaskHost`,
 * which the Slurm agent shares). It takes only
 * from the queues of task shapes that fit the capacity it declared, and runs no more at once than that
 * capacity (`Gate`). Cancellations and walltimes stop the work itself here.
 */
import { hostname } from 'node:os';
import type { Queue, QueueEvents, UnrecoverableError, Worker, Job as BullJob } from 'bullmq';
import { InvalidOptionsError, InvalidTaskDescriptionError } from '../../errors';
import { recordError, reviveError, type RecordedError } from '../../recorded-error';
import { checkOptions, rules, type OptionRule, type RulesOf } from '../../task/options';
import type { Footprint } from '../../task/requirements';
import { TaskHost } from '../remote/host';
import { hostPool } from '../threads/host-pool';
import { closeSoon, within } from './close';
import { bullmqDriver } from './driver';
import { Gate } from './gate';
import {
  CANCEL_EVENT,
  DEFAULT_PREFIX,
  DEFAULT_QUEUE,
  MEETING_OPTIONS,
  SHAPE_EVENT,
  cancelReason,
  connectionFromUrl,
  decodeJobData,
  describeConnection,
  encodeFailure,
  fits,
  meetingName,
  parseShapeQueue,
  shapeOf,
  shapesKey,
  workerKey,
  type CancelEvent,
  type JobData,
  type JobResult,
  type Meeting,
  type RedisConnection,
  type ShapeEvent,
  type WorkerInfo,
} from './protocol';

export interface ScalemsWorkerOptions {
  /** Redis: a connection object `{ host, port, ... }`, or a `redis://` URL (as `bullmq({ connection })` takes) */
  readonly connection: RedisConnection | string;
  /** BullMQ's key prefix; the driver's `bullmq({ prefix })` @default 'scalems' */
  readonly prefix?: string;
  /** the driver's `bullmq({ queue })` @default 'tasks' */
  readonly queue?: string;
  /** modules that define the function tasks this worker runs (none: it runs programs only) */
  readonly modules?: readonly string[];
  readonly cores: number;
  readonly gpus?: number;
  readonly memoryMB?: number;
  /** tasks at once @default cores */
  readonly concurrency?: number;
  /** @default `<host>-<pid>` */
  readonly name?: string;
  /**
   * Runs function tasks on the worker's own event loop, not on a thread per core: no hop to a thread (the cheapest for
   * light functions, as BullMQ's own processors run), but a function that computes without awaiting holds up the
   * renewal of the job locks (keep such work short, or raise `lockDuration`: else its job goes to another worker), and
   * one that ignores its signal cannot be stopped. Tasks of one rank only. @default false
   */
  readonly inline?: boolean;
  /**
   * ms a job's lock lasts without renewal; also how often this worker looks for jobs of dead workers. A worker killed
   * mid-task loses its job to another after about this long. @default 30000
   */
  readonly lockDuration?: number;
  /** where it says what it does (a line at a time) @default nothing */
  readonly log?: (line: string) => void;
}

const whole = (min: number): OptionRule => ({
  allowed: `an integer of at least ${min}`,
  ok: (v) => Number.isSafeInteger(v) && (v as number) >= min,
});

const WORKER_OPTIONS = {
  ...MEETING_OPTIONS,
  cores: whole(1),
  gpus: whole(0),
  memoryMB: whole(0),
  concurrency: whole(1),
  name: rules.text('a non-empty name'),
  inline: rules.flag,
  lockDuration: {
    allowed: 'a number of milliseconds from 1 to 2^31 - 1',
    ok: (v) => typeof v === 'number' && v >= 1 && v <= 2 ** 31 - 1,
  },
  log: { allowed: 'a function of a line', ok: (v) => typeof v === 'function' },
} satisfies RulesOf<ScalemsWorkerOptions>;

/** ms between checks of the shapes set (besides the announcements on the control channel) and heartbeats */
const POLL_MS = 2000;
/** How often a worker whose Redis does not answer says so. */
const UNREACHABLE_NOTICE_MS = 5000;
/** cancellations announced for jobs this worker does not run (yet), kept in case it takes them */
const EARLY_LIMIT = 4096;

export class ScalemsWorker {
  readonly name: string;
  private readonly meeting: Meeting;
  private readonly capacity: Footprint;
  private readonly concurrency: number;
  private readonly gate: Gate;
  private readonly base: Queue;
  private readonly workers = new Map<string, Worker>();
  private readonly early = new Map<string, RecordedError>();
  private readonly host: TaskHost;
  private readonly log: (line: string) => void;
  private control: QueueEvents | undefined;
  private poller: ReturnType<typeof setInterval> | undefined;
  private closing: Promise<void> | undefined;
  /** stopping now: running work is stopped and its jobs go back to the queue */
  private forced = false;

  private readonly bull = bullmqDriver('scalems worker (ScalemsWorker)');

  private constructor(private readonly options: ScalemsWorkerOptions & { readonly connection: RedisConnection }) {
    this.meeting = {
      prefix: meetingName(options.prefix, 'worker prefix', DEFAULT_PREFIX),
      queue: meetingName(options.queue, 'worker queue', DEFAULT_QUEUE),
    };
    this.name = options.name ?? `${hostname()}-${process.pid}`;
    this.capacity = { cores: options.cores, gpus: options.gpus ?? 0, memoryMB: options.memoryMB ?? 0 };
    this.concurrency = options.concurrency ?? options.cores;
    this.gate = new Gate(this.capacity, this.concurrency);
    this.log = options.log ?? (() => undefined);
    this.host = new TaskHost({
      name: `worker ${this.name}`,
      modules: options.modules ?? [],
      modulesOption: '--modules',
      cores: options.cores,
      inline: options.inline,
      pool: hostPool(this.name, `worker ${this.name} (on host ${hostname()}, pid ${process.pid})`),
    });
    this.base = new this.bull.Queue(this.meeting.queue, {
      connection: options.connection,
      prefix: this.meeting.prefix,
    });
  }

  /** Starts a worker: it listens for new task shapes and serves those that fit, until `close()`. */
  static async start(options: ScalemsWorkerOptions): Promise<ScalemsWorker> {
    // (a missing cores, NaN lockDuration or a URL as connection were taken, and null was a raw TypeError)
    checkOptions('ScalemsWorker.start', options, WORKER_OPTIONS);
    if (options.cores === undefined)
      throw new InvalidOptionsError('ScalemsWorker.start({ cores }): the cores this worker offers are required');
    const connection =
      typeof options.connection === 'string'
        ? connectionFromUrl(options.connection, 'ScalemsWorker.start({ connection })')
        : options.connection;
    const worker = new ScalemsWorker({ ...options, connection });
    try {
      await worker.listen();
    } catch (err) {
      await worker.close();
      throw err;
    }
    return worker;
  }

  private async listen(): Promise<void> {
    // new shapes and cancellations, from the drivers
    const control = new this.bull.QueueEvents(this.meeting.queue, {
      connection: this.options.connection,
      prefix: this.meeting.prefix,
    });
    this.control = control;
    let lastError: unknown;
    control.on('error', (err) => (lastError = err)); // it reconnects
    control.on(SHAPE_EVENT as 'waiting', (event: unknown) => this.serve(String((event as ShapeEvent).queue)));
    control.on(CANCEL_EVENT as 'waiting', (event: unknown) => this.cancelled(event as Partial<CancelEvent>));
    // a Redis that does not answer: say so (the worker said nothing, and seemed to hang), and go on trying
    const waiting = setInterval(() => {
      const why = lastError instanceof Error ? lastError.message : 'no answer';
      this.log(
        `scalems worker ${this.name}: waiting for Redis at ${describeConnection(this.options.connection)} ` +
          `(${why}); it goes on trying: start Redis there, or give the worker another --redis`,
      );
    }, UNREACHABLE_NOTICE_MS);
    waiting.unref();
    try {
      await control.waitUntilReady();
    } finally {
      clearInterval(waiting);
    }
    await this.discover();
    await this.heartbeat();
    this.poller = setInterval(() => {
      this.discover().catch(() => undefined);
      this.heartbeat().catch(() => undefined);
    }, POLL_MS);
    this.log(
      `scalems worker ${this.name}: ${this.capacity.cores} cores, ${this.capacity.gpus} GPUs, ` +
        `${this.capacity.memoryMB || 'unaccounted'} MB, ${this.concurrency} tasks at once; queue ` +
        `"${this.meeting.queue}" (prefix "${this.meeting.prefix}") at ${describeConnection(this.options.connection)}`,
    );
  }

  /** A driver cancelled a job: stopped if it runs here; refused if it is taken here later. */
  private cancelled(event: Partial<CancelEvent>): void {
    if (typeof event.job !== 'string') return;
    const reason = cancelReason(event);
    if (!this.host.stop(event.job, reviveError(reason))) {
      this.early.set(event.job, reason);
      if (this.early.size > EARLY_LIMIT) this.early.delete(this.early.keys().next().value!);
    }
  }

  private async discover(): Promise<void> {
    const client = await this.base.client;
    for (const name of Object.keys(await client.hgetall(shapesKey(this.meeting)))) this.serve(name);
  }

  private async heartbeat(): Promise<void> {
    const info: WorkerInfo = {
      name: this.name,
      host: hostname(),
      pid: process.pid,
      ...this.capacity,
      concurrency: this.concurrency,
      running: this.gate.running,
    };
    const client = await this.base.client;
    await client.set(workerKey(this.meeting, this.name), JSON.stringify(info), { PX: POLL_MS * 3 });
  }

  /** Starts taking from a shape queue, if its tasks fit this worker (and it does not already). */
  private serve(queue: string): void {
    if (this.closing !== undefined || this.workers.has(queue)) return;
    const shape = parseShapeQueue(this.meeting, queue);
    if (shape === undefined || !fits(shape, this.capacity)) return;
    // as many of this shape as fit at once: more would only wait here while another worker could run them
    const fitting = Math.min(
      this.concurrency,
      Math.floor(this.capacity.cores / Math.max(shape.cores, 1)),
      shape.gpus > 0 ? Math.floor(this.capacity.gpus / shape.gpus) : Infinity,
      shape.memoryMB > 0 ? Math.floor(this.capacity.memoryMB / shape.memoryMB) : Infinity,
    );
    const lockDuration = this.options.lockDuration ?? 30_000;
    const worker = new this.bull.Worker<unknown, JobResult>(queue, (job, token) => this.process(job, shape, token), {
      connection: this.options.connection,
      prefix: this.meeting.prefix,
      concurrency: Math.max(1, fitting),
      lockDuration,
      stalledInterval: lockDuration,
      maxStalledCount: 1,
    });
    worker.on('error', () => undefined); // connection trouble: BullMQ retries
    this.workers.set(queue, worker);
    this.log(`scalems worker ${this.name}: serving ${queue} (${Math.max(1, fitting)} at once)`);
  }

  /** The processor of every shape queue: one task attempt. Its failure is the recorded error, as the reason. */
  private async process(job: BullJob<unknown, JobResult>, shape: Footprint, token?: string): Promise<JobResult> {
    const jobId = job.id ?? '?';
    let data: JobData;
    try {
      data = decodeJobData(job.data, jobId);
      const early = this.early.get(jobId);
      if (early !== undefined) throw reviveError(early);
    } catch (err) {
      throw failure(err);
    }
    const need = shapeOf(data.requirements);
    if (!fits(need, shape)) throw failure(new InvalidTaskDescriptionError(`job ${jobId} is in the wrong queue`));
    await this.gate.acquire(need);
    try {
      if (this.forced) throw REQUEUE;
      return { value: await this.host.execute(data, jobId) };
    } catch (err) {
      if (err !== REQUEUE) throw failure(err);
      // the worker is being stopped: the job goes back to wait for another worker, not counted as an attempt
      await job.moveToWait(token);
      throw new this.bull.WaitingError();
    } finally {
      this.gate.release(need);
    }
  }

  /**
   * Stops taking tasks and waits for the running ones to end (`force`: stops them now, and they go back to the queue
   * to run elsewhere once their locks expire).
   */
  close(force = false): Promise<void> {
    if (force && !this.forced) {
      this.forced = true;
      this.host.stopAll(REQUEUE);
    }
    this.closing ??= (async () => {
      if (this.poller !== undefined) clearInterval(this.poller);
      const workers = [...this.workers.values()];
      const closed = Promise.all(workers.map((w) => w.close()));
      // BullMQ's close waits for the running jobs, then on its connections: with Redis gone, for good once the jobs
      // are over (before, an idle worker whose Redis had gone did not exit on SIGTERM). Once nothing runs here and
      // Redis does not answer, its connections are dropped instead.
      while (!(await within(closed, 2000))) {
        if (this.host.size === 0 && !(await this.answers())) {
          await Promise.all(workers.map((w) => closeSoon(w)));
          break;
        }
      }
      await this.host.close();
      if (await this.answers()) {
        const client = await this.base.client;
        await within(client.del(workerKey(this.meeting, this.name)), 2000);
      }
      await Promise.all([this.control, this.base].map((c) => (c !== undefined ? closeSoon(c) : undefined)));
      this.log(`scalems worker ${this.name}: closed`);
    })();
    return this.closing;
  }

  /** Whether Redis answers a PING within a second. */
  private async answers(): Promise<boolean> {
    const asked = this.base.client
      .then((client) => (client as unknown as { ping(): Promise<string> }).ping())
      .then(
        () => true,
        () => false,
      );
    return Promise.race([asked, new Promise<false>((resolve) => setTimeout(() => resolve(false), 1000).unref())]);
  }
}

/** The reason work is stopped when the worker is stopped at once: its job goes back to the queue. */
const REQUEUE = new Error('the scalems worker is stopping: the task goes back to the queue');

/** What a processor throws for a task's failure: the recorded error as the reason, never retried by BullMQ. */
function failure(err: unknown): UnrecoverableError {
  const { UnrecoverableError: Unrecoverable } = bullmqDriver('scalems worker (ScalemsWorker)');
  return new Unrecoverable(encodeFailure(recordError(err)));
}
