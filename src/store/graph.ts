/** The task graph of a workflow as one immer state stream: reducer, commits, listeners and persistence. */
import { BehaviorSubject, asyncScheduler, type Observable, type SchedulerLike, type Unsubscribable } from 'rxjs';
import { Immer } from 'immer';
import type { Store } from './store';
import { reduce, type ReduceContext, type WorkflowAction } from './reducer';
import { emptyState, isFinal, type TaskRecord, type TaskStateName, type WorkflowState } from './state';
import { TableEditor, emptyTable } from './table';
import { TaskTableEditor, emptyTaskTable } from './task-table';
import { show } from '../task/requirements';
import { TaskSlot, type RecordListener } from './slot';
import { WriteBehind } from './write-behind';
import { DuplicateLabelError, InvalidTaskDescriptionError, StoreClosedError } from '../errors';
import { detached } from '../context/ambient';

/** Our own immer: no auto-freeze, so that user values put into records (arguments) are never frozen. */
const immer = new Immer({ autoFreeze: false });

/** changed records in the pending batch at which it commits without waiting for the next turn */
const EAGER_COMMIT = 512;

/** @internal what an executor hears of its tasks */
export type SlotListener = (slot: TaskSlot) => void;

/**
 * One state change of a task as the reducer made it, recorded only while somebody listens (see
 * `tapTransitions`): the runtime makes its task events (`runtime/events.ts`) of these.
 */
export interface Transition {
  readonly slot: TaskSlot;
  readonly from: TaskStateName | undefined;
  readonly to: TaskStateName;
  /** the action that made it */
  readonly cause: WorkflowAction['type'];
  /** the task's record once that action was reduced */
  record: TaskRecord;
}

/** Hears the transitions of each commit, in the order they were reduced, after the commit */
export type TransitionListener = (transitions: readonly Transition[]) => void;

/**
 * The task graph of one workflow: every task record, the dependency edges and labels, as one immer state
 * stream. All changes go through one reducer into a pending batch, committed once per turn of the
 * event loop (so the answers of many threads or processes handled in one turn commit together; a
 * batch of `EAGER_COMMIT` changes commits at once, so a long run of microtasks still streams; the
 * virtual backend commits on RxJS's asap scheduler, in virtual time). Each commit emits `state$`,
 * notifies only the tasks that changed, and hands only the changed records to the store (`WriteBehind`).
 * The public `Workflow` (`runtime/workflow.ts`) is this, plus the executors that submit to it.
 */
export class TaskGraph {
  readonly name: string;
  readonly store: Store;
  private committed: WorkflowState;
  /** a batch of changes is pending (dispatched, not yet committed) */
  private batching = false;
  /** every task's slot: current and committed record, watchers, runtime companion */
  private readonly slots = new Map<string, TaskSlot>();
  /** the tasks changed, readied and settled in the pending batch */
  private dirty: TaskSlot[] = [];
  private readied: TaskSlot[] = [];
  private settled: TaskSlot[] = [];
  /** the task and label tables, with the changes of the pending batch */
  private readonly tasks: TaskTableEditor<TaskRecord>;
  private readonly labels: TableEditor<string>;
  private flushScheduled: Unsubscribable | undefined;
  /** a commit at the end of the current microtask is queued (see `dispatch`) */
  private eagerCommit = false;
  /** where commits are scheduled; by default the next turn of the event loop (see `dispatch`) */
  private commitScheduler: SchedulerLike | undefined;
  private readonly subject: BehaviorSubject<WorkflowState>;
  private readonly readyListeners = new Map<string, SlotListener>();
  private readonly settledListeners = new Map<string, SlotListener>();
  /** how committed changes reach the store */
  private readonly persistence: WriteBehind;
  private closed = false;
  /** close() was called: nothing more is submitted (its write may have failed, and the store is still open) */
  private closeCalled = false;
  /** the commit of the records read from the store is under way: they are not written back */
  private restoring = false;
  /** the transitions of the pending batch, while a listener wants them (else undefined: nothing is recorded) */
  private transitions: Transition[] | undefined = undefined;
  private transitionListener: TransitionListener | undefined = undefined;
  /** the last time a record was stamped with (see `ReduceContext.stamp`) */
  private lastStamp: number | undefined = undefined;
  /** the action being reduced, while transitions are recorded */
  private reducing: WorkflowAction['type'] = 'restore';

