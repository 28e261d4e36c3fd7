/**
 * The page's copy of the workflow: one row per task, kept by applying the server's snapshot and then its deltas
 * (only the changed tasks), with the counts per state kept as rows change. Views read it on the next animation
 * frame after a change; `structure` moves only when tasks come or go (the graph is laid out again then, not when a
 * colour changes).
 */
import type { DeltaMessage, SnapshotMessage, StateName, TaskRow } from '../protocol.js';
import { TASK_STATES } from '../../../store/state.js';

/** the states in their order, the store's own list */
export const STATES: readonly StateName[] = TASK_STATES;
export const FINAL: ReadonlySet<StateName> = new Set(['succeeded', 'failed', 'cancelled']);

const zero = (): Record<StateName, number> =>
  ({ new: 0, submitted: 0, ready: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 }) as Record<StateName, number>;

export class Model {
  readonly rows = new Map<string, TaskRow>();
  counts = zero();
  workflow = '';
  store = '';
  seq = -1;
  /** the server's clock minus this page's (ms), from the last message: times are shown on the server's clock */
  skew = 0;
  /** moves on every change */
  version = 0;
  /** moves when tasks come or go */
  structure = 0;
  /** the ids changed by the last change (all of them after a snapshot) */
  lastChanged: readonly string[] = [];
  executors = new Set<string>();
  /**
   * For the views that keep what they drew (the task stream, the graph's groups), per view: whether everything changed
   * (a snapshot, a task gone) and the ids changed since it last asked.
   */
  private readonly logs = new Map<string, { full: boolean; ids: Set<string> }>();

  /** The tasks changed since `view` last asked (`full`: take everything again). */
  takeChanges(view: string): { full: boolean; ids: ReadonlySet<string> } {
    const log = this.logs.get(view);
    this.logs.set(view, { full: false, ids: new Set() });
    return log ?? { full: true, ids: new Set() };
  }

  snapshot(m: SnapshotMessage): void {
    this.rows.clear();
    this.counts = zero();
    this.executors.clear();
    for (const row of m.tasks) {
      this.rows.set(row.id, row);
      this.counts[row.state]++;
      if (row.executor !== undefined) this.executors.add(row.executor);
    }
    this.workflow = m.workflow;
    this.store = m.store;
    this.seq = m.seq;
    this.skew = m.now - Date.now();
    this.lastChanged = m.tasks.map((t) => t.id);
    this.version++;
    this.structure++;
    for (const log of this.logs.values()) [log.full, log.ids] = [true, new Set()];
  }

  /** Folds a delta in; one older than the snapshot is ignored. */
  delta(m: DeltaMessage): void {
    if (m.seq <= this.seq) return;
    let added = m.removed.length > 0;
    for (const row of m.tasks) {
      const old = this.rows.get(row.id);
      if (old === undefined) added = true;
      else this.counts[old.state]--;
      this.counts[row.state]++;
      this.rows.set(row.id, row);
      for (const log of this.logs.values()) log.ids.add(row.id);
      if (row.executor !== undefined) this.executors.add(row.executor);
    }
    if (m.removed.length > 0) for (const log of this.logs.values()) log.full = true;
    for (const id of m.removed) {
      const old = this.rows.get(id);
      if (old === undefined) continue;
      this.counts[old.state]--;
      this.rows.delete(id);
    }
    this.seq = m.seq;
    this.skew = m.now - Date.now();
    this.lastChanged = m.tasks.map((t) => t.id);
    this.version++;
    if (added) this.structure++;
  }

  /** Now, on the server's clock. */
  now(): number {
    return Date.now() + this.skew;
  }
}
