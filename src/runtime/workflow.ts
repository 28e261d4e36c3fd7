/**
 * The public `Workflow`: the task graph of `store/graph.ts` (records, edges, labels as one immer state
 * stream, persisted), plus what the runtime adds to it: the executors open on it in this process, and
 * the submission of raw task descriptions to one of them. `openWorkflow` opens one on a store.
 */
import type { Observable } from 'rxjs';
import { InvalidOptionsError, InvalidTaskDescriptionError, TaskCancelledError } from '../errors';
import { ambient } from '../context/ambient';
import { memoryStore } from '../store/memory';
import { TaskGraph } from '../store/graph';
import { checkTaskRecord } from '../store/record-check';
import { TASK_KEY_PREFIX } from '../store/slot';
import type { TaskRecord } from '../store/state';
import { WORKFLOW_KEY, workflowNameIn, type Store } from '../store/store';
import { decodeDescription } from '../task/description';
import type { TaskSpec } from '../task/spec';
import type { Task } from './task';
import { TaskEntry } from './entry';
import { TaskEvents, type TaskEvent } from './events';
import { isLogLevel, LOG_LEVELS, Logger, type LogOptions } from './log';
import { checkOptions, type RulesOf } from '../task/options';
import { isPlainObject, show } from '../task/requirements';
import { logEvents } from './event-log';
import { UnobservedFailures } from './unobserved';

export interface OpenWorkflowOptions {
  /**
   * Where records are persisted.
   * @default memoryStore() in a browser; on Node a SQLite file, `.scalems/<name>/state.sqlite`
   */
  readonly store?: Store;
  /**
   * The workflow's name: its directory under `.scalems/` on Node.
   * @default "default"
   */
  readonly name?: string;
  /**
   * Logs what happens to the workflow's tasks, executors and store: a level (`'debug'`, `'info'`, `'warn'`,
   * `'error'`, `'off'`), or `{ level, sink }` to send the lines elsewhere.
   * @default the environment's `SCALEMS_LOG` (or `DEBUG=scalems:*`: `'debug'`); without it, `'off'`
   */
  readonly log?: LogOptions;
}

/** @internal what `submitDescription` needs of an executor */
export interface DescriptionTarget {
  readonly name: string;
  readonly isShutdown: boolean;
  submitSpec(spec: TaskSpec, options: { pinned: boolean }): Task<unknown>;
  shutdown(options: { wait?: boolean }): Promise<void>;
}

/**
 * One workflow: its task graph as an immer state stream (`state$`), persisted to its store, and the
 * executors open on it in this process. Made by `openWorkflow()`.
 */
export class Workflow extends TaskGraph {
  /** @internal executors open on this workflow in this process, by name */
  readonly executors = new Map<string, DescriptionTarget>();
  /**
   * @internal the runtimes launched on this workflow and not shut down: `close()` shuts them down (their backends'
   * processes, pools, allocations would serve nothing any more)
   */
  readonly runtimes = new Set<{ shutdown(): Promise<void> }>();
  /** @internal the workflow's logger (off unless the environment or `openWorkflow({ log })` says otherwise) */
  readonly log: Logger;
  /** @internal failures nobody received, reported once */
  readonly unobserved: UnobservedFailures;
  private taskEvents: TaskEvents | undefined;
  /** the last store write problem logged (each is logged once, until a write succeeds) */
  private writeProblem: string | undefined;

  /** @internal made by `openWorkflow()` */
  constructor(name: string, store: Store, restored: readonly TaskRecord[] = [], log?: LogOptions) {
    super(name, store, restored);
    this.log = new Logger(`workflow ${name}`, log);
    this.unobserved = new UnobservedFailures(this);
    if (this.log.enabled('warn')) logEvents(this.events$, this.log);
    this.log.info(`opened on ${store.description} with ${restored.length} task records`);
  }

  /**
   * Every task event of this workflow from now on, in the order the changes were made (several per commit are
   * emitted in order, after the commit that recorded them): \`submitted\`, \`started\`, \`retrying\`, \`succeeded\`,
   * \`failed\`, \`cancelled\`, each with the task's id, label, name, executor, attempt and time (\`workflow.now()\`).
   * Completes when the workflow closes. Nothing is recorded while nobody subscribes.
   *
   * ## Example
   * \`\`\`ts
   * wf.events$.pipe(filter((e) => e.type === 'failed')).subscribe((e) => console.log(e.id, e.error.message));
   * \`\`\`
   */
  get events$(): Observable<TaskEvent> {
    return (this.taskEvents ??= new TaskEvents(this)).events$;
  }

