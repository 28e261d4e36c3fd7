/** What this process knows of a task beyond its record (its `TaskEntry`), kept beside the task's slot. */
import type { Workflow } from './workflow';
import type { TaskSlot } from '../store/slot';
import type { AnyFunction } from '../task/spec';
import type { ContextSnapshot } from '../context/ambient';

/**
 * What this process knows of a task beyond its record: the live function, the context captured at
 * submit, who is interested in the outcome, the attempt running it, and how to cancel it. Kept as the
 * companion of the task's slot in the workflow (`slot.live`).
 */
export interface TaskEntry {
  readonly id: string;
  /** the task's slot in the workflow: its current and committed record */
  readonly slot: TaskSlot;
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
  /** the attempt running now, owned by the task's executor */
  attempt: object | undefined;
}

export function entryOf(workflow: Workflow, id: string): TaskEntry {
  return entryOfSlot(workflow.slot(id));
}

export function entryOfSlot(slot: TaskSlot): TaskEntry {
  let e = slot.live as TaskEntry | undefined;
  if (e === undefined) {
    e = {
      id: slot.id,
      slot,
      fn: undefined,
      snapshot: undefined,
      interest: 0,
      pinned: false,
      error: undefined,
      handle: undefined,
      cancel: undefined,
      attempt: undefined,
    };
    slot.live = e;
  }
  return e;
}
