/** `Task<R>`: the handle on a task, a promise and an observable of its result. */
import {
  Observable,
  type Observer,
  type Subscribable,
  type Unsubscribable,
  observable as symbolObservable,
} from 'rxjs';
import type { Workflow } from './workflow';
import { isFinal, type TaskRecord, type TaskStateName } from '../store/state';
import { TASK_HANDLE } from '../task/hash';
import { ExecutorShutdownError, NoExecutorError, TaskCancelledError } from '../errors';
import { reviveError } from '../recorded-error';
import { entryOf, type TaskEntry } from './entry';
import { ambient } from '../context/ambient';
import { show } from '../task/requirements';
import type { RunningTaskScope } from './attempt';

/**
 * RxJS's interop key (`Symbol.observable`, or `'@@observable'` where there is none, as in Node), typed as a unique
 * symbol: RxJS types it `string | symbol`, and a method under such a key gave `Task` a string index signature, so
 * that any misspelt member of a handle (`task.catch(...)`, `task.reslut`) compiled, as a function.
 */
const OBSERVABLE: unique symbol = symbolObservable as never;

/** The outcome of a task, for streams that must not end on the first failure (`submitOn(ex, { settle: true })`). */
export type Settled<R> =
  | { readonly status: 'fulfilled'; readonly value: R; readonly task: Task<R> }
  | { readonly status: 'rejected'; readonly reason: unknown; readonly task: Task<R> };

/**
 * A handle on a task of a workflow: a promise of its result (`await task`) and an observable of it
 * (`from(task)`, emits the result once and completes). Handles stay valid after their executor's scope
 * ends; the same work submitted twice yields the same handle.
 */
export class Task<R = unknown> implements PromiseLike<R>, Subscribable<R> {
  /** what marks a handle in arguments (`isTaskHandle`): on the prototype, not 8 bytes in every handle */
  get [TASK_HANDLE](): true {
    return true;
  }

  /** @internal what this process knows of the task (its slot, interest, live error) */
  readonly entry: TaskEntry;

  /** @internal handles are made by executors */
  constructor(
    readonly workflow: Workflow,
    id: string,
    entry?: TaskEntry,
  ) {
    this.entry = entry ?? entryOf(workflow, id);
  }

  /** The task's id: a content hash of its work (see the README's "Task identity"). Its entry's: not kept twice. */
  get id(): string {
    return this.entry.id;
  }

  /**
   * @internal A handle on the same task that, awaited, gives `parent`'s slot back even where the ambient scope
   * is gone: in browsers, after the parent's first await. `currentTask().submit` returns it there; on Node the
   * ambient scope finds the parent across awaits, and the shared handle is returned.
   */
  awaitedBy(parent: RunningTaskScope): Task<R> {
    return new AwaitedTask<R>(this.workflow, this.id, this.entry, parent);
  }

  /**
   * @internal The running task that awaits this handle when no ambient scope says so: only handles made by
   * `awaitedBy` have one (a subclass, so that the handles every task keeps hold no field for it).
   */
  protected get parent(): RunningTaskScope | undefined {
    return undefined;
  }

  /** The task's unique nickname in the workflow, if it has one. */
  get label(): string | undefined {
    return this.entry.record?.label;
  }

  /** Labels can be set once, and are unique per workflow (else `DuplicateLabelError`). */
  set label(label: string) {
    this.workflow.setLabel(this.id, label);
  }

  get state(): TaskStateName {
    return this.entry.record?.state ?? 'new';
  }

  /** The committed record: spec, state, attempts, times, result or error. */
  get record(): TaskRecord | undefined {
    return this.entry.committed;
  }

  /**
   * Each committed state of the task, from the current one; completes when the task settles. States are
   * committed once per turn of the event loop, so a task that starts and ends within one turn (a short
   * in-process task) goes from `ready` to `succeeded` without a `running` in between.
   */
  get state$(): Observable<TaskStateName> {
    return new Observable<TaskStateName>((subscriber) => {
      const first = this.record;
      let last: TaskStateName | undefined = first?.state;
      if (last !== undefined) subscriber.next(last);
      if (last !== undefined && isFinal(last)) {
        subscriber.complete();
        return undefined;
      }
      return this.entry.watch((rec) => {
        if (rec.state === last) return;
        last = rec.state;
        subscriber.next(rec.state);
        if (isFinal(rec.state)) subscriber.complete();
      });
    });
  }