  /** Resolves once every committed change has been written to the store (rejects if a write failed). */
  override async flushed(): Promise<void> {
    try {
      await super.flushed();
      this.writeProblem = undefined;
    } catch (error) {
      const problem = error instanceof Error ? error.message : String(error);
      if (problem !== this.writeProblem) {
        this.writeProblem = problem;
        this.log.error(`writing to its store failed (records are kept and written again): ${problem}`);
      }
      throw error;
    }
  }

  /**
   * Low-level submission of a raw task description (JSON, e.g. read from a file or a queue), validated
   * first: a bad field throws `InvalidTaskDescriptionError` naming its path and the expected type. It
   * runs on the executor the description names, else the ambient one (`withExecutor`), else the only
   * executor open on this workflow.
   */
  submitDescription(json: unknown): Task<unknown> {
    this.assertOpen(); // (before: "no executor is open", whose advice then met StoreClosedError)
    const { spec, executor } = decodeDescription(json);
    return this.describedTarget(executor).submitSpec(spec, { pinned: true });
  }

  /** @internal every task's slot is its entry: what this process knows of the task (see `TaskEntry`) */
  protected override newSlot(id: string, index: number): TaskEntry {
    return new TaskEntry(id, index);
  }

  /** @internal A task of an earlier run that this process has not submitted gives its label to a new one. */
  protected override supersedes(holder: string): boolean {
    return (this.slot(holder) as TaskEntry).handle === undefined;
  }

  /**
   * Closes the workflow: the tasks of this process still running or waiting are cancelled (they reject with
   * `TaskCancelledError` and are recorded cancelled, so that a resume runs them again), its executors are shut
   * down, and the runtimes launched on it too (their spawners, threads, allocations), everything is committed and
   * written, then the store is closed. Await the tasks first to keep their results. Task handles keep their last
   * state.
   *
   * If the last write fails (a full disk: `StoreWriteError`), it rejects, and the store stays open with the
   * records kept: nothing more can be submitted, and `close()` again writes them, then closes the store.
   */
  override close(): Promise<void> {
    this.closing ??= this.cancelAndClose().catch((error: unknown) => {
      this.closing = undefined; // the next close() tries the write again
      throw error;
    });
    return this.closing;
  }

  private closing: Promise<void> | undefined;

  private async cancelAndClose(): Promise<void> {
    const open: TaskEntry[] = [];
    for (const slot of this.allSlots()) {
      const entry = slot as TaskEntry;
      if (entry.open && entry.owner !== undefined) open.push(entry);
    }
    // the waiting ones first: cancelling a running one frees resources a waiting one would be started on
    const running = (e: TaskEntry): number => Number(e.record?.state === 'running');
    open.sort((a, b) => running(a) - running(b));
    for (const entry of open) {
      const rec = entry.record;
      entry.owner!.cancelTask(
        entry,
        new TaskCancelledError(
          `task ${rec?.label ?? rec?.name ?? ''} (${entry.id}) was cancelled: workflow "${this.name}" was closed ` +
            `while it ${rec?.state === 'running' ? 'ran' : 'waited'}; a resume runs it again`,
        ),
      );
    }
    const stopping = [...this.executors.values()].map((ex) => ex.shutdown({ wait: true }));
    // commits the cancellations, which settles the executors' bookkeeping: then they drain (writing may fail: the
    // executors drain all the same, then the write is tried once more, by super.close())
    this.flush();
    await Promise.all(stopping);
    await Promise.all([...this.runtimes].map((rt) => rt.shutdown()));
    await super.close(); // rejects if the records cannot be written: the store stays open, and this is called again
    storesInUse.delete(this.store);
    this.taskEvents?.complete();
    this.log.info('closed');
  }

  private describedTarget(named: string | undefined): DescriptionTarget {
    const open = [...this.executors.values()].filter((e) => !e.isShutdown);
    const list = open.map((e) => e.name).join(', ');
    if (named !== undefined) {
      const target = this.executors.get(named);
      if (target === undefined) {
        throw new InvalidTaskDescriptionError(
          `description.executor: no executor named "${named}" is open on workflow "${this.name}" ` +
            `(open: ${list || 'none'})`,
        );
      }
      return target;
    }
    const ambientExecutor = ambient().executor as DescriptionTarget | undefined;
    if (ambientExecutor !== undefined && [...this.executors.values()].includes(ambientExecutor)) return ambientExecutor;
    if (open.length === 1) return open[0]!;
    throw new InvalidTaskDescriptionError(
      open.length === 0
        ? `no executor is open on workflow "${this.name}": open one with executor(launch(workflow, backend)) ` +
            `before submitting descriptions`
        : `description.executor is needed: several executors are open on workflow "${this.name}" (${list})`,
    );
  }
}

