import type { Draft } from 'immer';
import type { TableEditor } from './table';
import { copyRecord, type MutableRecord, type RecordedError, type TaskDescriptionFields, type TaskRecord, type TaskStateName, type WorkflowState } from './state';

/** A task as submitted to an executor; the reducer adds the life-cycle fields. */
export interface SubmittedTask extends TaskDescriptionFields {
  readonly executor: string;
}

export type WorkflowAction =
  /** records loaded from the store when a workflow is reopened */
  | { readonly type: 'restore'; readonly records: readonly TaskRecord[] }
  | { readonly type: 'submit'; readonly task: SubmittedTask; readonly now: number }
  | { readonly type: 'start'; readonly id: string; readonly now: number }
  | { readonly type: 'succeed'; readonly id: string; readonly result: unknown; readonly artifacts?: Record<string, string>; readonly now: number }
  | { readonly type: 'fail'; readonly id: string; readonly error: RecordedError; readonly now: number }
  | { readonly type: 'cancel'; readonly id: string; readonly reason: RecordedError; readonly now: number }
  /** a failed attempt that will be tried again: back to `ready` */
  | { readonly type: 'retry'; readonly id: string; readonly error: RecordedError; readonly now: number }
  | { readonly type: 'label'; readonly id: string; readonly label: string };

/** What the reducer works on besides the immer draft: this commit's table editors and its observers. */
export interface ReduceContext {
  readonly tasks: TableEditor<TaskRecord>;
  readonly labels: TableEditor<string>;
  /** the record of `id` changed */
  touch(id: string): void;
  /** task `id` entered state `to` */
  became(id: string, to: TaskStateName): void;
}

type DraftState = Draft<WorkflowState>;
type Changes = Partial<MutableRecord>;

/** Replaces a record by an updated copy (records are immutable values), keeping the counts per state. */
function update(state: DraftState, ctx: ReduceContext, rec: TaskRecord, changes: Changes): TaskRecord {
  const next = Object.assign(copyRecord(rec), changes);
  if (changes.state !== undefined && changes.state !== rec.state) {
    state.counts[rec.state]--;
    state.counts[changes.state]++;
    ctx.became(rec.id, changes.state);
  }
  ctx.tasks.set(rec.id, next);
  ctx.touch(rec.id);
  return next;
}

function upstreamError(rec: { id: string; label?: string }, what: string, cause: string): RecordedError {
  return {
    name: 'UpstreamFailedError',
    code: 'UPSTREAM_FAILED',
    message: `input task ${rec.label !== undefined ? `"${rec.label}" ` : ''}(${rec.id}) ${what}: ${cause}`,
    details: { upstreamId: rec.id },
  };
}

const isFinalState = (s: TaskStateName): boolean => s === 'succeeded' || s === 'failed' || s === 'cancelled';

/** Marks a task and, transitively, every unfinished dependent as failed (or the task itself as cancelled). */
function finishUnsuccessfully(state: DraftState, ctx: ReduceContext, rootId: string, to: 'failed' | 'cancelled', error: RecordedError, now: number): void {
  const stack: Array<[string, RecordedError]> = [[rootId, error]];
  while (stack.length > 0) {
    const [id, err] = stack.pop()!;
    const rec = ctx.tasks.get(id);
    if (rec === undefined || isFinalState(rec.state)) continue;
    const done = update(state, ctx, rec, { state: id === rootId ? to : 'failed', error: err, finishedAt: now });
    const upstream = upstreamError(done, id === rootId && to === 'cancelled' ? 'was cancelled' : 'failed', err.message);
    for (const d of done.dependents) stack.push([d, upstream]);
  }
}