  /** @internal Holds an interest in the outcome (as `submitOn` does for its members). */
  retain(): void {
    retain(this.entry);
  }

  /** @internal Drops it: a task nobody holds or awaits any more, and that was not submitted eagerly, is cancelled. */
  release(): void {
    release(this.entry);
  }

  /** @internal Calls `listener` once the task has settled (at once if it has); returns a stop function. */
  whenSettled(listener: () => void): () => void {
    // without wrappers: the listener is called with the record, which it does not take, and the stop function's
    // boolean is dropped
    return onSettled(this, listener);
  }

  /** @internal The error a failed or cancelled task rejects with: the original one where this process has it. */
  failure(): unknown {
    const rec = this.entry.committed;
    if (rec === undefined) return undefined;
    if (rec.state !== 'succeeded') this.workflow.unobserved.receivedBy(rec);
    return outcomeError(this.entry, rec);
  }

  /**
   * The result: emits once and completes, or errors. Subscribing counts as awaiting the task: a running task that
   * subscribes (`from(task)`, `task.subscribe`) gives its executor slot back until this one settles, as one that
   * awaits it does, and gets the result once it has its slot again.
   */
  get result$(): Observable<R> {
    return new Observable<R>((subscriber) => {
      const waiter = this.waiter();
      if (waiter === undefined) return this.follow(subscriber);
      let settled!: (rec: TaskRecord | undefined) => void;
      const outcome = new Promise<TaskRecord | undefined>((resolve) => (settled = resolve));
      const entry = this.entry;
      const stop = this.follow({ next: () => undefined, error: () => undefined, complete: () => undefined }, settled);
      void waiter.awaitOther(outcome).then((rec) => {
        if (rec !== undefined && !subscriber.closed) deliver(entry, rec, subscriber);
      });
      return () => {
        stop();
        settled(undefined); // unsubscribed first: the wait is over
      };
    });
  }

  /**
   * Follows the task for `subscriber` (retained meanwhile), and calls `settled` with its final record; returns the
   * teardown.
   */
  private follow(
    subscriber: { next(v: R): void; error(e: unknown): void; complete(): void },
    settled?: (rec: TaskRecord) => void,
  ): () => void {
    const entry = this.entry;
    retain(entry);
    const stop = onSettled(this, (rec) => {
      if (rec.state !== 'succeeded') this.workflow.unobserved.receivedBy(rec);
      deliver(entry, rec, subscriber);
      settled?.(rec);
      release(entry);
    });
    return () => {
      if (stop()) release(entry);
    };
  }

  /** The running task that waits when this one is awaited or followed now, if it must wait (it has not settled). */
  private waiter(): RunningTaskScope | undefined {
    const waiter = (ambient().task as RunningTaskScope | undefined) ?? this.parent;
    return waiter !== undefined && waiter.id !== this.id && !isFinal(this.state) ? waiter : undefined;
  }

  subscribe(observer?: Partial<Observer<R>> | ((value: R) => void)): Unsubscribable {
    return this.result$.subscribe(observer);
  }

  /** RxJS interop: `from(task)` follows the task in the scheduler of the caller (virtual time in marble tests). */
  [OBSERVABLE](): Subscribable<R> {
    return this.result$;
  }

  then<A = R, B = never>(
    onfulfilled?: ((value: R) => A | PromiseLike<A>) | null,
    onrejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    const settled = new Promise<R>((resolve, reject) => {
      this.follow({ next: resolve, error: reject, complete: () => undefined });
    });
    // A running task that waits for another gives its executor slot back meanwhile.
    const waiter = this.waiter();
    return (waiter !== undefined ? waiter.awaitOther(settled) : settled).then(onfulfilled, onrejected);
  }

  /** Cancels the task (and, through `UpstreamFailed`, what depends on it). The work itself is told to stop. */
  cancel(reason?: string): void {
    const entry = this.entry;
    // a reason that is not a string (an Error, a Symbol) still cancels: a cancel in a cleanup path must not throw
    const message =
      reason === undefined
        ? `task ${this.id} was cancelled`
        : typeof reason === 'string'
          ? reason
          : (reason as unknown) instanceof Error
            ? (reason as Error).message
            : show(reason);
    const err = new TaskCancelledError(message);
    if (entry.owner !== undefined) entry.owner.cancelTask(entry, err);
    else if (!isFinal(this.state)) {
      this.workflow.dispatch({
        type: 'cancel',
        id: this.id,
        reason: { name: err.name, code: err.code, message: err.message },
        now: this.workflow.now(),
      });
    }
  }

