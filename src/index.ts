// scalems: the core entry point. It imports nothing from Node, so that it bundles for a browser;
// Node-only parts (SQLite store, threads, processes, Slurm, BullMQ) are in `scalems/node`.
export * from './errors';
export { call, defineTask, lookupTask, type AnyFunction, type DefinedTask, type TaskArg, type TaskArgs, type TaskSpec, type ResultOf } from './task/spec';
export {
  TaskRequirements,
  WorkerRequirements,
  validateTaskRequirements,
  validateWorkerRequirements,
  type RetryPolicy,
  type SlurmOptions,
} from './task/requirements';
export type { TaskRef } from './task/hash';
export type { Store } from './store/store';
export { memoryStore } from './store/memory';
export { idbStore, IDB_STORE_VERSION } from './store/idb';
export { Workflow, openWorkflow, type OpenWorkflowOptions } from './runtime/workflow';
export { TaskDescription, decodeDescription } from './task/description';
export { TASK_STATES, isFinal, taskByLabel, taskRecord, type TaskDescriptionFields, type TaskRecord, type TaskStateName, type WorkflowState } from './store/state';
export { emptyTable, tableEntries, tableGet, tableSize, tableValues, type Table } from './store/table';
export type { Backend, BackendExecutor, Capacity, Communicator, Job } from './runtime/backend';
export { Executor, type ExecutorOptions } from './runtime/executor';
export type { TaskContext } from './runtime/attempt';
export { Runtime, executor, launch } from './runtime/runtime';
export { inProcess, type InProcessOptions } from './runtime/in-process';
export { Task, type Settled } from './runtime/task';
export { currentTask, currentWorkflow, submit, withExecutor, withWorkflow } from './runtime/scope';
export { task } from './operators/task';
export { withRequirements } from './operators/with-requirements';
export { labelled } from './operators/labelled';
export { submitOn, type SubmitOnOptions } from './operators/submit-on';
export { executable, file, isFileRef, outputOf, type ExecutableOptions, type ExecutableResult, type FileRef, type InputSource, type OutputOf, type StdinSource } from './task/executable';
