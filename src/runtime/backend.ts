/** The backend interface: what a backend implements (`Backend`, `BackendExecutor`) and the `Job` it is given. */
import { Observable, type SchedulerLike } from 'rxjs';
import { UnsatisfiableRequirementsError } from '../errors';
import type { TaskSpec } from '../task/spec';
import type { TaskRequirements, WorkerRequirements } from '../task/requirements';
import type { Workflow } from './workflow';

/** What one executor of a backend can provide at once. */
export interface Capacity {
  readonly cores: number;
  readonly gpus: number;
  /** MB; Infinity where the backend does not account memory */
  readonly memoryMB: number;
  /**
   * Tasks of one core (one rank, no GPU, no memory asked) the backend takes beyond its cores while
   * only such tasks are in flight: it queues them and starts each the moment one of its cores frees,
   * so that a core never idles while the event loop hands it the next task. They count as running.
   * Default 0.
   */
  readonly queue?: number;
}

/** A communicator between the ranks of a function task with `ranks > 1` (threads backend). */
export interface Communicator {
  readonly rank: number;
  readonly size: number;
  send(to: number, value: unknown, tag?: number): Promise<void>;
  recv<T = unknown>(from: number, tag?: number): Promise<T>;
  bcast<T>(value: T | undefined, root?: number): Promise<T>;
  barrier(): Promise<void>;
  allreduce(value: number, op?: 'sum' | 'min' | 'max' | 'prod'): Promise<number>;
}

/** One attempt of one task, as handed to a backend. */
export interface Job {
  readonly id: string;
  readonly label: string | undefined;
  readonly kind: 'function' | 'executable';
  /** registered (or own) function name */
  readonly name: string;
  /**
   * The version declared to `defineTask` for the function this process submitted the task with, if any: a remote side
   * runs the task only with a function of the same declared version (`FunctionVersionError`); undefined matches only
   * a function declared without one.
   */
  readonly version: string | undefined;
  /** arguments with upstream results substituted */
  readonly args: readonly unknown[];
  /**
   * What `BackendExecutor.identity` said of the task at submit (part of its id): an executable's host input files, by
   * content. Its attempt checks that they still are so before its program starts (`prepareExecutable`).
   */
  readonly contentAtSubmit?: string;
  /** the task's requirements merged over its executor's defaults */
  readonly requirements: TaskRequirements;
  readonly attempt: number;
  /** aborted when the task is cancelled or runs out of walltime */
  readonly signal: AbortSignal;
  readonly workflow: Workflow;
  /**
   * Runs the task's function here, in this process, inside the context captured at submit and with
   * `currentTask()` set. Only backends that run functions in-process (inProcess, virtual) call it.
   */
  invoke(extra?: { comm?: Communicator; workdir?: string }): unknown;
  /**
   * Said by the backend when its work goes on after the attempt was stopped (cancelled, out of walltime): a process
   * tree in its grace period, say. The executor keeps the attempt's cores, GPUs and memory held until `ended` settles,
   * so that neither a retry of the task nor another task starts on them beside the work still ending. Call it from
   * the teardown of `run`'s observable (as it is unsubscribed). The executor always gives it; optional for a `Job`
   * made by hand.
   */
  holdUntil?(ended: Promise<unknown>): void;
}

/**
 * The part of a backend that serves one executor scope (for Slurm: one allocation). `run` is cold:
 * subscribing starts the attempt, unsubscribing cancels it (and must reach the work itself). The
 * observable emits the result once and completes, or errors with the failure.
 */
