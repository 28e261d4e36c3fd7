/**
 * scalems/node: Node-only parts. Importing it installs the AsyncLocalStorage context carrier.
 */
import { installNode } from './context';

installNode();

export { installNode, defaultStorePath, workflowDir } from './context';
export { sqliteStore, SQLITE_STORE_VERSION, type SqliteStoreOptions } from '../store/sqlite';
export { progress, progressLine, type Progress, type ProgressCounts, type ProgressOptions } from '../cli/progress';
export { processes, type ProcessesOptions } from '../runtime/processes';
export { readBytes, readText, type StagingMode } from '../runtime/executable/workdir';
export type { MpiOptions } from '../runtime/executable/mpi';
export { threads, type ThreadsOptions } from '../runtime/threads';
export { slurm, type SlurmBackendOptions } from '../runtime/slurm';
export { bullmq, type BullmqOptions } from '../runtime/bullmq';
export { ScalemsWorker, type ScalemsWorkerOptions } from '../runtime/bullmq/worker';
export type { RedisConnection } from '../runtime/bullmq/protocol';