/** The stores of the workflows open in this process, with each one's name. */
const storesInUse = new WeakMap<Store, string>();

/** Opens (or reopens, restoring every record) a workflow on a store. */
export async function openWorkflow(options: OpenWorkflowOptions = {}): Promise<Workflow> {
  // a misspelt `store` fell back to the default store: on Node, a SQLite file on disk
  checkOptions('openWorkflow', options, OPEN_WORKFLOW_OPTIONS);
  const name = options.name === undefined ? 'default' : options.name;
  checkWorkflowName(name);
  const store = options.store ?? (await defaultStoreFactory(name));
  const holder = storesInUse.get(store);
  if (holder !== undefined)
    throw new InvalidOptionsError(
      `openWorkflow: options.store is the store of workflow "${holder}", which is open in this process: a store ` +
        'holds one workflow at a time (two would run each other’s tasks again, and the first to close would close ' +
        'it under the other). Close that workflow first, or give this one a store of its own.',
    );
  storesInUse.set(store, name);
  const records: TaskRecord[] = [];
  let recordedName: string | undefined;
  try {
    for (const [key, value] of await store.entries<unknown>()) {
      if (key === WORKFLOW_KEY) recordedName = workflowNameIn(value);
      if (!key.startsWith(TASK_KEY_PREFIX)) continue;
      checkTaskRecord(store.description, key, value);
      records.push(value);
    }
  } catch (error) {
    // a damaged store: nothing was changed; the workflow owned the store, so it releases it (and its lock)
    storesInUse.delete(store);
    await store.close().catch(() => undefined);
    throw error;
  }
  // the name it is opened with, for `scalems status` (a store may live anywhere, under any directory name)
  try {
    if (recordedName !== name) await store.set(WORKFLOW_KEY, { name });
  } catch (error) {
    storesInUse.delete(store);
    throw error;
  }
  return new Workflow(name, store, records, options.log);
}

const STORE_METHODS = ['get', 'set', 'setMany', 'del', 'keys', 'entries', 'close'] as const;

const OPEN_WORKFLOW_OPTIONS = {
  store: {
    allowed: 'a Store (memoryStore(), sqliteStore(path), idbStore(name))',
    ok: (v: unknown) =>
      typeof v === 'object' &&
      v !== null &&
      STORE_METHODS.every((m) => typeof (v as Record<string, unknown>)[m] === 'function'),
  },
  // checked by checkWorkflowName, whose messages say what is wrong with it
  name: { allowed: 'a workflow name', ok: () => true },
  log: {
    allowed: `a level (${LOG_LEVELS.map((l) => `'${l}'`).join(', ')}) or { level, sink? } (sink: a function)`,
    ok: (v: unknown) =>
      isLogLevel(v) ||
      (isPlainObject(v) &&
        Object.keys(v).every((k) => k === 'level' || k === 'sink') &&
        isLogLevel(v.level) &&
        (v.sink === undefined || typeof v.sink === 'function')),
  },
} satisfies RulesOf<OpenWorkflowOptions>;

/** The longest workflow name: it names a directory, and file systems allow 255 bytes per name. */
const MAX_NAME_LENGTH = 200;

/**
 * @internal Throws `InvalidOptionsError` unless `name` can be a workflow's name, which names its directory
 * (`.scalems/<name>/` on Node) wherever the workflow is opened: letters, digits, ".", "_" and "-", not "." or "..".
 */
export function checkWorkflowName(name: unknown, call = 'openWorkflow({ name })'): asserts name is string {
  const problem = workflowNameProblem(name);
  if (problem === undefined) return;
  const shown = typeof name === 'string' ? JSON.stringify(name.length > 60 ? `${name.slice(0, 60)}…` : name) : '';
  throw new InvalidOptionsError(`${call}: ${shown || show(name)} is not a workflow name: ${problem}`);
}

function workflowNameProblem(name: unknown): string | undefined {
  if (typeof name !== 'string') return `expected a string, got ${typeof name}`;
  if (name.length === 0) return 'it is empty';
  if (name.length > MAX_NAME_LENGTH) return `it is longer than ${MAX_NAME_LENGTH} characters`;
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === '.' || name === '..')
    return 'it names a directory: use letters, digits, ".", "_" and "-" (not "." or "..")';
  return undefined;
}

let defaultStoreFactory: (name: string) => Store | Promise<Store> = () => memoryStore();

/** @internal The Node entry point makes a SQLite file the default store. */
export function setDefaultStoreFactory(factory: (name: string) => Store | Promise<Store>): void {
  defaultStoreFactory = factory;
}
