/** What this process knows of a task beyond its record (its `TaskEntry`): the task's slot in the workflow, extended. */
import type { Workflow } from './workflow';
import { SLOT_BITS, TaskSlot } from '../store/slot';
import type { AnyFunction } from '../task/spec';
import type { ContextSnapshot } from '../context/ambient';

/**
 * What this process knows of a task beyond its record: the live function, the context captured at
 * submit, who is interested in the outcome, the attempt running it, and how to cancel it. It is the
 * task's slot in the workflow itself (a `Workflow` makes its slots as entries: `newSlot`), not a companion
 * object beside it: a million tasks held a million of those, at 48 bytes each for a header, the id, the
 * slot and the slot's pointer back.
 */
export class TaskEntry extends TaskSlot {
  fn: AnyFunction | undefined = undefined;
  snapshot: ContextSnapshot | undefined = undefined;
  /** holders of the outcome (pipelines, awaiters, dependents) */
  interest = 0;
  /** the live error, when it happened in this process */
  error: unknown = undefined;
  /** the one handle of this task in this process */
  handle: object | undefined = undefined;
  /** the executor of this process the task was last submitted to */
  owner: TaskOwner | undefined = undefined;
  /** the attempt running now, owned by the task's executor */
  attempt: object | undefined = undefined;
  /** for a function that is not registered (a closure): the token of the function object that made the task */
  maker: number | undefined = undefined;

  // The flags and the small count below live in the slot's `bits`, above its own (`SLOT_BITS`).

  /** submitted eagerly (`executor.submit`): never cancelled for lack of interest */
  get pinned(): boolean {
    return (this.bits & PINNED) !== 0;
  }

  set pinned(pinned: boolean) {
    this.bits = pinned ? this.bits | PINNED : this.bits & ~PINNED;
  }

  /** submitted to `owner`, whose bookkeeping for its outcome is still to be done (see `TaskOwner.settleTask`) */
  get open(): boolean {
    return (this.bits & OPEN) !== 0;
  }

  set open(open: boolean) {
    this.bits = open ? this.bits | OPEN : this.bits & ~OPEN;
  }

  /** attempts the record counted when the task was last submitted: retries are counted from there (below 2^25) */
  get attemptBase(): number {
    return this.bits >>> BASE_SHIFT;
  }

  set attemptBase(attempts: number) {
    this.bits = (this.bits & ((1 << BASE_SHIFT) - 1)) | (attempts << BASE_SHIFT);
  }
}

const PINNED = 1 << SLOT_BITS;
const OPEN = 1 << (SLOT_BITS + 1);
const BASE_SHIFT = SLOT_BITS + 2;

/** What the executor that owns a task does for its handle. */
export interface TaskOwner {
  readonly id: string;
  /** how messages name it (its name and id) */
  readonly display: string;
  readonly isShutdown: boolean;
  /** stops the task (its attempt, if running) and records it as cancelled */
  cancelTask(entry: TaskEntry, reason: Error): void;
  /** the executor's bookkeeping for a settled task (normally when the outcome commits; earlier if it re-runs first) */
  settleTask(entry: TaskEntry): void;
  /** runs a failed or cancelled task again (`task.retry()`); throws if the owner takes no more work */
  rerun(entry: TaskEntry): void;
}

/**
 * What the backend's `identity` said of a task when it was last submitted (an executable's host input files, by
 * content), where it said anything: its attempts check that the files still are what the task's id says. Beside the
 * entries, not in them: most tasks have none, and a field would cost every one of a million tasks 8 bytes.
 */
export const contentAtSubmit = new WeakMap<TaskSlot, string>();

export function entryOf(workflow: Workflow, id: string): TaskEntry {
  return workflow.slot(id) as TaskEntry;
}

/** The entry of a slot of a `Workflow` (whose slots are all entries). */
export function entryOfSlot(slot: TaskSlot): TaskEntry {
  return slot as TaskEntry;
}
