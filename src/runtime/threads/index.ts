/**
 * `threads()`: `defineTask` functions of registered modules on worker threads, a piscina pool per
 * executor (main side; the worker is `worker.ts`, both on the remote runner's wire and protocol).
 */
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { BroadcastChannel, MessageChannel, type MessagePort } from 'node:worker_threads';
import type Piscina from 'piscina';
import { Observable } from 'rxjs';
import { UnsatisfiableRequirementsError, UnserializableValueError, WorkerCrashedError } from '../../errors';
import { optionalDependency } from '../../optional-dependency';
import { recordError, reviveError } from '../../recorded-error';
import type { TaskSpec } from '../../task/spec';
import { refuseExecutables, type Backend, type BackendExecutor, type Job } from '../backend';
import { checkOptions, rules, type RulesOf } from '../options';
import { acceptFunction, type RemoteFunctions } from '../remote/accept';
import { loaderArgs, probeModules, resolveModules } from '../remote/modules';
import { structuredCloneWire } from '../remote/wire';
import {
  Ring,
  markAborted,
  type AbortAnnouncement,
  type ThreadRequest,
  type ThreadResponse,
  type ThreadWorkerData,
} from './protocol';

export interface ThreadsOptions {
  /**
   * Modules that define the tasks with `defineTask(name, fn)` (and export them): absolute paths, or
   * relative to `process.cwd()`. Every worker thread loads them all; tasks are found by name.
   * `.ts` modules are loaded through tsx (which must be installed); `.mjs` modules through `import()`.
   */
  readonly modules: readonly string[];
  /**
   * Threads of each executor's pool, and so the most cores an executor can have.
   * @default os.availableParallelism()
   */
  readonly maxThreads?: number;
  /**
   * Milliseconds a cancelled (or timed-out) task has to return once its `currentTask().signal` has
   * aborted, before its thread is terminated (and replaced).
   * @default 1000
   */
  readonly cancelGraceMs?: number;
}

let backends = 0;
/** run keys stay below 2^30: they are kept in Int32Arrays */
const KEY_WRAP = 2 ** 30;

