/** The one reducer of workflow state: how each action changes task records, edges, labels and counts. */
import type { TableEditor } from './table';
import type { TaskSlot } from './slot';
import { frozenResult } from './frozen';
import type { RecordedError } from '../recorded-error';
import {
  copyRecord,
  isFinal,
  type MutableRecord,
  type TaskDescriptionFields,
  type TaskRecord,
  type TaskStateName,
} from './state';

/** A task as submitted to an executor; the reducer adds the life-cycle fields. */
export interface SubmittedTask extends TaskDescriptionFields {
  readonly executor: string;
}

export type WorkflowAction =
  /** records loaded from the store when a workflow is reopened */
  | { readonly type: 'restore'; readonly records: readonly TaskRecord[] }
  /** `slot`, here and below, where the dispatcher has it, saves the reducer a lookup (it must be the task's slot) */
  | { readonly type: 'submit'; readonly task: SubmittedTask; readonly now: number; readonly slot?: TaskSlot }
  | {
      readonly type: 'start';
      readonly id: string;
      readonly now: number;
      readonly slot?: TaskSlot;
      /** the executor's worker group it starts on, when it has several */
      readonly group?: string;
    }
  | {
      readonly type: 'succeed';
      readonly id: string;
      readonly result: unknown;
      readonly artifacts?: Record<string, string>;
      readonly read?: Readonly<Record<string, string>>;
      readonly now: number;
      readonly slot?: TaskSlot;
    }
  | { readonly type: 'fail'; readonly id: string; readonly error: RecordedError; readonly now: number }
  | { readonly type: 'cancel'; readonly id: string; readonly reason: RecordedError; readonly now: number }
  /** a failed attempt that will be tried again: back to `ready` */
  | { readonly type: 'retry'; readonly id: string; readonly error: RecordedError; readonly now: number }
  | { readonly type: 'label'; readonly id: string; readonly label: string };

/** What the reducer changes (the pending commit: task records, labels, counts) and who hears of it. */
export interface ReduceContext {
  readonly labels: TableEditor<string>;
  /** tasks per state, as of the pending commit (a copy of the committed counts, changed in place) */
  readonly counts: Record<TaskStateName, number>;
  /** the slot of task `id`, if the workflow has that task */
  find(id: string): TaskSlot | undefined;
  /** the slot of task `id`, made if needed */
  slot(id: string): TaskSlot;
  /** makes `rec` the current record of the slot's task, in the pending commit */
  put(slot: TaskSlot, rec: TaskRecord): void;
  /** the slot's task entered state `to` */
  became(slot: TaskSlot, to: TaskStateName): void;
  /**
   * `now` as the value to store in a record's time field: the same number object for the same millisecond. A time
   * stored in a record is a boxed double (16 bytes); tens of tasks start or settle in one millisecond, and with this
   * they share one box instead of holding one each (48 bytes a task held in memory, for its three times).
   */
  stamp(now: number): number;
}

type Changes = Partial<MutableRecord>;

/** Replaces a record by an updated copy (records are immutable values), keeping the counts per state. */
function update(ctx: ReduceContext, slot: TaskSlot, rec: TaskRecord, changes: Changes): TaskRecord {
  return replace(ctx, slot, rec, Object.assign(copyRecord(rec), changes));
}

/** Makes `next` (a changed copy of `rec`) the task's record, keeping the counts per state. */
function replace(ctx: ReduceContext, slot: TaskSlot, rec: TaskRecord, next: TaskRecord): TaskRecord {
  if (next.state !== rec.state) {
    ctx.counts[rec.state]--;
    ctx.counts[next.state]++;
    ctx.became(slot, next.state);
  }
  ctx.put(slot, next);
  return next;
}

/**
 * Gives `label` to task `id`. A task that held it loses it (its record is written without): one of an earlier run that
 * this run has not submitted, superseded by a task of a new identity under the same label (see `TaskGraph.setLabel`).
 */
function holdLabel(ctx: ReduceContext, label: string, id: string): void {
  const before = ctx.labels.get(label);
  if (before !== undefined && before !== id) {
    const [slot, rec] = current(ctx, before);
    if (slot !== undefined && rec.label === label) {
      const next = copyRecord(rec);
      delete next.label;
      replace(ctx, slot, rec, next);
    }
  }
  ctx.labels.set(label, id);
}

