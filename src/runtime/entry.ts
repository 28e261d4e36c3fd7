import type { Workflow } from '../store/workflow';
import type { AnyFunction } from '../task/spec';
import type { ContextSnapshot } from './context';

/**
 * What this process knows of a task beyond its record: the live function, the context captured at
 * submit, who is interested in the outcome, and how to cancel it. Kept in `workflow.live`.
 */
export interface TaskEntry {
  readonly id: string;
  fn: AnyFunction | undefined;
  snapshot: ContextSnapshot | undefined;
  /** holders of the outcome (pipelines, awaiters, dependents) */
  interest: number;
  /** submitted eagerly (`executor.submit`): never cancelled for lack of interest */
  pinned: boolean;
  /** the live error, when it happened in this process */
  error: unknown;
  /** the one handle of this task in this process */
  handle: object | undefined;
  /** set while an executor of this process owns the task */
  cancel: ((reason: Error) => void) | undefined;
}

export function entryOf(workflow: Workflow, id: string): TaskEntry {
  let e = workflow.live.get(id) as TaskEntry | undefined;
  if (e === undefined) {
    e = { id, fn: undefined, snapshot: undefined, interest: 0, pinned: false, error: undefined, handle: undefined, cancel: undefined };
    workflow.live.set(id, e);
  }
  return e;
}
