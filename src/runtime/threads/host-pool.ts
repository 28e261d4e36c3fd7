/**
 * The `threads()` pool of a remote task host (`remote/host.ts`: `scalems worker`, a Slurm agent): an executor of
 * `cores` threads over the task modules, with no workflow (the driver has it), for the host to run function tasks on.
 */
import type { BackendExecutor } from '../backend';
import { NO_WORKFLOW } from '../remote/host';
import { threads } from './index';

export const hostPool =
  (name: string) =>
  (modules: readonly string[], cores: number): BackendExecutor =>
    threads({ modules, maxThreads: cores }).open({ cores }, { workflow: NO_WORKFLOW, executorId: name });
