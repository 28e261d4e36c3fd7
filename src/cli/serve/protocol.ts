/**
 * What `scalems serve` sends its page, and the page asks of it: the types both sides share (the page imports them as
 * types only: nothing here runs in the browser).
 */
import type { RecordedError } from '../../recorded-error';
import type { TaskRequirements } from '../../task/requirements';
import type { TaskStateName } from '../../store/state';

export type StateName = TaskStateName;

/** An attempt that ended without settling the task (it was retried, or its process died), as `[start, end]`. */
export type PastAttempt = readonly [start: number, end: number | null];

/**
 * One task as the page shows it in its lists, graph and task stream: what a record holds that changes, and what
 * identifies it. Absent fields are left out of the JSON.
 */
export interface TaskRow {
  readonly id: string;
  readonly label?: string;
  readonly name: string;
  readonly kind: 'function' | 'executable';
  readonly state: StateName;
  readonly executor?: string;
  /** the executor's worker group its last attempt started on, when it has several */
  readonly group?: string;
  readonly attempts: number;
  readonly submittedAt?: number;
  readonly readyAt?: number;
  readonly startedAt?: number;
  readonly finishedAt?: number;
  /** upstream task ids */
  readonly inputs: readonly string[];
  /** the recorded error's `name: first line of the message` (cut to 200 characters), and its code */
  readonly error?: string;
  readonly errorCode?: string;
  /** earlier attempts this server saw end (a record keeps only its last attempt's times) */
  readonly past?: readonly PastAttempt[];
}

/** The first message on each connection: every task, once. */
export interface SnapshotMessage {
  readonly workflow: string;
  readonly store: string;
  /** the number of the last change folded in (deltas after it follow) */
  readonly seq: number;
  /** the server's clock when read (ms since the epoch) */
  readonly now: number;
  readonly tasks: readonly TaskRow[];
}

/** Each later message: only the tasks that changed since the previous one, and the ids of those that went away. */
export interface DeltaMessage {
  readonly seq: number;
  readonly now: number;
  readonly tasks: readonly TaskRow[];
  readonly removed: readonly string[];
}

/** The last lines of one output file of the task's last attempt. */
export interface OutputTail {
  readonly stream: 'stdout' | 'stderr';
  readonly file: string;
  readonly text: string;
  /** the file's size in bytes: more than the tail when the tail is cut */
  readonly size: number;
}

/** `GET /api/task/<id>`: everything the task's page shows. */
export interface TaskDetail {
  readonly row: TaskRow;
  readonly args: readonly unknown[];
  readonly requirements: TaskRequirements;
  readonly key?: string;
  readonly parent?: string;
  readonly error?: RecordedError;
  readonly artifacts?: Readonly<Record<string, string>>;
  /** the result as JSON, cut to a few KiB (`resultCut` says whether it was) */
  readonly result?: string;
  readonly resultCut?: boolean;
  /** the attempt whose output is shown, and its stdout and stderr tails (executables only) */
  readonly outputAttempt?: number;
  readonly output: readonly OutputTail[];
  /** the tasks that take this one as input */
  readonly downstream: readonly string[];
}

/** Where the page reads from. */
export const ROUTES = {
  events: '/api/events',
  task: '/api/task/',
} as const;
