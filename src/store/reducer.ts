import type { Draft } from 'immer';
import type { TaskRequirements } from '../task/requirements';
import { tableGet, tableSet } from './table';
import type { RecordedError, TaskRecord, TaskStateName, WorkflowState } from './state';

/** A task as submitted: the identity and description; the reducer adds the life-cycle fields. */
export interface SubmittedTask {
  readonly id: string;
  readonly kind: 'function' | 'executable';
  readonly name: string;
  readonly args: readonly unknown[];
  readonly requirements: TaskRequirements;
  readonly label?: string;
  readonly key?: string;
  readonly executor: string;
  readonly parent?: string;
  readonly inputs: readonly string[];
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

export interface ReduceEvents {
  /** the record of `id` changed */
  touch(id: string): void;
  /** task `id` entered state `to` */
  became(id: string, to: TaskStateName): void;
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type DraftRecord = Draft<Mutable<TaskRecord>>;
type DraftState = Draft<WorkflowState>;

const record = (state: DraftState, id: string): DraftRecord | undefined => tableGet(state.tasks, id) as DraftRecord | undefined;

function setState(state: DraftState, events: ReduceEvents, rec: DraftRecord, to: TaskStateName): void {
  state.counts[rec.state]--;
  state.counts[to]++;
  rec.state = to;
  events.touch(rec.id);
  events.became(rec.id, to);
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
function finishUnsuccessfully(state: DraftState, events: ReduceEvents, root: DraftRecord, to: 'failed' | 'cancelled', error: RecordedError, now: number): void {
  const stack: Array<[DraftRecord, RecordedError]> = [[root, error]];
  while (stack.length > 0) {
    const [rec, err] = stack.pop()!;
    if (rec.state === 'succeeded' || rec.state === 'failed' || rec.state === 'cancelled') continue;
    setState(state, events, rec, rec === root ? to : 'failed');
    rec.error = err as Draft<RecordedError>;
    rec.finishedAt = now;
    const upstream = upstreamError(rec, rec === root && to === 'cancelled' ? 'was cancelled' : 'failed', err.message);
    for (const d of rec.dependents) {
      const dep = record(state, d);
      if (dep !== undefined) stack.push([dep, upstream]);
    }
  }
}

function submit(state: DraftState, events: ReduceEvents, t: SubmittedTask, now: number): void {
  let rec = record(state, t.id);
  if (rec === undefined) {
    const fresh: TaskRecord = { ...t, state: 'new', attempts: 0, dependents: [], pending: 0 };
    tableSet(state.tasks as WorkflowState['tasks'], t.id, fresh);
    state.counts.new++;
    events.became(t.id, 'new');
    rec = record(state, t.id)!;
  } else {
    // a restored task submitted again: take the new description, keep history
    rec.requirements = t.requirements as Draft<TaskRequirements>;
    rec.executor = t.executor;
    if (t.label !== undefined && rec.label === undefined) rec.label = t.label;
    rec.error = undefined;
    rec.finishedAt = undefined;
  }
  if (rec.label !== undefined) tableSet(state.labels as WorkflowState['labels'], rec.label, rec.id);
  rec.submittedAt = now;
  setState(state, events, rec, 'submitted');
  let pending = 0;
  let failedInput: DraftRecord | undefined;
  for (const inputId of t.inputs) {
    const input = record(state, inputId);
    if (input === undefined) continue;
    if (!input.dependents.includes(t.id)) {
      input.dependents.push(t.id);
      events.touch(inputId);
    }
    if (input.state === 'failed' || input.state === 'cancelled') failedInput ??= input;
    else if (input.state !== 'succeeded') pending++;
  }
  rec.pending = pending;
  if (failedInput !== undefined) {
    finishUnsuccessfully(state, events, rec, 'failed', upstreamError(failedInput, failedInput.state, failedInput.error?.message ?? ''), now);
  } else if (pending === 0) {
    rec.readyAt = now;
    setState(state, events, rec, 'ready');
  }
}

function succeed(state: DraftState, events: ReduceEvents, rec: DraftRecord, action: Extract<WorkflowAction, { type: 'succeed' }>): void {
  rec.result = action.result as Draft<unknown>;
  if (action.artifacts !== undefined) rec.artifacts = action.artifacts;
  rec.error = undefined;
  rec.finishedAt = action.now;
  setState(state, events, rec, 'succeeded');
  for (const d of rec.dependents) {
    const dep = record(state, d);
    if (dep === undefined || dep.state !== 'submitted') continue;
    dep.pending--;
    events.touch(d);
    if (dep.pending <= 0) {
      dep.pending = 0;
      dep.readyAt = action.now;
      setState(state, events, dep, 'ready');
    }
  }
}

/**
 * The one reducer of workflow state, an immer recipe. `events.touch` is told every task id whose
 * record changed, so that persistence and notification visit only those; `events.became` every state
 * transition, so that executors hear of exactly the work that is theirs to start, and so that the
 * current state of a task can be read without going through the draft.
 */
export function reduce(state: DraftState, action: WorkflowAction, events: ReduceEvents): void {
  switch (action.type) {
    case 'restore': {
      for (const r of action.records) {
        // Work that was in flight when the process died runs again (at-least-once): it becomes `new`
        // and waits to be submitted again.
        const inFlight = r.state === 'submitted' || r.state === 'ready' || r.state === 'running';
        const rec: TaskRecord = inFlight ? { ...r, state: 'new', executor: undefined } : r;
        tableSet(state.tasks as WorkflowState['tasks'], rec.id, rec);
        state.counts[rec.state]++;
        if (rec.label !== undefined) tableSet(state.labels as WorkflowState['labels'], rec.label, rec.id);
        events.touch(rec.id);
        events.became(rec.id, rec.state);
      }
      return;
    }
    case 'submit':
      submit(state, events, action.task, action.now);
      return;
    case 'start': {
      const rec = record(state, action.id);
      if (rec === undefined || rec.state !== 'ready') return;
      rec.attempts++;
      rec.startedAt = action.now;
      setState(state, events, rec, 'running');
      return;
    }
    case 'succeed': {
      const rec = record(state, action.id);
      if (rec !== undefined && rec.state === 'running') succeed(state, events, rec, action);
      return;
    }
    case 'fail':
    case 'cancel': {
      const rec = record(state, action.id);
      if (rec === undefined) return;
      finishUnsuccessfully(state, events, rec, action.type === 'fail' ? 'failed' : 'cancelled', action.type === 'fail' ? action.error : action.reason, action.now);
      return;
    }
    case 'retry': {
      const rec = record(state, action.id);
      if (rec === undefined || rec.state !== 'running') return;
      rec.error = action.error as Draft<RecordedError>;
      rec.readyAt = action.now;
      setState(state, events, rec, 'ready');
      return;
    }
    case 'label': {
      const rec = record(state, action.id);
      if (rec === undefined) return;
      rec.label = action.label;
      tableSet(state.labels as WorkflowState['labels'], action.label, action.id);
      events.touch(action.id);
      return;
    }
  }
}
