/**
 * `workflow.events$`: a typed stream of task events (submitted, started, retrying, succeeded, failed, cancelled),
 * made of the state transitions the reducer records while somebody listens (`TaskGraph.tapTransitions`).
 */
import { Observable, Subject } from 'rxjs';
import type { RecordedError } from '../recorded-error';
import type { TaskGraph, Transition } from '../store/graph';

/** What every task event says. */
interface TaskEventBase {
  /** the task's id */
  readonly id: string;
  /** its label, if it has one */
  readonly label?: string;
  /** its function's (or program's) name */
  readonly name: string;
  readonly kind: 'function' | 'executable';
  /** the id of the executor it was submitted to (`executor-<n>`) */
  readonly executor?: string;
  /** the worker group of that executor its last attempt started on, when the executor has several groups */
  readonly group?: string;
  /** the task's attempts so far: 0 until it first starts, then 1, and 2 from its first retry on */
  readonly attempt: number;
  /** when it happened: milliseconds on the scheduler's clock (`workflow.now()`; virtual in marble tests) */
  readonly time: number;
}

/**
 * One change in a task's life, as `workflow.events$` emits it. `type` tells which; `retrying`, `failed` and
 * `cancelled` carry the error as recorded data (`RecordedError`: name, code, message, details, stack).
 */
export type TaskEvent =
  /** submitted to an executor (again, for a failed task run again) */
  | (TaskEventBase & { readonly type: 'submitted' })
  /** an attempt started (`attempt` is its number) */
  | (TaskEventBase & { readonly type: 'started' })
  /** an attempt failed and the task will be tried again; `duration`: how long that attempt ran (ms) */
  | (TaskEventBase & { readonly type: 'retrying'; readonly duration: number; readonly error: RecordedError })
  /** `duration`: how long the last attempt ran (ms) */
  | (TaskEventBase & { readonly type: 'succeeded'; readonly duration: number })
  /**
   * failed for good (its retries spent, or an input failed: `UpstreamFailedError`); `duration`: how long its last
   * attempt ran, absent when it never started
   */
  | (TaskEventBase & { readonly type: 'failed'; readonly duration?: number; readonly error: RecordedError })
  /** cancelled; `duration`: how long it had been running, absent when it was cancelled before it started */
  | (TaskEventBase & { readonly type: 'cancelled'; readonly duration?: number; readonly error: RecordedError });

/** The names of the events, in the order of a task's life. */
export type TaskEventType = TaskEvent['type'];

const NO_ERROR: RecordedError = { name: 'Error', message: '(no error recorded)' };

/** The event a transition makes, if it makes one (becoming `ready` after its inputs, or `new` on restore, does not). */
export function eventOf(t: Transition): TaskEvent | undefined {
  if (t.cause === 'restore') return undefined;
  const rec = t.record;
  const base = {
    id: rec.id,
    ...(rec.label === undefined ? {} : { label: rec.label }),
    name: rec.name,
    kind: rec.kind,
    ...(rec.executor === undefined ? {} : { executor: rec.executor }),
    ...(rec.group === undefined ? {} : { group: rec.group }),
    attempt: rec.attempts,
  };
  const ran = (time: number): number | undefined =>
    t.from === 'running' && rec.startedAt !== undefined ? time - rec.startedAt : undefined;
  switch (t.to) {
    case 'submitted':
      return { type: 'submitted', ...base, time: rec.submittedAt ?? 0 };
    case 'running':
      return { type: 'started', ...base, time: rec.startedAt ?? 0 };
    case 'ready': {
      if (t.cause !== 'retry') return undefined;
      const time = rec.readyAt ?? 0;
      return { type: 'retrying', ...base, time, duration: ran(time) ?? 0, error: rec.error ?? NO_ERROR };
    }
    case 'succeeded': {
      const time = rec.finishedAt ?? 0;
      return { type: 'succeeded', ...base, time, duration: ran(time) ?? 0 };
    }
    case 'failed':
    case 'cancelled': {
      const time = rec.finishedAt ?? 0;
      const duration = ran(time);
      return {
        type: t.to,
        ...base,
        time,
        ...(duration === undefined ? {} : { duration }),
        error: rec.error ?? NO_ERROR,
      };
    }
    default:
      return undefined;
  }
}

/**
 * The stream of a workflow's task events. Transitions are recorded only while it has subscribers: with none, a
 * change costs the reducer one test, and no event object is made.
 */
export class TaskEvents {
  private readonly subject = new Subject<TaskEvent>();
  private observers = 0;
  /** the one observable of the workflow (`workflow.events$`) */
  readonly events$: Observable<TaskEvent>;

  constructor(private readonly graph: TaskGraph) {
    const publish = (transitions: readonly Transition[]): void => {
      for (const t of transitions) {
        const event = eventOf(t);
        if (event !== undefined) this.subject.next(event);
      }
    };
    this.events$ = new Observable<TaskEvent>((subscriber) => {
      if (this.observers++ === 0) this.graph.tapTransitions(publish);
      const sub = this.subject.subscribe(subscriber);
      return () => {
        sub.unsubscribe();
        if (--this.observers === 0) this.graph.tapTransitions(undefined);
      };
    });
  }

  /** Ends the stream (the workflow closed). */
  complete(): void {
    this.subject.complete();
  }
}
