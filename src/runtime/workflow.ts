/**
 * The public `Workflow`: the task graph of `store/graph.ts` (records, edges, labels as one immer state
 * stream, persisted), plus what the runtime adds to it: the executors open on it in this process, and
 * the submission of raw task descriptions to one of them. `openWorkflow` opens one on a store.
 */
import { InvalidTaskDescriptionError } from '../errors';
import { ambient } from '../context/ambient';
import { memoryStore } from '../store/memory';
import { TaskGraph } from '../store/graph';
import { TASK_KEY_PREFIX } from '../store/slot';
import type { TaskRecord } from '../store/state';
import type { Store } from '../store/store';
import { decodeDescription } from '../task/description';
import type { TaskSpec } from '../task/spec';
import type { Task } from './task';

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
}

/** @internal what `submitDescription` needs of an executor */
export interface DescriptionTarget {
  readonly name: string;
  readonly isShutdown: boolean;
  submitSpec(spec: TaskSpec, options: { pinned: boolean }): Task<unknown>;
}

/**
 * One workflow: its task graph as an immer state stream (`state$`), persisted to its store, and the
 * executors open on it in this process. Made by `openWorkflow()`.
 */
export class Workflow extends TaskGraph {
  /** @internal executors open on this workflow in this process, by name */
  readonly executors = new Map<string, DescriptionTarget>();

  /**
   * Low-level submission of a raw task description (JSON, e.g. read from a file or a queue), validated
   * first: a bad field throws `InvalidTaskDescriptionError` naming its path and the expected type. It
   * runs on the executor the description names, else the ambient one (`withExecutor`), else the only
   * executor open on this workflow.
   */
  submitDescription(json: unknown): Task<unknown> {
    const { spec, executor } = decodeDescription(json);
    return this.describedTarget(executor).submitSpec(spec, { pinned: true });
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

/** Opens (or reopens, restoring every record) a workflow on a store. */
export async function openWorkflow(options: OpenWorkflowOptions = {}): Promise<Workflow> {
  const name = options.name ?? 'default';
  const store = options.store ?? (await defaultStoreFactory(name));
  const records: TaskRecord[] = [];
  for (const [key, value] of await store.entries<TaskRecord>()) {
    if (key.startsWith(TASK_KEY_PREFIX)) records.push(value);
  }
  return new Workflow(name, store, records);
}

let defaultStoreFactory: (name: string) => Store | Promise<Store> = () => memoryStore();

/** @internal The Node entry point makes a SQLite file the default store. */
export function setDefaultStoreFactory(factory: (name: string) => Store | Promise<Store>): void {
  defaultStoreFactory = factory;
}
