/**
 * Unobserved failures: a task that failed for good while nobody awaited it, subscribed to it, or awaited a task
 * that failed because of it is reported once (on Node a process warning, `SCALEMS_UNOBSERVED_FAILURE`; elsewhere
 * `console.warn`), never silently dropped, and never when somebody received the failure.
 */
import type { TaskGraph } from '../store/graph';
import type { TaskRecord } from '../store/state';
import type { TaskEntry } from './entry';
import { detached } from '../context/ambient';

export const UNOBSERVED_FAILURE = 'SCALEMS_UNOBSERVED_FAILURE';

const UPSTREAM_FAILED = 'UPSTREAM_FAILED';

/** Where reports go: a test may catch them. @default `process.emitWarning` on Node, else `console.warn` */
export type FailureReporter = (message: string, detail: string) => void;

interface Host {
  readonly process?: {
    emitWarning?(warning: string, options: { type?: string; code?: string; detail?: string }): void;
  };
  readonly console?: { warn?(...text: string[]): void };
}

const defaultReporter: FailureReporter = (message, detail) => {
  const host = globalThis as Host;
  if (typeof host.process?.emitWarning === 'function')
    host.process.emitWarning(message, { type: 'ScalemsWarning', code: UNOBSERVED_FAILURE, detail });
  else host.console?.warn?.(`${message}\n${detail}`);
};

/**
 * Follows the failures of one workflow. A failure is looked at in the turn after it was committed, so that an
 * `await` or `subscribe` made in the same turn counts; while somebody still holds the task (a pipeline that will
 * deliver it in order) it waits for the last holder to let go. Failures of tasks whose input failed in this process
 * (`UpstreamFailedError`) are never reported themselves: receiving one counts as receiving its root's, and the root
 * is reported once for all of them. Nor are those of a `submitOn` pipeline's members: the pipeline delivers them (it
 * lets go of a member when it settles, but may hold its failure until the members before it are done) or has ended
 * with an earlier failure.
 *
 * The cost: one test per settled task (is it failed?), and this bookkeeping only for failures.
 */
export class UnobservedFailures {
  /** failures waiting for their look, with the failed record they were noted with */
  private pending: Array<[TaskEntry, TaskRecord]> = [];
  private scheduled = false;
  /** failed records somebody received (directly, or through a dependent's UpstreamFailedError) */
  private readonly received = new WeakSet<TaskRecord>();
  /** failed records already reported, or found not to be roots */
  private readonly done = new WeakSet<TaskRecord>();
  /** tasks that failed in this process */
  private readonly failedHere = new WeakSet<object>();
  /** failures whose task was still held at their look: looked at again when the last holder lets go */
  private readonly held = new Map<TaskEntry, TaskRecord>();

  constructor(
    private readonly graph: TaskGraph,
    private readonly report: FailureReporter = defaultReporter,
  ) {}

  /** The task's failure (its committed, failed record) was committed. */
  failed(entry: TaskEntry, rec: TaskRecord): void {
    this.failedHere.add(entry);
    this.pending.push([entry, rec]);
    if (this.scheduled) return;
    this.scheduled = true;
    // a real timer even under a TestScheduler: after the turn the failure was committed in, outside its context
    detached(() =>
      setTimeout(() => {
        this.scheduled = false;
        const pending = this.pending;
        this.pending = [];
        for (const [e, r] of pending) this.look(e, r);
      }, 0),
    );
  }

  /** Somebody received the failure recorded as `rec` (a rejection, an error notification, `Settled`). */
  receivedBy(rec: TaskRecord): void {
    let r: TaskRecord | undefined = rec;
    while (r !== undefined && !this.received.has(r)) {
      this.received.add(r);
      const upstream: unknown = r.error?.code === UPSTREAM_FAILED ? r.error.details?.upstreamId : undefined;
      r = typeof upstream === 'string' ? this.graph.slot(upstream).committed : undefined;
      if (r !== undefined && r.state !== 'failed' && r.state !== 'cancelled') r = undefined;
    }
  }

  /** The last holder of a task let go. */
  released(entry: TaskEntry): void {
    if (this.held.size === 0) return;
    const rec = this.held.get(entry);
    if (rec === undefined) return;
    this.held.delete(entry);
    this.look(entry, rec);
  }

  private look(entry: TaskEntry, rec: TaskRecord): void {
    // run again since, received, or reported: nothing to say
    if (entry.committed !== rec || this.received.has(rec) || this.done.has(rec)) return;
    if (entry.interest > 0) {
      this.held.set(entry, rec);
      return;
    }
    this.done.add(rec);
    // a pipeline's member (`submitOn`, not submitted eagerly): the pipeline delivers its failure, in order, or has
    // ended with an earlier one that its subscriber received
    if (!entry.pinned || !this.isRoot(rec)) return;
    const error = rec.error;
    const first = error === undefined ? '(no error recorded)' : `${error.name}: ${error.message.split('\n')[0]}`;
    const label = rec.label === undefined ? '' : `"${rec.label}" `;
    this.report(
      `task ${label}(${rec.name}, ${rec.id}) of workflow "${this.graph.name}" failed and nobody awaited it: ${first}`,
      `Await the task, subscribe to it, or use submitOn(..., { settle: true }) to handle its failure. ` +
        `\`scalems status\` lists the failed tasks of a workflow on a SQLite store (\`--verbose\`: the whole ` +
        `error); workflow.state holds its record.`,
    );
  }

  /** Failed by itself, or because of an input that did not fail (or get cancelled) in this process. */
  private isRoot(rec: TaskRecord): boolean {
    if (rec.error?.code !== UPSTREAM_FAILED) return true;
    const upstream = rec.error.details?.upstreamId;
    if (typeof upstream !== 'string') return true;
    const slot = this.graph.slot(upstream);
    return !this.failedHere.has(slot) && slot.committed?.state !== 'cancelled';
  }
}
