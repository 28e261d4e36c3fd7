/**
 * `scalems`: the core entry point. It imports nothing from Node, so that it bundles for a browser;
 * the Node-only parts (SQLite store, threads, processes, Slurm) are in `scalems/node`, the virtual-time
 * backend for marble tests in `scalems/testing`.
 */

/* Defining tasks */
export {
  call,
  defineTask,
  lookupTask,
  type AnyFunction,
  type DefineTaskOptions,
  type DefinedTask,
  type ResultOf,
  type TaskArg,
  type TaskArgs,
  type TaskSpec,
} from './task/spec';
export {
  executable,
  file,
  isFileRef,
  outputOf,
  type ExecutableOptions,
  type ExecutableResult,
  type FileRef,
  type InputSource,
  type OutputOf,
  type StdinSource,
} from './task/executable';
export {
  TaskRequirements,
  WorkerRequirements,
  validateTaskRequirements,
  validateWorkerRequirements,
  type RetryPolicy,
  type SlurmOptions,
} from './task/requirements';
export { TaskDescription, decodeDescription } from './task/description';
export type { TaskRef } from './task/hash';

/* Operators */
export { task } from './operators/task';
export { withRequirements } from './operators/with-requirements';
export { labelled } from './operators/labelled';
export {
  submitOn,
  type SubmitInput,
  type SubmitOnOptions,
  type SubmitOutput,
  type SubmitResult,
} from './operators/submit-on';

/* Workflows, runtimes, executors and tasks */
export { Workflow, openWorkflow, type OpenWorkflowOptions } from './runtime/workflow';
export { Runtime, executor, launch } from './runtime/runtime';
export { Executor, type ExecutorOptions } from './runtime/executor';
export type { WorkerGroup } from './runtime/groups';
export { Task, type Settled } from './runtime/task';
export type { TaskContext } from './runtime/attempt';
export { currentTask, currentWorkflow, submit, withExecutor, withWorkflow } from './runtime/scope';

/* Seeing a workflow run: task events (`workflow.events$`), the logger, unobserved failures */
export type { TaskEvent, TaskEventType } from './runtime/events';
export type { LogLevel, LogOptions, LogSink } from './runtime/log';
export { UNOBSERVED_FAILURE } from './runtime/unobserved';

/* Workflow state, as `workflow.state$` emits it */
export {
  TASK_STATES,
  isFinal,
  taskByLabel,
  type TaskDescriptionFields,
  type TaskRecord,
  type TaskStateName,
  type WorkflowState,
} from './store/state';
export type { Table } from './store/table';
export type { RecordedError } from './recorded-error';

/* Stores */
export type { Store } from './store/store';
export { memoryStore } from './store/memory';
export { idbStore, IDB_STORE_VERSION, type IdbStoreOptions } from './store/idb';

/* Backends (Node-only ones in `scalems/node`) */
export { inProcess, type InProcessOptions } from './runtime/in-process';

/* Backend interface: what a backend implements */
export type { Backend, BackendExecutor, Capacity, Communicator, Job } from './runtime/backend';

/* Errors: every error scalems raises on purpose is a ScalemsError with a stable `code` */
export * from './errors';
