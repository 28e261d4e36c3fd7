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
  /** the executor of this process the task was last submitted to */
  owner: TaskOwner | undefined;
  /** submitted to `owner`, whose bookkeeping for its outcome is still to be done (see `TaskOwner.settleTask`) */
  open: boolean;
  /** the attempt running now, owned by the task's executor */
  attempt: object | undefined;
  /** attempts the record counted when the task was last submitted: retries are counted from there */
  attemptBase: number;
  /** for a function that is not registered (a closure): the token of the function object that made the task */
  maker: number | undefined;
}

/** What the executor that owns a task does for its handle. */
export interface TaskOwner {
  readonly id: string;
  readonly isShutdown: boolean;
  /** stops the task (its attempt, if running) and records it as cancelled */
  cancelTask(entry: TaskEntry, reason: Error): void;
  /** the executor's bookkeeping for a settled task (normally when the outcome commits; earlier if it re-runs first) */
  settleTask(entry: TaskEntry): void;
  /** runs a failed or cancelled task again (`task.retry()`); throws if the owner takes no more work */
  rerun(entry: TaskEntry): void;
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
      owner: undefined,
      open: false,
      attempt: undefined,
      attemptBase: 0,
      maker: undefined,
    };
    slot.live = e;
  }
  return e;
}
