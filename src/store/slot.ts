/** `TaskSlot`: what a workflow keeps per task besides its state tables. */
import { isFinal, type TaskRecord } from './state';

export const TASK_KEY_PREFIX = 'task:';

const UNWRITTEN = 3;
const DIRTY = 4;
/** the bits of `TaskSlot.bits` that the slot itself uses; a subclass uses those above */
export const SLOT_BITS = 3;

/**
 * What hears of a task's committed changes: a function called with each record, or an object whose `recordChanged`
 * is (where the caller holds an object per task anyway, it needs no closure: see `SettledWatcher`).
 */
export type RecordListener = ((record: TaskRecord) => void) | { recordChanged(record: TaskRecord): void };

/** Tells a listener of the record. */
function tell(listener: RecordListener, record: TaskRecord): void {
  if (typeof listener === 'function') listener(record);
  else listener.recordChanged(record);
}

/**
 * What a workflow keeps per task besides the tables of its state: the current record (uncommitted
 * changes included), the last committed one, who watches it. The runtime's workflow makes its slots as
 * a subclass holding what it knows of the task in this process (`runtime/entry.ts`). One map
 * lookup finds all of it, and the commit's lists (changed, readied, settled, unwritten) hold slots, so
 * a commit visits its tasks without looking any of them up again.
 */
export class TaskSlot {
  /** the current record, with the changes of the pending commit */
  record: TaskRecord | undefined = undefined;
  /** the record as of the last commit */
  committed: TaskRecord | undefined = undefined;
  /**
   * Small flags and counts in one small integer, not a field each (8 bytes apiece, a million times): `dirty` and
   * `unwritten` here, and above them (from bit {@link SLOT_BITS}) what the runtime's entry keeps (`runtime/entry.ts`).
   */
  protected bits = 0;
  /**
   * Listeners of each committed change: the one, or an array of several. Most tasks have one (the pipeline or the
   * awaiter that waits for them), and an array for it was 150 bytes a task more for the collector.
   */
  watchers: RecordListener | RecordListener[] | undefined = undefined;
  /**
   * The tasks that take this one's result as input. Not part of the record: derived from the dependents'
   * `inputs` (at submit, and at restore), and appended to in place, so that adding an edge costs O(1)
   * however many dependents a task has (a record holding the list would be copied, and written to the
   * store, once per new dependent).
   */
  dependents: TaskSlot[] | undefined = undefined;

  constructor(
    readonly id: string,
    /** the task's position in the workflow's table of records: the order the workflow first heard of it */
    readonly index: number,
  ) {}

  /** changed in the pending commit */
  get dirty(): boolean {
    return (this.bits & DIRTY) !== 0;
  }

  set dirty(dirty: boolean) {
    this.bits = dirty ? this.bits | DIRTY : this.bits & ~DIRTY;
  }

  /** committed changes not yet handed to the store: the write-behind lists it waits in (bits 1 and 2) */
  get unwritten(): number {
    return this.bits & UNWRITTEN;
  }

  set unwritten(lists: number) {
    this.bits = (this.bits & ~UNWRITTEN) | (lists & UNWRITTEN);
  }

  /**
   * The committed record if the task has settled and nothing about it is pending: an outcome that
   * can be delivered now. A settled task submitted again (a restored failure) is not settled any more,
   * even before that change commits.
   */
  get outcome(): TaskRecord | undefined {
    const rec = this.committed;
    if (this.dirty || rec === undefined) return undefined;
    return isFinal(rec.state) ? rec : undefined;
  }

  /** Calls `listener` with the committed record each time the task changes; returns the stop function. */
  watch(listener: RecordListener): () => void {
    this.addWatcher(listener);
    return () => void this.removeWatcher(listener);
  }

  /** @internal `watch` without making a stop function: stop with `removeWatcher(listener)`. */
  addWatcher(listener: RecordListener): void {
    const watchers = this.watchers;
    if (watchers === undefined) this.watchers = listener;
    else if (!Array.isArray(watchers)) this.watchers = [watchers, listener];
    else watchers.push(listener);
  }

  /**
   * @internal Tells each watcher of the committed record (the commit calls it). Those watching as it starts are told,
   * even one that an earlier one stops meanwhile: a once-only watcher guards itself (see `SettledWatcher`).
   */
  tellWatchers(record: TaskRecord): void {
    const watchers = this.watchers;
    if (watchers === undefined) return;
    if (!Array.isArray(watchers)) tell(watchers, record);
    else for (const l of [...watchers]) tell(l, record);
  }

  /** @internal Removes one registration of `listener`; false if it had none. */
  removeWatcher(listener: RecordListener): boolean {
    const watchers = this.watchers;
    if (watchers === undefined) return false;
    if (!Array.isArray(watchers)) {
      if (watchers !== listener) return false;
      this.watchers = undefined;
      return true;
    }
    const i = watchers.indexOf(listener);
    if (i < 0) return false;
    if (watchers.length === 2) this.watchers = watchers[1 - i];
    else watchers.splice(i, 1);
    return true;
  }

  /**
   * The record's key in the store. Made for each write, not kept: a task is written about once, and a memory store
   * keeps the first key string it was given for good anyway.
   */
  get storeKey(): string {
    return TASK_KEY_PREFIX + this.id;
  }
}