/** The slot and current record of task `id`, if the workflow has it. */
function current(ctx: ReduceContext, id: string, known?: TaskSlot): [TaskSlot, TaskRecord] | [undefined, undefined] {
  const slot = known ?? ctx.find(id);
  const rec = slot?.record;
  return slot === undefined || rec === undefined ? [undefined, undefined] : [slot, rec];
}

function upstreamError(rec: { id: string; label?: string }, what: string, cause: string): RecordedError {
  return {
    name: 'UpstreamFailedError',
    code: 'UPSTREAM_FAILED',
    message: `input task ${rec.label !== undefined ? `"${rec.label}" ` : ''}(${rec.id}) ${what}: ${cause}`,
    details: { upstreamId: rec.id },
  };
}

/** Marks a task and, transitively, every unfinished dependent as failed (or the task itself as cancelled). */
function finishUnsuccessfully(
  ctx: ReduceContext,
  rootId: string,
  to: 'failed' | 'cancelled',
  error: RecordedError,
  now: number,
): void {
  const stack: Array<[string, RecordedError]> = [[rootId, error]];
  while (stack.length > 0) {
    const [id, err] = stack.pop()!;
    const [slot, rec] = current(ctx, id);
    if (slot === undefined || isFinal(rec.state)) continue;
    const done = update(ctx, slot, rec, {
      state: id === rootId ? to : 'failed',
      error: err,
      finishedAt: ctx.stamp(now),
    });
    const dependents = slot.dependents;
    if (dependents === undefined) continue;
    const upstream = upstreamError(done, id === rootId && to === 'cancelled' ? 'was cancelled' : 'failed', err.message);
    for (const d of dependents) stack.push([d.id, upstream]);
  }
}

/** Records the edge `input → dependent` (once per pair: callers add each edge once). */
function addDependent(input: TaskSlot, dependent: TaskSlot): void {
  if (input.dependents === undefined) input.dependents = [dependent];
  else input.dependents.push(dependent);
}

function submit(ctx: ReduceContext, t: SubmittedTask, now: number, known: TaskSlot | undefined): void {
  // the executor has the slot at hand: a lookup less in a map of every task (cache misses, at a million tasks)
  const slot = known ?? ctx.slot(t.id);
  const existing = slot.record;
  let pending = 0;
  let failedInput: TaskRecord | undefined;
  for (const inputId of t.inputs) {
    const [inputSlot, input] = current(ctx, inputId);
    if (inputSlot === undefined) continue;
    // a task submitted again (restored, or retried) has its edges already: its inputs are part of its id
    if (existing === undefined) addDependent(inputSlot, slot);
    if (input.state === 'failed' || input.state === 'cancelled') failedInput ??= input;
    else if (input.state !== 'succeeded') pending++;
  }
  const ready = failedInput === undefined && pending === 0;
  // The record is built once, in its final state of this action (submitted, or already ready);
  // the counts and the transition events still go through each state.
  let rec: MutableRecord;
  if (existing === undefined) {
    rec = copyRecord(t as TaskRecord); // the lifecycle fields are filled in below
    rec.attempts = 0;
  } else {
    // a restored task submitted again: take the new description, keep history
    ctx.counts[existing.state]--;
    rec = copyRecord(existing);
    rec.requirements = t.requirements;
    rec.executor = t.executor;
    if (existing.executor !== t.executor) rec.group = undefined; // a group of another executor
    if (existing.label === undefined) rec.label = t.label;
    rec.error = undefined;
    rec.finishedAt = undefined;
    if (existing.state === 'succeeded') {
      // run again because files it made are gone, or files it read changed (see the executor): its result is of
      // them
      rec.result = undefined;
      rec.artifacts = undefined;
      rec.read = undefined;
    }
  }
  rec.state = ready ? 'ready' : 'submitted';
  rec.pending = pending;
  const at = ctx.stamp(now);
  rec.submittedAt = at;
  if (ready) rec.readyAt = at;
  ctx.counts[rec.state]++;
  ctx.became(slot, 'submitted');
  if (ready) ctx.became(slot, 'ready');
  ctx.put(slot, rec);
  if (rec.label !== undefined) holdLabel(ctx, rec.label, rec.id);
  if (failedInput !== undefined) {
    finishUnsuccessfully(
      ctx,
      rec.id,
      'failed',
      upstreamError(failedInput, failedInput.state, failedInput.error?.message ?? ''),
      now,
    );
  }
}