const THREADS_OPTIONS = {
  modules: rules.strings('a non-empty array of module paths (absolute, or relative to process.cwd())'),
  maxThreads: rules.positiveInteger,
  cancelGraceMs: {
    allowed: 'a non-negative number of milliseconds',
    ok: (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0,
  },
} satisfies RulesOf<ThreadsOptions>;

/**
 * Runs `defineTask` functions of the given modules on worker threads (a piscina pool per executor).
 * Closures cannot be sent to a thread: they are refused at submit. Arguments and results cross by
 * structured clone. A function task with `ranks > 1` runs on `ranks` threads at once and talks through
 * `currentTask().comm`; its result is rank 0's.
 *
 * ## Example
 * ```ts
 * // tasks.ts: export const energy = defineTask('energy', (conf: Conformer) => ...);
 * const rt = launch(wf, threads({ modules: ['./tasks.ts'], maxThreads: 8 }));
 * await using pool = executor(rt);
 * const energies = await lastValueFrom(from(conformers).pipe(submitOn(pool, energy), toArray()));
 * ```
 */
export function threads(options: ThreadsOptions): Backend {
  checkOptions('threads', options, THREADS_OPTIONS);
  const Pool = piscina();
  const modules = resolveModules(options.modules, 'threads');
  const maxThreads = options.maxThreads ?? availableParallelism();
  const grace = options.cancelGraceMs ?? 1000;
  const workerFile = join(__dirname, `worker${extname(__filename)}`);
  const execArgv = [
    ...(process.execArgv.includes('--enable-source-maps') ? ['--enable-source-maps'] : []),
    ...loaderArgs([workerFile, ...modules], 'threads', 'worker threads'),
  ];
  const remote: RemoteFunctions = {
    backend: 'threads',
    where: 'a worker thread',
    modules,
    defined: probeModules(modules, 'threads'),
    wire: structuredCloneWire,
  };
  const channelName = `scalems-threads-${process.pid}-${++backends}-${Math.random().toString(36).slice(2)}`;
  let channel: BroadcastChannel | undefined;
  let runs = 0;
  const workerData: ThreadWorkerData = { modules, channel: channelName, aborts: Ring.create(), placed: Ring.create() };

  /** Tells the workers to abort a run through its signal. */
  const announce = (key: number, reason: unknown): void => {
    if (channel === undefined) {
      channel = new BroadcastChannel(channelName);
      channel.unref();
    }
    markAborted(workerData.aborts, key, reason);
    channel.postMessage({ key, reason: recordError(reason) } satisfies AbortAnnouncement);
  };

  const refuseExecutable = refuseExecutables('threads');
  const accept = (spec: TaskSpec): void => {
    refuseExecutable(spec);
    acceptFunction(spec, remote);
  };

  return {
    kind: 'threads',
    open(worker): BackendExecutor {
      const cores = worker.cores ?? maxThreads;
      if (cores > maxThreads) {
        throw new UnsatisfiableRequirementsError(
          `the executor asks for ${cores} cores but threads() has at most ${maxThreads} threads per ` +
            `executor${options.maxThreads === undefined ? ' (the default, os.availableParallelism())' : ''}: ` +
            `pass threads({ maxThreads: ${cores}, ... }) or ask for fewer cores`,
        );
      }
      let pool: Piscina<ThreadRequest, ThreadResponse> | undefined;
      /**
       * runs told to stop that have not returned yet: the pool is destroyed only once they have (or their threads
       * were terminated)
       */
      const stopping = new Set<Promise<unknown>>();
      const stopped = (run: Promise<unknown>): void => {
        const settled = run.then(
          () => undefined,
          () => undefined,
        );
        stopping.add(settled);
        void settled.then(() => stopping.delete(settled));
      };
      const getPool = (): Piscina<ThreadRequest, ThreadResponse> => {
        if (pool === undefined) {
          pool = new Pool<ThreadRequest, ThreadResponse>({
            filename: workerFile,
            minThreads: cores,
            maxThreads: cores,
            workerData,
            execArgv,
            // nobody reads the pool's run and wait time histograms: recording them costs every task two clock reads
            recordTiming: false,
            // the executor's worker env, over this process's (threads share the process: a task's own env is not
            // applied)
            ...(worker.env !== undefined ? { env: { ...process.env, ...worker.env } as Record<string, string> } : {}),
          });
          // a thread that dies between tasks is replaced; its tasks (if any) have their own error
          pool.on('error', () => undefined);
        }
        return pool;
      };
      return {
        // one more one-core task per thread waits in the pool, so a thread goes from task to task without waiting for
        // the event loop
        capacity: { cores, gpus: worker.gpus ?? 0, memoryMB: worker.memoryMB ?? Infinity, queue: cores },
        invokes: false,
        accept,
        run: (job) => {
          // each rank has a key of its own (for placement); the first one names the attempt
          const key = runs + 1;
          runs = (runs + (job.requirements.ranks ?? 1)) % KEY_WRAP;
          return runJob(job, getPool(), key, { announce, stopped, placed: workerData.placed, grace });
        },
        close: async () => {
          // a cancelled task has its grace period to return, even when its executor closes at once
          while (stopping.size > 0) await Promise.all(stopping);
          await pool?.destroy();
          pool = undefined;
        },
      };
    },
    shutdown: async () => {
      channel?.close();
      channel = undefined;
    },
  };
}

interface RunControl {
  /** tells the workers to abort the run through its signal */
  readonly announce: (key: number, reason: unknown) => void;
  /** keeps the pool until a run told to stop has returned (or its thread was terminated) */
  readonly stopped: (run: Promise<unknown>) => void;
  /** key + rank → thread running it */
  readonly placed: Int32Array;
  readonly grace: number;
}

/** What a thread is asked to run for the job (the first rank's request, for a task of several ranks). */
const requestOf = (job: Job, key: number): ThreadRequest => ({
  key,
  name: job.name,
  args: job.args,
  id: job.id,
  label: job.label,
  attempt: job.attempt,
  version: job.version,
});

/** One attempt: one piscina task per rank, started together (the executor has reserved their cores). */
function runJob(
  job: Job,
  pool: Piscina<ThreadRequest, ThreadResponse>,
  key: number,
  control: RunControl,
): Observable<unknown> {
  if ((job.requirements.ranks ?? 1) === 1) return runOne(job, pool, key, control);
  return new Observable<unknown>((subscriber) => {
    const ranks = job.requirements.ranks ?? 1;
    const base = requestOf(job, key);
    let open = ranks;
    let done = false;
    let failure: unknown;
    let rank0: unknown;
    let killer: ReturnType<typeof setTimeout> | undefined;
    const succeeded: boolean[] = [];
    /** failures of ranks that waited for a rank that had ended: reported only if that rank succeeded */
    const consequences: Array<{ peer: number; error: Error }> = [];
    const fail = (error: Error): void => {
      done = true;
      failure = error;
      subscriber.error(error);
    };
    const settle = (rank: number, ok: boolean): void => {
      succeeded[rank] = ok;
      if (--open === 0 && killer !== undefined) clearTimeout(killer);
      if (done) return;
      const consequence = ok ? consequences.find((c) => c.peer === rank) : undefined;
      if (consequence !== undefined) fail(consequence.error);
      else if (open === 0) {
        done = true;
        subscriber.next(rank0);
        subscriber.complete();
      }
    };
    const requests = ranks === 1 ? [{ request: base, transfer: [] as MessagePort[] }] : mesh(base, ranks);
    const runs = requests.map(({ request, transfer }, rank) =>
      pool.run(request, transfer.length > 0 ? { transferList: transfer } : undefined).then(
        (response) => {
          if (response.ok) {
            if (rank === 0) rank0 = response.value;
            settle(rank, true);
            return;
          }
          const error = reviveError(response.error);
          if (ranks > 1) Object.assign(error, { rank });
          const peer = response.error.details?.peerEnded;
          if (!done && typeof peer === 'number' && succeeded[peer] === undefined) consequences.push({ peer, error });
          else if (!done) fail(error);
          settle(rank, false);
        },
        (err: unknown) => {
          if (!done) fail(crashError(err, job, rank, ranks));
          settle(rank, false);
        },
      ),
    );
    return () => {
      if (open === 0) return;
      // Cancelled, timed out, or another rank failed: abort the signal in the worker(s), then terminate
      // the thread(s) if the function has not returned within the grace period.
      done = true;
      const reason: unknown = job.signal.aborted ? job.signal.reason : (failure ?? new Error('the task was stopped'));
      control.announce(key, reason);
      control.stopped(Promise.all(runs));
      // A rank still queued in the pool starts, finds itself aborted and returns at once; a rank that
      // ignores its signal has its thread terminated (and replaced) after the grace period.
      killer = setTimeout(() => {
        for (let rank = 0; rank < ranks; rank++) {
          if (succeeded[rank] !== undefined) continue;
          const tid = Ring.get(control.placed, key + rank);
          if (tid !== undefined) void pool.threads.find((w) => w.threadId === tid)?.terminate();
        }
      }, control.grace);
      killer.unref();
    };
  });
}

/** `runJob` for the common case of one rank: one piscina task, nothing to coordinate. */
function runOne(
  job: Job,
  pool: Piscina<ThreadRequest, ThreadResponse>,
  key: number,
  control: RunControl,
): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    let open = true;
    const run = pool.run(requestOf(job, key));
    run.then(
      (response) => {
        open = false;
        if (response.ok) {
          subscriber.next(response.value);
          subscriber.complete();
        } else subscriber.error(reviveError(response.error));
      },
      (err: unknown) => {
        open = false;
        subscriber.error(crashError(err, job, 0, 1));
      },
    );
    return () => {
      if (!open) return;
      // cancelled or timed out: abort the signal in the worker; terminate its thread after the grace period
      control.announce(key, job.signal.aborted ? job.signal.reason : new Error('the task was stopped'));
      control.stopped(run);
      const killer = setTimeout(() => {
        if (!open) return;
        const tid = Ring.get(control.placed, key);
        if (tid !== undefined) void pool.threads.find((w) => w.threadId === tid)?.terminate();
      }, control.grace);
      killer.unref();
    };
  });
}

