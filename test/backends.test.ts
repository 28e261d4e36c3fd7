// Every backend passes one conformance suite (test/backend-conformance.ts): inProcess(), virtual() in
// real time, threads(), processes(), slurm() on the test cluster and bullmq() with `scalems worker`
// processes on the test Redis, each with both kinds of work; and processes() once more on executors of two worker
// groups (the suite's tasks pinned to one of them), and once more with its spawners forking with Node.
import { execFileSync } from 'node:child_process';
import { stat } from 'node:fs/promises';
import { join } from 'node:path';
import {
  UnregisteredFunctionError,
  UnsatisfiableRequirementsError,
  call,
  executable,
  inProcess,
  type TaskSpec,
} from 'scalems';
import { bullmq, processes, slurm, threads } from 'scalems/node';
import { virtual } from 'scalems/testing';
import { FORKER_VARIABLE } from '../src/runtime/executable/forker';
import { backendConformance, type Refusal } from './backend-conformance';
import { program } from './fixtures/conformance/programs';
import * as tasks from './fixtures/conformance/tasks';
import { executableKit, functionKit, virtualKit } from './support/backend-kits';
import { cleanPrefix, jobsIn, startWorker, uniquePrefix, type WorkerProcess } from './support/bullmq';
import { describeWithService } from './support/services';
import { childProcesses, osThreads, waitFor } from './support/work';

const MODULE = join(__dirname, 'fixtures', 'conformance', 'tasks.ts');

const refuse = {
  executable: {
    what: 'an executable',
    spec: (): TaskSpec => executable(program('square', 2)),
    error: UnsatisfiableRequirementsError,
  },
  closure: {
    what: 'a closure',
    spec: (): TaskSpec => {
      const offset = 1;
      return call((x: number) => x + offset, 1);
    },
    error: UnregisteredFunctionError,
  },
  definedFunction: {
    what: 'a defineTask function',
    spec: (): TaskSpec => call(tasks.square, 2),
    error: UnregisteredFunctionError,
  },
} satisfies Record<string, Refusal>;

// libuv starts its whole thread pool on first use: start it now, so that it does not count as threads a backend left
beforeAll(() => stat(__dirname));

/** Threads of this process beyond those it had before the backend (they end a little after the pool is destroyed). */
async function threadsLeft(before: number): Promise<string[]> {
  const extra = (): number => osThreads() - before;
  await waitFor(() => (extra() <= 0 ? true : undefined), 'the worker threads to end', 5000).catch(() => undefined);
  return extra() > 0 ? [`${extra()} threads more than before threads() was launched`] : [];
}

/**
 * Allocations of this process still in squeue (job names `scalems-<executor>-<pid>`), and salloc/srun processes still
 * running.
 */
async function slurmLeft(): Promise<string[]> {
  const jobs = execFileSync('squeue', ['-h', '-o', '%i %j %T'], { encoding: 'utf8' })
    .split('\n')
    .filter((line) => line.split(' ')[1]?.endsWith(`-${process.pid}`) === true);
  return [...jobs, ...childProcesses().filter((p) => p.endsWith(' salloc') || p.endsWith(' srun'))];
}

/** processes() rooted at `root`; left over: child processes of this one that were not there before. */
function processesBackend(root: string) {
  const before = new Set(childProcesses());
  return { backend: processes({ root }), leftovers: async () => childProcesses().filter((p) => !before.has(p)) };
}

backendConformance(
  'inProcess()',
  { closures: true, ranks: true, holdsStopped: false },
  {
    kit: functionKit({ walltime: 0.5 }),
    refuses: [refuse.executable],
    backend: () => ({ backend: inProcess() }),
  },
);

backendConformance(
  'virtual(), in real time',
  { closures: true, ranks: true, holdsStopped: false },
  {
    kit: virtualKit(),
    refuses: [refuse.executable],
    backend: () => ({ backend: virtual({ durations: tasks.virtualDuration }) }),
  },
);

backendConformance(
  'threads()',
  { closures: false, ranks: true, holdsStopped: true },
  {
    kit: functionKit({ walltime: 0.5 }),
    refuses: [refuse.executable, refuse.closure],
    backend: () => {
      const before = osThreads();
      return { backend: threads({ modules: [MODULE], maxThreads: 2 }), leftovers: () => threadsLeft(before) };
    },
  },
);

backendConformance(
  'processes()',
  { closures: false, ranks: true, holdsStopped: true },
  {
    kit: executableKit({ walltime: 1 }),
    refuses: [refuse.closure, refuse.definedFunction],
    backend: processesBackend,
  },
);

backendConformance(
  'processes(), on an executor of two worker groups (its tasks pinned to one)',
  { closures: false, ranks: true, holdsStopped: true },
  {
    kit: executableKit({ walltime: 1 }),
    refuses: [refuse.closure, refuse.definedFunction],
    groups: true,
    backend: processesBackend,
  },
);

// the spawners forking with Node, as where the native forker was not built (no C compiler, not Linux)
describe('with SCALEMS_FORKER=node', () => {
  beforeAll(() => (process.env[FORKER_VARIABLE] = 'node'));
  afterAll(() => delete process.env[FORKER_VARIABLE]);
  backendConformance(
    'processes(), its spawners forking with Node',
    { closures: false, ranks: true, holdsStopped: true },
    {
      kit: executableKit({ walltime: 1 }),
      refuses: [refuse.closure, refuse.definedFunction],
      backend: processesBackend,
    },
  );
});