  /** @internal made by `openWorkflow()` */
  constructor(name: string, store: Store, restored: readonly TaskRecord[] = []) {
    this.name = name;
    this.store = store;
    this.persistence = new WriteBehind(store);
    // every version of the task table finds a task's position through its slot (see `TaskTable`); the map, not
    // the graph: a state kept after the workflow closed holds the slots, not the store and listeners besides
    const slots = this.slots;
    const tasks = emptyTaskTable<TaskRecord>((id) => slots.get(id)?.index);
    const labels = emptyTable<string>();
    this.committed = emptyState(name, { tasks, labels });
    this.tasks = new TaskTableEditor(tasks);
    this.labels = new TableEditor(labels);
    this.context = {
      labels: this.labels,
      counts: this.committed.counts,
      find: (id) => this.slots.get(id),
      slot: (id) => this.slot(id),
      // the task table takes the record at the commit (see `flush`), not at each change
      put: (slot, rec) => {
        slot.record = rec;
        if (!slot.dirty) {
          slot.dirty = true;
          this.dirty.push(slot);
        }
      },
      stamp: (now) => {
        // kept in a field that also holds `undefined`, so V8 stores a reference to the number, not a copy of it
        if (now !== this.lastStamp) this.lastStamp = now;
        return this.lastStamp!;
      },
      became: (slot, to) => {
        if (to === 'ready') this.readied.push(slot);
        else if (isFinal(to)) this.settled.push(slot);
        // the reducer announces a change before it puts the new record: `slot.record` is the one it leaves
        const transitions = this.transitions;
        if (transitions !== undefined)
          transitions.push({ slot, from: slot.record?.state, to, cause: this.reducing, record: slot.record! });
      },
    };
    this.subject = new BehaviorSubject(this.committed);
    if (restored.length > 0) this.restore(restored);
  }

  /**
   * Takes in the records read from the store (checked by `openWorkflow`). Only the records that restoring changes
   * (work in flight when the process died becomes `new`) are written back.
   */
  private restore(restored: readonly TaskRecord[]): void {
    this.dispatch({ type: 'restore', records: restored });
    this.restoring = true;
    try {
      this.flush();
    } finally {
      this.restoring = false;
    }
    const changed: TaskSlot[] = [];
    for (const r of restored) {
      const slot = this.slots.get(r.id)!;
      if (slot.committed!.state !== r.state) changed.push(slot);
    }
    this.persistence.changed(changed);
  }

  /** Every committed state, starting with the current one. */
  get state$(): Observable<WorkflowState> {
    return this.subject.asObservable();
  }

  /** The last committed state. */
  get state(): WorkflowState {
    return this.committed;
  }

  /** The current record of a task, including changes not yet committed. */
  record(id: string): TaskRecord | undefined {
    return this.slots.get(id)?.record;
  }

  /** The current state of a task (may be uncommitted). */
  stateOf(id: string): TaskRecord['state'] | undefined {
    return this.slots.get(id)?.record?.state;
  }

  /** @internal The slot of task `id`, made if needed (the runtime keeps its companion there). */
  slot(id: string): TaskSlot {
    let slot = this.slots.get(id);
    if (slot === undefined) {
      // An id is made by concatenation (name, digest): V8 keeps it as a rope until something reads its
      // characters, and a rope flattened only once it is old keeps its 32-byte wrapper for good. Read
      // now, while it is young, the collector replaces the wrapper by the flat string it points to.
      id.charCodeAt(0);
      slot = this.newSlot(id, this.slots.size); // slots are never removed: a new slot's position is new
      this.slots.set(id, slot);
    }
    return slot;
  }

  /** @internal A new task's slot: the runtime's workflow makes its slots as entries of its own (`TaskEntry`). */
  protected newSlot(id: string, index: number): TaskSlot {
    return new TaskSlot(id, index);
  }

  /** @internal Every task's slot known to this process. */
  allSlots(): IterableIterator<TaskSlot> {
    return this.slots.values();
  }

  /** The id of the task with that label, including uncommitted changes. */
  labelled(label: string): string | undefined {
    return this.labels.get(label);
  }

