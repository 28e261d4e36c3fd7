/**
 * One attempt at running a task (the job a backend runs), and what `currentTask()` gives a task running in
 * this process.
 */
import type { Observer, Subscription } from 'rxjs';
import type { TaskRecord } from '../store/state';
import type { Workflow } from './workflow';
import {
  call,
  declaredVersion,
  isTaskSpec,
  lookupTask,
  type AnyFunction,
  type TaskArgs,
  type TaskSpec,
} from '../task/spec';
import type { TaskRequirements } from '../task/requirements';
import type { Hold, Need } from './admission';
import type { Group } from './groups';
import type { Communicator, Job } from './backend';
import { contentAtSubmit, type TaskEntry } from './entry';
import type { Task } from './task';
import { carriesAcrossAwaits } from '../context/ambient';

/** What a running task sees through `currentTask()`. */
export interface TaskContext {
  readonly id: string;
  readonly label: string | undefined;
  /** aborted when the task is cancelled or exceeds its walltime */
  readonly signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number;
  /**
   * Submits a child task on the same executor. Awaiting it gives this task's slot back meanwhile, so nested
   * submission cannot deadlock a full executor: also in a browser after the first await, when this context was
   * captured before it (`const task = currentTask()`).
   */
  submit<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): Task<Awaited<ReturnType<F>>>;
  submit<R>(spec: TaskSpec<R>): Task<R>;
  /** ranks of a function task with `ranks > 1` (threads backend) */
  readonly comm?: Communicator;
  /** the task's working directory (process-based backends) */
  readonly workdir?: string;
}

/** @internal the ambient scope of a running in-process task */
export interface RunningTaskScope {
  /** the running task's id */
  readonly id: string;
  readonly context: TaskContext;
  awaitOther<R>(settled: Promise<R>): Promise<R>;
}

/** @internal What an attempt needs of the executor that runs it. */
export interface AttemptOwner {
  /** Runs the attempt's function in this process (see `Job.invoke`). */
  invoke(attempt: Attempt, extra?: { comm?: Communicator; workdir?: string }): unknown;
  /** The backend's work for the attempt completed with `value`. */
  succeed(attempt: Attempt, value: unknown): void;
  /** The backend's work for the attempt failed. */
  fail(attempt: Attempt, error: unknown): void;
}

/**
 * @internal One attempt at running a task. It is at once the job handed to the backend, the hold on
 * the executor's resources, and the observer of the backend's work: one object per attempt, with the
 * signal made only when somebody asks for it (most tasks never do, and an AbortController is not free).
 */
export class Attempt implements Hold, Job, Observer<unknown> {
  holding = false;
  finished = false;
  /** tasks this attempt is waiting for (it gives its resources back meanwhile) */
  waits = 0;
  sub: Subscription | undefined = undefined;
  timer: Subscription | undefined = undefined;
  /** when its walltime (timed here, `timer`) runs out */
  deadline = Infinity;
  /** work that goes on after the attempt was stopped (`holdUntil`): its resources are held until it has ended */
  ended: Promise<unknown> | undefined = undefined;
  /** what its function returned, run in this process (`Job.invoke`): a promise goes on if the attempt is stopped */
  invoked: unknown = undefined;
  /** of an executable, the files it reads that its identity names by an upstream task (`BackendExecutor.reads`) */
  read: Record<string, string> | undefined = undefined;
  readonly id: string;
  readonly label: string | undefined;
  readonly kind: 'function' | 'executable';
  readonly name: string;
  readonly requirements: TaskRequirements;
  readonly attempt: number;
  private value: unknown = undefined;
  private controller: AbortController | undefined = undefined;
  private stopped = false;
  private reason: unknown = undefined;

  constructor(
    readonly entry: TaskEntry,
    readonly record: TaskRecord,
    readonly args: readonly unknown[],
    readonly need: Need,
    readonly workflow: Workflow,
    private readonly owner: AttemptOwner,
    /** the worker group of its executor it runs on (whose resources it holds) */
    readonly group: Group,
  ) {
    this.id = record.id;
    this.label = record.label;
    this.kind = record.kind;
    this.name = record.name;
    this.requirements = record.requirements;
    this.attempt = record.attempts + 1;
  }

  get contentAtSubmit(): string | undefined {
    return contentAtSubmit.get(this.entry);
  }

  get version(): string | undefined {
    if (this.kind !== 'function') return undefined;
    const fn = (this.entry.fn as AnyFunction | undefined) ?? lookupTask(this.name);
    return fn === undefined ? undefined : declaredVersion(fn);
  }

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.stopped) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  /** Tells the work to stop (once): aborts the signal, now or when it is made. */
  abort(reason: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }

  invoke(extra?: { comm?: Communicator; workdir?: string }): unknown {
    return this.owner.invoke(this, extra);
  }

  holdUntil(ended: Promise<unknown>): void {
    const before = this.ended;
    this.ended = before === undefined ? ended : Promise.allSettled([before, ended]);
  }

  // the observer of the backend's observable: it emits the result once, then completes (or errors)
  next(value: unknown): void {
    this.value = value;
  }

  error(error: unknown): void {
    this.owner.fail(this, error);
  }

  complete(): void {
    this.owner.succeed(this, this.value);
  }
}

/** @internal What `currentTask()` gives a task running in this process; also its ambient scope. */
export class RunningTask implements TaskContext, RunningTaskScope {
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  readonly comm: Communicator | undefined;
  readonly workdir: string | undefined;
  private bound: TaskContext['submit'] | undefined = undefined;

  constructor(
    private readonly run: Attempt,
    private readonly submitter: {
      submitSpec<R>(spec: TaskSpec<R>, options: { pinned: boolean; parent?: string }): Task<R>;
    },
    private readonly waiter: { awaitOther<R>(attempt: Attempt, settled: Promise<R>): Promise<R> },
    extra: { comm?: Communicator; workdir?: string } | undefined,
  ) {
    this.id = run.id;
    this.label = run.entry.record?.label ?? run.label;
    this.attempt = run.attempt;
    this.comm = extra?.comm;
    this.workdir = extra?.workdir;
  }

  get signal(): AbortSignal {
    return this.run.signal;
  }

  get context(): TaskContext {
    return this;
  }

  /** Bound, made when first asked for (`const { submit } = currentTask()` works). */
  get submit(): TaskContext['submit'] {
    return (this.bound ??= ((fnOrSpec: AnyFunction | TaskSpec, ...more: unknown[]): Task<unknown> => {
      const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(more as []));
      const handle = this.submitter.submitSpec(spec, { pinned: true, parent: this.id });
      // in a browser the ambient scope is gone after the first await: the handle itself knows who awaits it
      return carriesAcrossAwaits() ? handle : handle.awaitedBy(this);
    }) as TaskContext['submit']);
  }

  awaitOther<R>(settled: Promise<R>): Promise<R> {
    return this.waiter.awaitOther(this.run, settled);
  }
}