  /**
   * Runs a failed or cancelled task again, on the executor it was last submitted to in this process: first its
   * failed or cancelled inputs (again, transitively), then the task itself. Returns this handle, which settles
   * anew (`await task.retry()`). A task that has not settled, or has succeeded, is left as it is. Its retry
   * policy (`retries`) counts from here. Submitting the same work again does the same.
   */
  retry(): this {
    retryTask(this.workflow, this.entry);
    return this;
  }

  toJSON(): { $task: string } {
    return { $task: this.id };
  }

  toString(): string {
    const label = this.label;
    return `Task(${label !== undefined ? `${label}, ` : ''}${this.id}, ${this.state})`;
  }
}

/** A handle that, awaited, gives its parent's executor slot back even where the ambient scope is gone (`awaitedBy`). */
class AwaitedTask<R> extends Task<R> {
  constructor(
    workflow: Workflow,
    id: string,
    entry: TaskEntry,
    private readonly waiting: RunningTaskScope,
  ) {
    super(workflow, id, entry);
  }

  protected override get parent(): RunningTaskScope | undefined {
    return this.waiting;
  }
}

/**
 * @internal Hears once that a task has settled: `settled` is called with its final committed record. An object, so
 * that a caller holding one per task anyway (a `submitOn` member) watches with it and makes no closure: closures
 * made per task in flight were most of what the young generation's collector promoted and the old one then
 * collected, at a million tasks.
 */
export abstract class SettledWatcher {
  #entry: TaskEntry | undefined = undefined;

  /** Calls `settled` when the task's committed record is final: now, if it is already. */
  protected watchSettled(task: Task<unknown>): void {
    const rec = task.entry.outcome;
    if (rec !== undefined) {
      this.settled(rec);
      return;
    }
    this.#entry = task.entry;
    task.entry.addWatcher(this);
  }

  /** @internal A committed change of the watched task. */
  recordChanged(r: TaskRecord): void {
    const entry = this.#entry;
    // stopped, by a listener that this commit called before this one (it is still in the commit's copy of the list)
    if (entry === undefined || !isFinal(r.state)) return;
    // Changed since that commit: submitted again (or retried) by a listener that this commit called before this one
    // (RxJS retry() subscribing again as the failure is delivered). That outcome is over; the next commit brings the
    // task's state as it is now. Before, a follower that came with the new submission got the old run's
    // cancellation.
    if (entry.dirty) return;
    this.#entry = undefined;
    entry.removeWatcher(this);
    this.settled(r);
  }

  /** Stops watching; true if it was still waiting. */
  stopWatching(): boolean {
    const entry = this.#entry;
    if (entry === undefined) return false;
    this.#entry = undefined;
    entry.removeWatcher(this);
    return true;
  }

  protected abstract settled(rec: TaskRecord): void;
}

/** `onSettled`'s watcher: a listener function. */
class ListenerWatcher extends SettledWatcher {
  constructor(
    task: Task<unknown>,
    private readonly listener: (rec: TaskRecord) => void,
  ) {
    super();
    this.watchSettled(task);
  }

  protected settled(rec: TaskRecord): void {
    this.listener(rec);
  }
}

/**
 * Calls `listener` once, when the committed record is final; returns a stop function (true if it was still waiting).
 */
function onSettled(task: Task<unknown>, listener: (rec: TaskRecord) => void): () => boolean {
  const watcher = new ListenerWatcher(task, listener);
  return () => watcher.stopWatching();
}

function deliver<R>(
  entry: TaskEntry,
  rec: TaskRecord,
  subscriber: { next(v: R): void; error(e: unknown): void; complete(): void },
): void {
  if (rec.state === 'succeeded') {
    subscriber.next(rec.result as R);
    subscriber.complete();
  } else {
    subscriber.error(outcomeError(entry, rec));
  }
}

/**
 * The error a failed or cancelled task rejects with: the original one where this process has it, if it is an `Error`.
 * A thrown value that is not (`throw null`, `throw 'text'`) comes back as an `Error` from its record, as it does from a
 * thread, a job step or a store, so that `err.message` is always there.
 */