  private readonly context: { -readonly [K in keyof ReduceContext]: ReduceContext[K] };

  /** @internal Commits on `scheduler` from now on (the virtual backend's: commits then follow virtual time). */
  commitOn(scheduler: SchedulerLike): void {
    this.commitScheduler = scheduler;
  }

  /** @internal Throws `StoreClosedError` once the workflow is closed: nothing more can be submitted or recorded. */
  assertOpen(): void {
    if (this.closed)
      throw new StoreClosedError(
        `workflow "${this.name}" is closed (workflow.close() closed its store): open it again with ` +
          `openWorkflow() to go on`,
      );
    if (this.closeCalled)
      throw new StoreClosedError(
        `workflow "${this.name}" is being closed (workflow.close() was called; if it failed to write the ` +
          `records, call it again once the store can be written): open it again with openWorkflow() to go on`,
      );
  }

  /** @internal Applies an action to the pending batch. */
  dispatch(action: WorkflowAction): void {
    this.assertOpen();
    if (!this.batching) {
      this.batching = true;
      this.context.counts = { ...this.committed.counts };
    }
    const transitions = this.transitions;
    if (transitions === undefined) reduce(action, this.context);
    else this.reduceRecording(action, transitions);
    // Scheduled outside the caller's async context: the commit (and the store write it starts) must not
    // keep the context of whatever task happened to change the state alive.
    this.flushScheduled ??= detached(() =>
      this.commitScheduler !== undefined
        ? this.commitScheduler.schedule(() => this.flush())
        : nextTurn(() => this.flush()),
    );
    // A long run of microtasks (in-process functions that never wait for I/O) would hold every change
    // until it ends: a large batch commits at the end of the current microtask instead.
    if (this.dirty.length >= EAGER_COMMIT && !this.eagerCommit && this.commitScheduler === undefined) {
      this.eagerCommit = true;
      detached(() =>
        queueMicrotask(() => {
          this.eagerCommit = false;
          if (this.dirty.length >= EAGER_COMMIT) this.flush();
        }),
      );
    }
  }

  /**
   * Reduces `action`, recording its transitions with the record the action left each task in (a task changes
   * at most once per action, but may pass several states: submitted then ready, or submitted then failed).
   */
  private reduceRecording(action: WorkflowAction, transitions: Transition[]): void {
    const mark = transitions.length;
    this.reducing = action.type;
    reduce(action, this.context);
    for (let i = mark; i < transitions.length; i++) transitions[i]!.record = transitions[i]!.slot.record!;
  }

  /**
   * @internal Calls `listener` after each commit with the transitions it recorded, in order; `undefined` stops.
   * Nothing is recorded while there is no listener, so that a workflow nobody watches pays one test per change.
   */
  tapTransitions(listener: TransitionListener | undefined): void {
    this.transitionListener = listener;
    this.transitions = listener === undefined ? undefined : (this.transitions ?? []);
  }

  /**
   * @internal Sets a task's label, once; labels are unique in the workflow (users label through the spec:
   * `labelled`, `{ ...call(fn), label }`). A label held by a task of an earlier run that this
   * run has not submitted (see `supersedes`) goes to this one: the same member under a new identity (its input
   * changed).
   */
  setLabel(id: string, label: string): void {
    checkLabel(label, `task ${id}`);
    const holder = this.labelled(label);
    if (holder === id) return;
    if (holder !== undefined && !this.supersedes(holder))
      throw new DuplicateLabelError(
        `the label "${label}" is already used by task ${holder}; labels are unique within workflow "${this.name}"`,
      );
    const current = this.record(id)?.label;
    if (current !== undefined)
      throw new DuplicateLabelError(
        `task ${id} is already labelled "${current}"; a label can be set once (a task of an earlier run keeps the ` +
          'label it was given there)',
      );
    this.dispatch({ type: 'label', id, label });
  }

  /**
   * @internal Whether a new task may take the label of task `holder`: here never; the runtime's workflow says yes for a
   * task of an earlier run that this process has not submitted.
   */
  protected supersedes(_holder: string): boolean {
    return false;
  }