export interface BackendExecutor {
  readonly capacity: Capacity;
  /**
   * False for backends that never call `job.invoke()` (they run work in other threads or processes):
   * the executor then does not capture each submitter's async context for it (not free). Default true.
   */
  readonly invokes?: boolean;
  /**
   * True for backends that enforce a task's walltime themselves from when its work really starts (work may first wait
   * in the backend's own queue, as with bullmq()), failing the attempt with `WalltimeExceededError`: the executor then
   * sets no walltime timer of its own. Default false.
   */
  readonly enforcesWalltime?: boolean;
  /**
   * Settles once the executor can start work (for slurm(): once its allocation is granted, or has failed). An executor
   * of several worker groups starts no task on a group before: a task it could run elsewhere runs there meanwhile.
   * Default: ready at once.
   */
  readonly ready?: Promise<unknown>;
  /** Refuses, at submit, work this backend can never run (a closure for a thread pool, ...). Throws a typed error. */
  accept?(spec: TaskSpec): void;
  /**
   * What else the result of an accepted task depends on, as text that joins its identity: for an executable, the
   * content of the host files it reads (`inputs`, `stdin`), so that a changed file makes a new task.
   */
  identity?(spec: TaskSpec): string;
  /**
   * Of the files a succeeded task made (its record's `artifacts`, name → path: an executable's outputs, stdout,
   * stderr), the names of those that are gone: such a task is run again rather than served.
   */
  missing?(artifacts: Readonly<Record<string, string>>): string[];
  /**
   * Of the host files an executable about to start reads that its identity does not cover by content (named by its
   * upstream tasks' results, outside this backend's own directories): path → digest of their content now. Kept in its
   * record (`read`), and compared (`changed`) before it is served.
   */
  reads?(args: readonly unknown[], resolved: readonly unknown[]): Record<string, string> | undefined;
  /** Of a succeeded task's `read`, the paths whose content is not what it was: it is run again rather than served. */
  changed?(read: Readonly<Record<string, string>>): string[];
  run(job: Job): Observable<unknown>;
  /** Releases what the executor scope holds (called once its tasks have settled). */
  close(): Promise<void>;
}

export interface Backend {
  readonly kind: string;
  /**
   * The scheduler its workflow commits on (by default a macrotask: see `Workflow`). The virtual
   * backend gives RxJS's asap scheduler, which `TestScheduler.run()` virtualises, so that commits
   * happen within the frame of the change in marble tests.
   */
  readonly commitScheduler?: SchedulerLike;
  /**
   * Opens one executor scope with these worker requirements (one worker group of it: an executor with several groups
   * opens one per group, side by side, and `group` names it). Throws if they can never be met.
   */
  open(
    worker: WorkerRequirements,
    context: {
      readonly workflow: Workflow;
      readonly executorId: string;
      /** the executor's name, where it was given one (`executor(rt, { name })`): how the backend names its jobs */
      readonly executorName?: string;
      readonly group?: string;
    },
  ): BackendExecutor;
  /** Releases the backend itself (pools, connections). */
  shutdown?(): Promise<void>;
}

/**
 * An attempt written as an async function, as the cold observable `BackendExecutor.run` returns:
 * subscribing starts `work`; unsubscribing (cancel, walltime, or after it ended) makes `stopped()` true
 * and calls `stop`, which must reach the work. What `work` resolves to is the result, unless it was
 * stopped meanwhile; its rejection is the failure. Shared by the backends that run work elsewhere.
 */
export function attemptOf<T>(work: (stopped: () => boolean) => Promise<T>, stop: () => void): Observable<T> {
  return new Observable<T>((subscriber) => {
    let stopped = false;
    work(() => stopped).then(
      (value) => {
        if (stopped) return;
        subscriber.next(value);
        subscriber.complete();
      },
      (err: unknown) => {
        if (!stopped) subscriber.error(err);
      },
    );
    return () => {
      stopped = true;
      stop();
    };
  });
}

/** `accept` of a backend that runs functions only: an executable is refused at submit, naming where it can run. */
export function refuseExecutables(backend: string): (spec: TaskSpec) => void {
  return (spec) => {
    if (spec.kind !== 'executable') return;
    throw new UnsatisfiableRequirementsError(
      `${backend}() runs functions only; the executable ${spec.name} cannot run on it: ` +
        'submit it to an executor on processes() (or slurm())',
    );
  };
}