/** An allocation may wait behind other jobs (another test file's, when jest runs files in parallel). */
const SLURM_TIMEOUT = 120_000;

describeWithService('slurm', 'slurm() on the test cluster', () => {
  // Each test's executor holds an allocation of up to 2 CPUs: tests run one at a time, each released before the next.
  // With agents (the default), all behaviours, with programs and with functions (on the agents' threads), and with
  // programs on agents started without modules (which hold their cores in their spawners). With one job step per
  // attempt: all behaviours with programs; with functions (each step starts the scalems-task entry point, ~0.5 s of
  // CPU here), those in which the scalems-task runner differs from a program: its errors, cancellation through the
  // task's signal, currentTask().
  backendConformance(
    'slurm(), executables on the agents',
    { closures: false, ranks: true, holdsStopped: true },
    {
      kit: executableKit({ walltime: 1 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: slurm({ modules: [MODULE], root }), leftovers: slurmLeft }),
      timeout: SLURM_TIMEOUT,
    },
  );

  // an agent without modules runs programs only, and holds its cores in its spawners (remote/host.ts)
  backendConformance(
    'slurm() without modules, executables on the agents',
    { closures: false, ranks: true, holdsStopped: true },
    {
      kit: executableKit({ walltime: 1 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: slurm({ root }), leftovers: slurmLeft }),
      timeout: SLURM_TIMEOUT,
    },
  );

  backendConformance(
    'slurm(), functions on the agents',
    { closures: false, ranks: true, holdsStopped: true },
    {
      kit: functionKit({ walltime: 1 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: slurm({ modules: [MODULE], root }), leftovers: slurmLeft }),
      timeout: SLURM_TIMEOUT,
    },
  );

  backendConformance(
    "slurm({ mode: 'steps' }), executables as job steps",
    { closures: false, ranks: true, holdsStopped: true },
    {
      kit: executableKit({ walltime: 1.5 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: slurm({ modules: [MODULE], root, mode: 'steps' }), leftovers: slurmLeft }),
      timeout: SLURM_TIMEOUT,
    },
  );

  backendConformance(
    "slurm({ mode: 'steps' }), functions through scalems-task",
    { closures: false, ranks: false, holdsStopped: true },
    {
      kit: functionKit({ walltime: 3, processPerTask: true }),
      refuses: [refuse.closure],
      behaviours: ['failures', 'cancellation', 'context'],
      backend: (root) => ({ backend: slurm({ modules: [MODULE], root, mode: 'steps' }), leftovers: slurmLeft }),
      timeout: SLURM_TIMEOUT,
    },
  );
});

describeWithService('redis', 'bullmq() with two scalems worker processes on the test Redis', () => {
  // Two workers of 2 cores each serve one prefix of this file's own. An executor of 1 or 2 cores keeps as
  // many tasks in flight, so the suite's checks of capacity hold across the two workers.
  const prefix = uniquePrefix('conformance');
  let workers: WorkerProcess[] = [];
  beforeAll(async () => {
    workers = await Promise.all([
      ...['a', 'b'].map((n) => startWorker({ prefix, name: `conformance-${n}`, cores: 2, modules: [MODULE] })),
      // the same, with functions on the worker's event loop (--inline), on a queue of its own
      startWorker({
        prefix,
        name: 'conformance-inline',
        cores: 2,
        modules: [MODULE],
        extra: ['--inline', '--queue', 'inline'],
      }),
    ]);
  }, 60_000);
  afterAll(async () => {
    await Promise.all(workers.map((w) => w.stop()));
    await cleanPrefix(prefix);
  }, 60_000);

  /** Jobs still running or waiting on the prefix (the work has been seen to stop: its job ends just after). */
  async function jobsLeft(): Promise<string[]> {
    const deadline = Date.now() + 5000;
    for (;;) {
      const left = [
        ...(await jobsIn(prefix, ['active', 'waiting'])),
        ...(await jobsIn(prefix, ['active', 'waiting'], 'inline')),
      ];
      if (left.length === 0 || Date.now() > deadline) return left;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  backendConformance(
    'bullmq(), functions on scalems workers',
    { closures: false, ranks: true, holdsStopped: 'walltime' },
    {
      kit: functionKit({ walltime: 1 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: bullmq({ prefix, root }), leftovers: jobsLeft }),
    },
  );

  backendConformance(
    'bullmq(), functions inline on a scalems worker (--inline)',
    { closures: false, ranks: false, holdsStopped: false },
    {
      kit: functionKit({ walltime: 1 }),
      refuses: [refuse.closure],
      // where running on the worker's event loop differs from running on its threads
      behaviours: ['results', 'failures', 'cancellation', 'walltime', 'context'],
      backend: (root) => ({ backend: bullmq({ prefix, queue: 'inline', root }), leftovers: jobsLeft }),
    },
  );

  backendConformance(
    'bullmq(), executables on scalems workers',
    { closures: false, ranks: true, holdsStopped: 'walltime' },
    {
      kit: executableKit({ walltime: 1.5 }),
      refuses: [refuse.closure],
      backend: (root) => ({ backend: bullmq({ prefix, root }), leftovers: jobsLeft }),
    },
  );
});
