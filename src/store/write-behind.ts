/** How committed changes reach the store: behind the commits, in batches. */
import type { Store } from './store';
import { isFinal, type TaskRecord } from './state';
import type { TaskSlot } from './slot';
import { detached } from '../context/ambient';

/** A settled task's record waits at most this long before it is handed to the store. */
export const SETTLED_DELAY_MS = 50;
/** A change of a task still in flight (submitted, ready, running) waits at most this long. */
export const IN_FLIGHT_DELAY_MS = 1000;
/**
 * Settled records are handed to the store as soon as this many wait, without waiting {@link SETTLED_DELAY_MS}. At the
 * end of a run that settles thousands of tasks a second, `flushed()` then waits for the writing of a small batch, not
 * for the last 50 ms of records (with the SQLite store, 15 ms of a 500 ms run of 100 000 no-op tasks).
 */
export const SETTLED_BATCH = 2048;

// which of the two lists a slot is waiting in (TaskSlot.unwritten)
const SETTLED = 1;
const IN_FLIGHT = 2;

/**
 * How a workflow's committed changes reach its store: behind the commits, in batches, each record
 * once in its last committed state. Records of settled tasks are what resume needs (a succeeded task
 * is never run again): they are written within {@link SETTLED_DELAY_MS}. Changes of tasks still in
 * flight only inform an inspection of the store (on resume such tasks run again whether or not they
 * were recorded), so they wait up to {@link IN_FLIGHT_DELAY_MS}; a task that settles meanwhile is
 * written once, settled. A crash loses at most those windows, and nothing that was written.
 *
 * A batch the store fails to write (disk full: `StoreWriteError`) is not dropped: its tasks wait again, and
 * their records (as committed by then) go with the next batch, `writeAll()` or close, until one lands.
 * `written()` rejects while some are still unwritten, and resolves again once they all landed.
 */
export class WriteBehind {
  private settled: TaskSlot[] = [];
  private settledSince = 0;
  private inFlight: TaskSlot[] = [];
  private inFlightSince = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private timerAt = Infinity;
  private writes: Promise<void> = Promise.resolve();
  /** the last failed write's error, and the tasks whose records failed and have not been written since */
  private error: unknown;
  private readonly failed = new Set<TaskSlot>();

  constructor(private readonly store: Store) {}

  /** The slots whose records a commit changed (their `committed` record is the one to write). */
  changed(slots: readonly TaskSlot[]): void {
    if (slots.length === 0) return;
    const now = Date.now();
    for (const slot of slots) {
      if (isFinal(slot.committed!.state)) {
        if ((slot.unwritten & SETTLED) !== 0) continue;
        if (this.settled.length === 0) this.settledSince = now;
        slot.unwritten |= SETTLED;
        this.settled.push(slot);
      } else {
        if ((slot.unwritten & IN_FLIGHT) !== 0) continue;
        if (this.inFlight.length === 0) this.inFlightSince = now;
        slot.unwritten |= IN_FLIGHT;
        this.inFlight.push(slot);
      }
    }
    this.writeDue(now);
  }

  /** Hands every waiting record to the store now. */
  writeAll(): void {
    this.write(true);
  }

  /**
   * Resolves once everything handed over so far is written; rejects with the last failed write's error while
   * records of a failed batch are still unwritten (they wait for the next write: see `writeAll`).
   */
  async written(): Promise<void> {
    await this.writes;
    if (this.failed.size > 0) throw this.error;
  }

  /** Writes what is due at `now` and sets the timer for what is not. */
  private writeDue(now: number): void {
    const inFlightDue = this.inFlight.length > 0 && now - this.inFlightSince >= IN_FLIGHT_DELAY_MS;
    const settledDue =
      this.settled.length >= SETTLED_BATCH || (this.settled.length > 0 && now - this.settledSince >= SETTLED_DELAY_MS);
    if (inFlightDue || settledDue) this.write(inFlightDue);
    if (this.settled.length === 0 && this.inFlight.length === 0) return;
    const at = Math.min(
      this.settled.length > 0 ? this.settledSince + SETTLED_DELAY_MS : Infinity,
      this.inFlight.length > 0 ? this.inFlightSince + IN_FLIGHT_DELAY_MS : Infinity,
    );
    if (this.timer !== undefined) {
      if (this.timerAt <= at) return;
      clearTimeout(this.timer);
    }
    this.timerAt = at;
    // outside the caller's async context: the timer must not keep a task's context alive
    this.timer = detached(() =>
      setTimeout(
        () => {
          this.timer = undefined;
          this.writeDue(Date.now());
        },
        Math.max(0, at - now),
      ),
    );
  }

  /** Hands the settled records (and, with `all`, the in-flight ones) to the store, in one batch. */
  private write(all: boolean): void {
    if (all && this.timer !== undefined) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    const entries: Array<[string, TaskRecord]> = [];
    const slots: TaskSlot[] = [];
    for (const slot of this.settled) take(slot, entries, slots);
    this.settled = [];
    if (all) {
      for (const slot of this.inFlight) take(slot, entries, slots);
      this.inFlight = [];
    }
    if (entries.length === 0) return;
    // Handed over at once, not after the previous batch is written: stores apply writes in the order
    // they are made (a conformance property), and the SQLite store writes on its own thread meanwhile.
    // Records go unchecked: their parts from users were checked where they arose (arguments at
    // submit, results on arrival).
    const store = this.store;
    const writing =
      store.setRecords !== undefined
        ? store.setRecords(entries)
        : store.setManyChecked !== undefined
          ? store.setManyChecked(entries)
          : store.setMany(entries);
    const done = writing.then(
      () => {
        if (this.failed.size > 0) for (const slot of slots) this.failed.delete(slot);
      },
      (err: unknown) => this.retryLater(slots, err),
    );
    this.writes = this.writes.then(() => done);
  }

  /** The tasks of a batch that failed wait again, due at once: the next batch takes their records. */
  private retryLater(slots: readonly TaskSlot[], err: unknown): void {
    this.error = err;
    for (const slot of slots) {
      this.failed.add(slot);
      if (slot.unwritten !== 0) continue; // changed again since, and waiting: that write takes its newest record
      if (this.settled.length === 0) this.settledSince = Date.now() - SETTLED_DELAY_MS;
      slot.unwritten |= SETTLED;
      this.settled.push(slot);
    }
  }
}

/** Adds the slot's committed record to the batch, unless a batch already took it since it changed. */
function take(slot: TaskSlot, entries: Array<[string, TaskRecord]>, slots: TaskSlot[]): void {
  if (slot.unwritten === 0) return;
  slot.unwritten = 0; // it may still sit in the other list: that entry is skipped
  entries.push([slot.storeKey, slot.committed!]);
  slots.push(slot);
}