function submit(state: DraftState, ctx: ReduceContext, t: SubmittedTask, now: number): void {
  const existing = ctx.tasks.get(t.id);
  let pending = 0;
  let failedInput: TaskRecord | undefined;
  for (const inputId of t.inputs) {
    const input = ctx.tasks.get(inputId);
    if (input === undefined) continue;
    if (!input.dependents.includes(t.id)) update(state, ctx, input, { dependents: [...input.dependents, t.id] });
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
    rec.dependents = [];
  } else {
    // a restored task submitted again: take the new description, keep history
    state.counts[existing.state]--;
    rec = copyRecord(existing);
    rec.requirements = t.requirements;
    rec.executor = t.executor;
    if (existing.label === undefined) rec.label = t.label;
    rec.error = undefined;
    rec.finishedAt = undefined;
  }
  rec.state = ready ? 'ready' : 'submitted';
  rec.pending = pending;
  rec.submittedAt = now;
  if (ready) rec.readyAt = now;
  state.counts[rec.state]++;
  ctx.became(t.id, 'submitted');
  if (ready) ctx.became(t.id, 'ready');
  ctx.tasks.set(t.id, rec);
  ctx.touch(t.id);
  if (rec.label !== undefined) ctx.labels.set(rec.label, rec.id);
  if (failedInput !== undefined) {
    finishUnsuccessfully(state, ctx, rec.id, 'failed', upstreamError(failedInput, failedInput.state, failedInput.error?.message ?? ''), now);
  }
}

function succeed(state: DraftState, ctx: ReduceContext, rec: TaskRecord, action: Extract<WorkflowAction, { type: 'succeed' }>): void {
  const done = update(state, ctx, rec, { state: 'succeeded', result: action.result, error: undefined, finishedAt: action.now });
  if (action.artifacts !== undefined) (done as MutableRecord).artifacts = action.artifacts; // a fresh copy: not yet published
  for (const d of done.dependents) {
    const dep = ctx.tasks.get(d);
    if (dep === undefined || dep.state !== 'submitted') continue;
    const pending = Math.max(0, dep.pending - 1);
    update(state, ctx, dep, pending === 0 ? { pending, state: 'ready', readyAt: action.now } : { pending });
  }
}

/**
 * The one reducer of workflow state, an immer recipe: counts and the other small parts of the state
 * are changed on the draft, task records (immutable values) through this commit's table editors.
 * `ctx.touch` is told every task id whose record changed, so that persistence and notification visit
 * only those; `ctx.became` every state transition, so that executors hear of exactly the work that is
 * theirs to start, and so that the current state of a task can be read without a table lookup.
 */
export function reduce(state: DraftState, action: WorkflowAction, ctx: ReduceContext): void {
  switch (action.type) {
    case 'restore': {
      for (const r of action.records) {
        // Work that was in flight when the process died runs again (at-least-once): it becomes `new`
        // and waits to be submitted again.
        const inFlight = r.state === 'submitted' || r.state === 'ready' || r.state === 'running';
        const rec = copyRecord(r); // one hidden class for every record, whatever the store gave back
        if (inFlight) {
          rec.state = 'new';
          rec.executor = undefined;
        }
        ctx.tasks.set(rec.id, rec);
        state.counts[rec.state]++;
        if (rec.label !== undefined) ctx.labels.set(rec.label, rec.id);
        ctx.touch(rec.id);
        ctx.became(rec.id, rec.state);
      }
      return;
    }
    case 'submit':
      submit(state, ctx, action.task, action.now);
      return;
    case 'start': {
      const rec = ctx.tasks.get(action.id);
      if (rec !== undefined && rec.state === 'ready') update(state, ctx, rec, { state: 'running', attempts: rec.attempts + 1, startedAt: action.now });
      return;
    }
    case 'succeed': {
      const rec = ctx.tasks.get(action.id);
      if (rec !== undefined && rec.state === 'running') succeed(state, ctx, rec, action);
      return;
    }
    case 'fail':
    case 'cancel':
      finishUnsuccessfully(state, ctx, action.id, action.type === 'fail' ? 'failed' : 'cancelled', action.type === 'fail' ? action.error : action.reason, action.now);
      return;
    case 'retry': {
      const rec = ctx.tasks.get(action.id);
      if (rec !== undefined && rec.state === 'running') update(state, ctx, rec, { state: 'ready', error: action.error, readyAt: action.now });
      return;
    }
    case 'label': {
      const rec = ctx.tasks.get(action.id);
      if (rec === undefined) return;
      update(state, ctx, rec, { label: action.label });
      ctx.labels.set(action.label, action.id);
      return;
    }
  }
}
