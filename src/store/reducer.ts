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

type Mutable<T> = { -readonly [K in keyof T]: T[K] };
type DraftRecord = Draft<Mutable<TaskRecord>>;

/**
 * The one reducer of workflow state, an immer recipe. `events.touch` is told every task id whose
 * record changed, so that persistence and notification visit only those; `events.became` every state
 * transition, so that executors hear of exactly the work that is theirs to start, and so that the
 * current state of a task can be read without going through the draft.
 */
export interface ReduceEvents {
  /** the record of `id` changed */
  touch(id: string): void;
  /** task `id` entered state `to` */
  became(id: string, to: TaskStateName): void;
}

export function reduce(state: Draft<WorkflowState>, action: WorkflowAction, events: ReduceEvents): void {
  const touch = (id: string): void => events.touch(id);
  const get = (id: string): DraftRecord | undefined => tableGet(state.tasks, id) as DraftRecord | undefined;
  const setState = (rec: DraftRecord, to: TaskStateName): void => {
    state.counts[rec.state]--;
    state.counts[to]++;
    rec.state = to;
    touch(rec.id);
    events.became(rec.id, to);
  };
  /** Marks a task and, transitively, every unfinished dependent as failed/cancelled. */
  const finishUnsuccessfully = (root: DraftRecord, to: 'failed' | 'cancelled', error: RecordedError, now: number): void => {
    const stack: Array<[DraftRecord, RecordedError]> = [[root, error]];
    while (stack.length > 0) {
      const [rec, err] = stack.pop()!;
      if (rec.state === 'succeeded' || rec.state === 'failed' || rec.state === 'cancelled') continue;
      setState(rec, rec === root ? to : 'failed');
      rec.error = err as Draft<RecordedError>;
      rec.finishedAt = now;
      const upstream: RecordedError = {
        name: 'UpstreamFailedError',
        code: 'UPSTREAM_FAILED',
        message: `input task ${rec.label !== undefined ? `"${rec.label}" ` : ''}(${rec.id}) ${rec === root && to === 'cancelled' ? 'was cancelled' : 'failed'}: ${err.message}`,
        details: { upstreamId: rec.id },
      };
      for (const d of rec.dependents) {
        const dep = get(d);
        if (dep !== undefined) stack.push([dep, upstream]);
      }
    }
  };

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
        touch(rec.id);
        events.became(rec.id, rec.state);
      }
      return;
    }
    case 'submit': {
      const t = action.task;
      let rec = get(t.id);
      if (rec === undefined) {
        const fresh: TaskRecord = { ...t, state: 'new', attempts: 0, dependents: [], pending: 0 };
        tableSet(state.tasks as WorkflowState['tasks'], t.id, fresh);
        state.counts.new++;
        events.became(t.id, 'new');
        rec = get(t.id)!;
      } else {
        // a restored task submitted again: take the new description, keep history
        rec.requirements = t.requirements as Draft<TaskRequirements>;
        rec.executor = t.executor;
        if (t.label !== undefined && rec.label === undefined) rec.label = t.label;
        rec.error = undefined;
        rec.finishedAt = undefined;
      }
      if (rec.label !== undefined) tableSet(state.labels as WorkflowState['labels'], rec.label, rec.id);
      rec.submittedAt = action.now;
      setState(rec, 'submitted');
      let pending = 0;
      let failedInput: DraftRecord | undefined;
      for (const inputId of t.inputs) {
        const input = get(inputId);
        if (input === undefined) continue;
        if (!input.dependents.includes(t.id)) {
          input.dependents.push(t.id);
          touch(inputId);
        }
        if (input.state === 'failed' || input.state === 'cancelled') failedInput ??= input;
        else if (input.state !== 'succeeded') pending++;
      }
      rec.pending = pending;
      if (failedInput !== undefined) {
        finishUnsuccessfully(
          rec,
          'failed',
          {
            name: 'UpstreamFailedError',
            code: 'UPSTREAM_FAILED',
            message: `input task ${failedInput.label !== undefined ? `"${failedInput.label}" ` : ''}(${failedInput.id}) ${failedInput.state}: ${failedInput.error?.message ?? ''}`,
            details: { upstreamId: failedInput.id },
          },
          action.now,
        );
      } else if (pending === 0) {
        rec.readyAt = action.now;
        setState(rec, 'ready');
      }
      return;
    }
    case 'start': {
      const rec = get(action.id);
      if (rec === undefined || rec.state !== 'ready') return;
      rec.attempts++;
      rec.startedAt = action.now;
      setState(rec, 'running');
      return;
    }
    case 'succeed': {
      const rec = get(action.id);
      if (rec === undefined || rec.state !== 'running') return;
      rec.result = action.result as Draft<unknown>;
      if (action.artifacts !== undefined) rec.artifacts = action.artifacts;
      rec.error = undefined;
      rec.finishedAt = action.now;
      setState(rec, 'succeeded');
      for (const d of rec.dependents) {
        const dep = get(d);
        if (dep === undefined || dep.state !== 'submitted') continue;
        dep.pending--;
        touch(d);
        if (dep.pending <= 0) {
          dep.pending = 0;
          dep.readyAt = action.now;
          setState(dep, 'ready');
        }
      }
      return;
    }
    case 'fail':
    case 'cancel': {
      const rec = get(action.id);
      if (rec === undefined) return;
      finishUnsuccessfully(rec, action.type === 'fail' ? 'failed' : 'cancelled', action.type === 'fail' ? action.error : action.reason, action.now);
      return;
    }
    case 'retry': {
      const rec = get(action.id);
      if (rec === undefined || rec.state !== 'running') return;
      rec.error = action.error as Draft<RecordedError>;
      rec.readyAt = action.now;
      setState(rec, 'ready');
      return;
    }
    case 'label': {
      const rec = get(action.id);
      if (rec === undefined) return;
      rec.label = action.label;
      tableSet(state.labels as WorkflowState['labels'], action.label, action.id);
      touch(action.id);
      return;
    }
  }
}