  /** @internal Calls `listener` with the committed record each time task `id` changes. */
  watch(id: string, listener: RecordListener): () => void {
    return this.slot(id).watch(listener);
  }

  /** @internal Calls `listener` with each task of `executor` that becomes ready. */
  onReady(executor: string, listener: SlotListener): () => void {
    this.readyListeners.set(executor, listener);
    return () => this.readyListeners.delete(executor);
  }

  /** @internal Calls `listener` with each task of `executor` that settles (succeeds, fails or is cancelled). */
  onSettled(executor: string, listener: SlotListener): () => void {
    this.settledListeners.set(executor, listener);
    return () => this.settledListeners.delete(executor);
  }

  /** @internal Commits the pending batch now (users wait for `flushed()`). */
  flush(): void {
    this.flushScheduled?.unsubscribe();
    this.flushScheduled = undefined;
    if (!this.batching) return;
    this.batching = false;
    const dirty = this.dirty;
    // Each changed task enters the table once per commit, in its last state: a task that became ready,
    // ran and succeeded within one batch costs one write to the table, not three.
    const editor = this.tasks;
    for (const slot of dirty) editor.set(slot.index, slot.record!);
    const tasks = editor.finish();
    const labels = this.labels.finish();
    const counts = this.context.counts;
    const next = immer.produce(this.committed, (draft) => {
      const d = draft as unknown as { -readonly [K in keyof WorkflowState]: WorkflowState[K] };
      d.tasks = tasks;
      d.labels = labels;
      d.counts = counts;
    });
    const readied = this.readied;
    const settled = this.settled;
    this.dirty = [];
    this.readied = [];
    this.settled = [];
    this.committed = next;
    for (const slot of dirty) {
      slot.dirty = false;
      slot.committed = slot.record;
    }
    // restored records are in the store already (see `restore`)
    if (!this.restoring) this.persistence.changed(dirty);
    this.subject.next(next);
    const transitions = this.transitions;
    if (transitions !== undefined && transitions.length > 0) {
      this.transitions = [];
      this.transitionListener?.(transitions);
    }
    for (const slot of settled) {
      const rec = slot.committed;
      if (rec !== undefined && isFinal(rec.state) && rec.executor !== undefined)
        this.settledListeners.get(rec.executor)?.(slot);
    }
    for (const slot of dirty) if (slot.watchers !== undefined) slot.tellWatchers(slot.committed!);
    for (const slot of readied) {
      const rec = slot.committed;
      if (rec?.state !== 'ready' || rec.executor === undefined) continue;
      this.readyListeners.get(rec.executor)?.(slot);
    }
  }

  /** Resolves once every committed change has been written to the store (rejects if a write failed). */
  async flushed(): Promise<void> {
    this.flush();
    this.persistence.writeAll();
    await this.persistence.written();
  }

  /** Milliseconds on the scheduler's clock (virtual in marble tests). */
  now(): number {
    return asyncScheduler.now();
  }

  /**
   * Commits and writes everything, then closes the store. Task handles keep their last state. Nothing more can be
   * submitted from the call on. If the write fails, it rejects and the store stays open, its records kept: a
   * `close()` again tries the write again (a full disk: once space is freed, every record lands).
   */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closeCalled = true;
    await this.flushed();
    this.closed = true;
    this.subject.complete();
    await this.store.close();
  }
}

/** @internal Throws `InvalidTaskDescriptionError` unless `label` is a non-empty string (`what` names the task). */
export function checkLabel(label: unknown, what: string): asserts label is string {
  if (typeof label !== 'string' || label.length === 0)
    throw new InvalidTaskDescriptionError(`${what}: a label must be a non-empty string, got ${show(label)}`);
}

/**
 * Runs `fn` in the next turn of the event loop: after the events already waiting (Node's
 * `setImmediate`; elsewhere a zero-delay timeout). A commit scheduled this way takes in the changes
 * of every event handled meanwhile (worker threads' answers, process exits), not one per event.
 */
function nextTurn(fn: () => void): Unsubscribable {
  if (typeof setImmediate === 'function') {
    const handle = setImmediate(fn);
    return { unsubscribe: () => clearImmediate(handle) };
  }
  const handle = setTimeout(fn, 0);
  return { unsubscribe: () => clearTimeout(handle) };
}
