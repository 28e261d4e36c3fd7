/** Workflow state as plain data: task records, their states and counts, as `workflow.state$` emits them. */
import { InvalidOptionsError } from '../errors';
import type { RecordedError } from '../recorded-error';
import { show } from '../task/requirements';
import type { TaskRequirements } from '../task/requirements';
import type { Table } from './table';

export type TaskStateName = 'new' | 'submitted' | 'ready' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export const TASK_STATES: readonly TaskStateName[] = [
  'new',
  'submitted',
  'ready',
  'running',
  'succeeded',
  'failed',
  'cancelled',
];
export const isFinal = (s: TaskStateName): boolean => s === 'succeeded' || s === 'failed' || s === 'cancelled';

/** What a task is, as submitted: its identity and description. */
export interface TaskDescriptionFields {
  readonly id: string;
  readonly kind: 'function' | 'executable';
  readonly name: string;
  /** arguments with upstream tasks replaced by `{ $task: id }` */
  readonly args: readonly unknown[];
  readonly requirements: TaskRequirements;
  readonly label?: string;
  readonly key?: string;
  /** the task that submitted this one, if any */
  readonly parent?: string;
  /** upstream task ids */
  readonly inputs: readonly string[];
}

/** One task of the workflow, as stored. Everything here is plain data. */
export interface TaskRecord extends TaskDescriptionFields {
  /** the executor (of this process) the task was last submitted to */
  readonly executor?: string;
  /** the worker group of that executor its last attempt started on, when the executor has several */
  readonly group?: string;
  readonly state: TaskStateName;
  readonly attempts: number;
  /** inputs that have not succeeded yet */
  readonly pending: number;
  readonly submittedAt?: number;
  readonly readyAt?: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  readonly result?: unknown;
  readonly error?: RecordedError;
  /** files or other artifacts produced (by executables): name → location */
  readonly artifacts?: Readonly<Record<string, string>>;
  /**
   * files outside the workflow an executable read, named by its upstream tasks' results (their paths, not their
   * content, are in its identity): path → digest of their content when it started
   */
  readonly read?: Readonly<Record<string, string>>;
}

/** A record under construction (records are immutable once in a table). */
export type MutableRecord = { -readonly [K in keyof TaskRecord]: TaskRecord[K] };

/**
 * A copy of a record with every field present, absent ones `undefined`, always in this order: so all
 * records share one hidden class, and copying one (each state change does) is a plain object literal,
 * not a spread (a spread plus extra fields makes V8 build a slow dictionary object, about 5 µs each).
 * Stores drop the `undefined` fields (JSON has none).
 */
export function copyRecord(r: TaskRecord): MutableRecord {
  return {
    id: r.id,
    kind: r.kind,
    name: r.name,
    args: r.args,
    requirements: r.requirements,
    label: r.label,
    key: r.key,
    parent: r.parent,
    inputs: r.inputs,
    executor: r.executor,
    group: r.group,
    state: r.state,
    attempts: r.attempts,
    pending: r.pending,
    submittedAt: r.submittedAt,
    readyAt: r.readyAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    result: r.result,
    error: r.error,
    artifacts: r.artifacts,
    read: r.read,
  };
}

export interface WorkflowState {
  readonly name: string;
  readonly tasks: Table<TaskRecord>;
  /** label → task id */
  readonly labels: Table<string>;
  /** number of tasks in each state, kept by the reducer */
  readonly counts: Readonly<Record<TaskStateName, number>>;
}

/** The state of a workflow without tasks, given its (empty) tables. */
export function emptyState(name: string, tables: Pick<WorkflowState, 'tasks' | 'labels'>): WorkflowState {
  return {
    name,
    tasks: tables.tasks,
    labels: tables.labels,
    counts: { new: 0, submitted: 0, ready: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0 },
  };
}

/** The record of the task with that label, if any. */
export const taskByLabel = (state: WorkflowState, label: string): TaskRecord | undefined => {
  if (typeof (state as { labels?: { get?: unknown } } | null)?.labels?.get !== 'function')
    throw new InvalidOptionsError(
      `taskByLabel(state, label): state must be a workflow state (workflow.state, or a value of workflow.state$), ` +
        `got ${show(state)}`,
    );
  if (typeof label !== 'string')
    throw new InvalidOptionsError(`taskByLabel(state, label): label must be a string, got ${show(label)}`);
  const id = state.labels.get(label);
  return id === undefined ? undefined : state.tasks.get(id);
};
