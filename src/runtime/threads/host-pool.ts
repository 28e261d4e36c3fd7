/**
 * The `threads()` pool of a remote task host (`remote/host.ts`: `scalems worker`, a Slurm agent): an executor of
 * `cores` threads over the task modules, with no workflow (the driver has it), for the host to run function tasks on.
 * `who` is the host as messages name it (a version that differs there says which worker to restart).
 */
import type { BackendExecutor } from '../backend';
import { NO_WORKFLOW } from '../remote/host';
import { threadsOf } from './index';
import type { ModuleDigests } from '../remote/modules';

export const hostPool =
  (name: string, who = name) =>
  (modules: readonly string[], cores: number, digests?: ModuleDigests): BackendExecutor =>
    threadsOf({ modules, maxThreads: cores }, digests, `a thread of ${who}`).open(
      { cores },
      { workflow: NO_WORKFLOW, executorId: name },
    );