function outcomeError(entry: TaskEntry, rec: TaskRecord): unknown {
  if (entry.error instanceof Error) return entry.error;
  return reviveError(
    rec.error ?? { name: 'TaskCancelledError', code: 'TASK_CANCELLED', message: `task ${rec.id} was ${rec.state}` },
  );
}

/** Marks an interest in a task's outcome. */
export function retain(entry: TaskEntry): void {
  entry.interest++;
}

/** Drops an interest; a task nobody awaits any more (and that was not submitted eagerly) is cancelled. */
export function release(entry: TaskEntry): void {
  entry.interest--;
  if (entry.interest > 0) return;
  // A settled task (the common case: a pipeline drops each member once it has its outcome) has nothing to cancel:
  // the owner would ignore it, and the error, with its stack, cost more than the rest of the task's bookkeeping.
  const state = entry.record?.state;
  if (!entry.pinned && entry.owner !== undefined && state !== undefined && !isFinal(state)) {
    entry.owner.cancelTask(
      entry,
      new TaskCancelledError(`task ${entry.id} was cancelled: nobody awaits its result any more`),
    );
  }
  // a failure still held when it was committed: nobody will receive it now, unless somebody did
  if (entry.committed?.state === 'failed') (entry.handle as Task | undefined)?.workflow.unobserved.released(entry);
}

const rerunnable = (entry: TaskEntry): boolean => {
  const state = entry.record?.state;
  return state === 'failed' || state === 'cancelled';
};

/** `task.retry()`: the failed or cancelled inputs, transitively, then the task, each on its owner (see there). */
function retryTask(workflow: Workflow, entry: TaskEntry): void {
  if (!rerunnable(entry)) return;
  workflow.assertOpen();
  // upstream first: a depth-first walk of the failed inputs, in post-order, without recursion (chains are long)
  const order: TaskEntry[] = [];
  const seen = new Set<string>([entry.id]);
  const stack: Array<[TaskEntry, number]> = [[entry, 0]];
  while (stack.length > 0) {
    const top = stack[stack.length - 1]!;
    const inputs = top[0].record!.inputs;
    if (top[1] < inputs.length) {
      const input = entryOf(workflow, inputs[top[1]++]!);
      if (!seen.has(input.id) && rerunnable(input)) {
        seen.add(input.id);
        stack.push([input, 0]);
      }
      continue;
    }
    stack.pop();
    order.push(top[0]);
  }
  for (const e of order) {
    if (e.owner === undefined) {
      const rec = e.record!;
      throw new NoExecutorError(
        `task ${rec.label ?? rec.name} (${e.id}) was not submitted in this process (it ${rec.state} in an earlier ` +
          'run of the workflow), so no executor here can run it again: submit it again (executor.submit) instead',
      );
    }
    if (e.owner.isShutdown) {
      const rec = e.record!;
      throw new ExecutorShutdownError(
        `task ${rec.label ?? rec.name} (${e.id}) cannot run again: its executor ${e.owner.display} has been shut ` +
          'down; submit it to an open executor (executor.submit) to run it again',
      );
    }
  }
  for (const e of order) e.owner!.rerun(e);
}

/**
 * @internal `results` (of `submitOn`), subscribed by a running task (an ensemble run from inside a task,
 * `lastValueFrom(...submitOn(ex))`): the task gives its executor slot back while the stream runs, as one awaiting
 * another task does, so that the members can run on it (two such tasks on a full executor deadlocked); it ends
 * (completes, errors) once the task has its slot again. Its results reach the task meanwhile, which handles them
 * without the slot.
 */
export function followedBy(results: Observable<unknown>): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const waiter = ambient().task as RunningTaskScope | undefined;
    if (waiter === undefined) return results.subscribe(subscriber);
    let over!: () => void;
    const resumed = waiter.awaitOther(new Promise<void>((resolve) => (over = resolve)));
    const end = (last: () => void): void => {
      over();
      void resumed.then(() => {
        if (!subscriber.closed) last();
      });
    };
    const sub = results.subscribe({
      next: (value) => subscriber.next(value),
      error: (err: unknown) => end(() => subscriber.error(err)),
      complete: () => end(() => subscriber.complete()),
    });
    return () => {
      sub.unsubscribe();
      over();
    };
  });
}
