/**
 * The graph's groups, counted as tasks change rather than recounted: for each group its size and its tasks per
 * state, and for each pair of groups the number of edges from one to the other. A workflow of 100 000 tasks was
 * counted again on every drawing (a few hundred ms); now only the tasks that changed since are.
 */
import type { StateName, TaskRow } from '../protocol.js';
import type { Model } from './model.js';

export type Mix = Record<StateName, number>;
export const emptyMix = (): Mix => ({
  new: 0,
  submitted: 0,
  ready: 0,
  running: 0,
  succeeded: 0,
  failed: 0,
  cancelled: 0,
});

export class Tally {
  readonly sizes = new Map<string, number>();
  readonly mix = new Map<string, Mix>();
  /** `from\nto` → edges from a task of one group to a task of the other */
  readonly links = new Map<string, number>();
  private readonly seen = new Map<string, { readonly group: string; readonly state: StateName }>();

  constructor(
    readonly mode: string,
    private readonly groupOf: (row: TaskRow) => string,
  ) {}

  /**
   * Counts the tasks `ids` (again). False when only counting everything again can: a task gone or moved to another
   * group. An edge from an input the page has not seen yet is counted when everything is counted again.
   */
  add(model: Model, ids: Iterable<string>): boolean {
    const fresh: TaskRow[] = [];
    for (const id of ids) {
      const row = model.rows.get(id);
      if (row === undefined) return false;
      const group = this.groupOf(row);
      const before = this.seen.get(id);
      if (before !== undefined) {
        if (before.group !== group) return false;
        this.mixOf(group)[before.state]--;
      } else {
        this.sizes.set(group, (this.sizes.get(group) ?? 0) + 1);
        fresh.push(row);
      }
      this.mixOf(group)[row.state]++;
      this.seen.set(id, { group, state: row.state });
    }
    // after every new task is known: an input may come in the same change as the task that takes it
    for (const row of fresh) {
      const to = this.seen.get(row.id)!.group;
      for (const input of row.inputs) {
        const from = this.seen.get(input)?.group;
        if (from === undefined || from === to) continue;
        const key = `${from}\n${to}`;
        this.links.set(key, (this.links.get(key) ?? 0) + 1);
      }
    }
    return true;
  }

  private mixOf(group: string): Mix {
    let m = this.mix.get(group);
    if (m === undefined) this.mix.set(group, (m = emptyMix()));
    return m;
  }
}