/** A full mesh of MessageChannels between the ranks. */
function mesh(base: ThreadRequest, size: number): Array<{ request: ThreadRequest; transfer: MessagePort[] }> {
  const ports: Array<Array<MessagePort | null>> = Array.from({ length: size }, () =>
    new Array<MessagePort | null>(size).fill(null),
  );
  for (let i = 0; i < size; i++) {
    for (let j = i + 1; j < size; j++) {
      const { port1, port2 } = new MessageChannel();
      ports[i]![j] = port1;
      ports[j]![i] = port2;
    }
  }
  return ports.map((mine, rank) => ({
    request: { ...base, comm: { rank, size, ports: mine } },
    transfer: mine.filter((p): p is MessagePort => p !== null),
  }));
}

function crashError(err: unknown, job: Job, rank: number, ranks: number): Error {
  const what = `task ${job.label ?? job.name} (${job.id})${ranks > 1 ? ` rank ${rank}` : ''}`;
  const message = err instanceof Error ? err.message : String(err);
  if ((err as { name?: unknown } | null)?.name === 'DataCloneError') {
    return new UnserializableValueError(
      `${what}: its arguments cannot be sent to a worker thread: ${message}. Pass plain data.`,
    );
  }
  return new WorkerCrashedError(
    `${what}: its worker thread died (${message}); the pool replaces the thread and goes on. A task must not ` +
      `call process.exit() or leave an error uncaught in a callback.`,
    { cause: err },
  );
}

/** piscina, an optional peer dependency: loaded when a `threads()` backend is made. */
function piscina(): typeof Piscina {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const load = (): typeof Piscina => (require('piscina') as { Piscina: typeof Piscina }).Piscina;
  return optionalDependency('piscina', '5', 'threads()', load);
}