function succeed(
  ctx: ReduceContext,
  slot: TaskSlot,
  rec: TaskRecord,
  action: Extract<WorkflowAction, { type: 'succeed' }>,
): void {
  // the hot paths (start, succeed) set fields on the copy instead of merging a changes object
  const next = copyRecord(rec);
  next.state = 'succeeded';
  next.result = action.result;
  next.error = undefined;
  next.finishedAt = ctx.stamp(action.now);
  if (action.artifacts !== undefined) next.artifacts = action.artifacts;
  if (action.read !== undefined) next.read = action.read;
  replace(ctx, slot, rec, next);
  const dependents = slot.dependents;
  if (dependents === undefined) return;
  for (const depSlot of dependents) {
    const dep = depSlot.record;
    if (dep === undefined || dep.state !== 'submitted') continue;
    const pending = Math.max(0, dep.pending - 1);
    const next = copyRecord(dep);
    next.pending = pending;
    if (pending === 0) {
      next.state = 'ready';
      next.readyAt = ctx.stamp(action.now);
    }
    replace(ctx, depSlot, dep, next);
  }
}

/**
 * The one reducer of workflow state. It changes the pending commit: task records (immutable values)
 * and labels through the commit's table editors, the counts per state in the commit's copy of them;
 * the workflow publishes all of it as the next immutable state (with immer) when it commits.
 * Every changed record goes through `ctx.put`, so that persistence and notification visit only those;
 * every state transition through `ctx.became`, so that executors hear of exactly the work that is
 * theirs to start.
 */
export function reduce(action: WorkflowAction, ctx: ReduceContext): void {
  switch (action.type) {
    case 'restore': {
      for (const r of action.records) {
        // Work that was in flight when the process died runs again (at-least-once): it becomes `new`
        // and waits to be submitted again.
        const inFlight = r.state === 'submitted' || r.state === 'ready' || r.state === 'running';
        const rec = copyRecord(r); // one hidden class for every record, whatever the store gave back
        // frozen, as a result of this run is (see frozen.ts)
        if (typeof rec.result === 'object' && rec.result !== null) rec.result = frozenResult(rec.result, true);
        if (inFlight) {
          rec.state = 'new';
          rec.executor = undefined;
        }
        const slot = ctx.slot(rec.id);
        ctx.put(slot, rec);
        ctx.counts[rec.state]++;
        if (rec.label !== undefined) ctx.labels.set(rec.label, rec.id);
        ctx.became(slot, rec.state);
      }
      // the edges, from each record's inputs (a task may be restored before its inputs; an input the
      // store does not hold gets an empty slot, which holds the edge should that task be submitted)
      for (const r of action.records) for (const input of r.inputs) addDependent(ctx.slot(input), ctx.slot(r.id));
      return;
    }
    case 'submit':
      submit(ctx, action.task, action.now, action.slot);
      return;
    case 'start': {
      const [slot, rec] = current(ctx, action.id, action.slot);
      if (slot === undefined || rec.state !== 'ready') return;
      const next = copyRecord(rec);
      next.state = 'running';
      next.attempts = rec.attempts + 1;
      next.startedAt = ctx.stamp(action.now);
      if (action.group !== undefined || rec.group !== undefined) next.group = action.group;
      replace(ctx, slot, rec, next);
      return;
    }
    case 'succeed': {
      const [slot, rec] = current(ctx, action.id, action.slot);
      if (slot !== undefined && rec.state === 'running') succeed(ctx, slot, rec, action);
      return;
    }
    case 'fail':
    case 'cancel':
      finishUnsuccessfully(
        ctx,
        action.id,
        action.type === 'fail' ? 'failed' : 'cancelled',
        action.type === 'fail' ? action.error : action.reason,
        action.now,
      );
      return;
    case 'retry': {
      const [slot, rec] = current(ctx, action.id);
      if (slot !== undefined && rec.state === 'running')
        update(ctx, slot, rec, { state: 'ready', error: action.error, readyAt: ctx.stamp(action.now) });
      return;
    }
    case 'label': {
      const [slot, rec] = current(ctx, action.id);
      if (slot === undefined) return;
      update(ctx, slot, rec, { label: action.label });
      holdLabel(ctx, action.label, action.id);
      return;
    }
  }
}
