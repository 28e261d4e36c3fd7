/**
 * `threads()`: `defineTask` functions of registered modules on worker threads, a piscina pool per
 * executor (main side; the worker is `worker.ts`, both on the remote runner's wire and protocol).
 */
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import { MessageChannel, type MessagePort } from 'node:worker_threads';
import type Piscina from 'piscina';
import { Observable } from 'rxjs';
import { UnsatisfiableRequirementsError, UnserializableValueError, WorkerCrashedError } from '../../errors';
import { optionalDependency } from '../../optional-dependency';
import { reviveError } from '../../recorded-error';
import type { TaskSpec } from '../../task/spec';
import { refuseExecutables, type Backend, type BackendExecutor, type Job } from '../backend';
import { checkOptions, rules, type RulesOf } from '../../task/options';
import { acceptFunction, type RemoteFunctions } from '../remote/accept';
import { loaderArgs, moduleDigests, probeModules, resolveModules, type ModuleDigests } from '../remote/modules';
import { structuredCloneWire } from '../remote/wire';
import { Lanes, type Post } from './lanes';
import type { ServeRequest, ThreadWorkerData } from './protocol';

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

/** The most threads one executor's pool may have. */
const MAX_THREADS = 1024;

const THREADS_OPTIONS = {
  modules: rules.strings('a non-empty array of module paths (absolute, or relative to process.cwd())'),
  // each thread is an isolate of its own (tens of MB), and the pool starts them all
  maxThreads: {
    allowed: `a positive integer, at most ${MAX_THREADS}`,
    ok: (v) => rules.positiveInteger.ok(v) && (v as number) <= MAX_THREADS,
  },
  // a longer timer fires at once (Node sets it to 1 ms)
  cancelGraceMs: {
    allowed: `a non-negative number of milliseconds, at most ${2 ** 31 - 1} (24.8 days)`,
    ok: (v) => typeof v === 'number' && Number.isFinite(v) && v >= 0 && v <= 2 ** 31 - 1,
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
  return threadsOf(options);
}

/**
 * @internal `threads()`, whose threads load each module only if it reads as `digests` say (`moduleDigests`): by default
 * as this process reads them now; a remote task host gives those of the program that submits its tasks.
 */
export function threadsOf(options: ThreadsOptions, digests?: ModuleDigests, where?: string): Backend {
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
      let pool: Piscina<ServeRequest, void> | undefined;
      const getPool = (): Piscina<ServeRequest, void> => {
        if (pool === undefined) {
          // the modules as this process has them, and the files that defined its tasks, when the threads start (not
          // when threads() was made: an ES module this program imports after that defines its tasks later): threads
          // load only the same
          const workerData: ThreadWorkerData = {
            modules,
            digests: digests ?? moduleDigests(modules),
            ...(where !== undefined && { where }),
          };
          pool = new Pool<ServeRequest, void>({
            filename: workerFile,
            minThreads: cores,
            maxThreads: cores,
            workerData,
            execArgv,
            // nobody reads the pool's run and wait time histograms
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
      const lanes = new Lanes({ threads: cores, pool: getPool, grace });
      return {
        // one more one-core task per thread waits on its lane, so a thread goes from task to task without waiting for
        // the event loop
        capacity: { cores, gpus: worker.gpus ?? 0, memoryMB: worker.memoryMB ?? Infinity, queue: cores },
        invokes: false,
        accept,
        run: (job) => runJob(job, lanes),
        close: async () => {
          await lanes.close();
          await pool?.destroy();
          pool = undefined;
        },
      };
    },
  };
}

/** What a thread is asked to run for the job (the first rank's request, for a task of several ranks). */
const requestOf = (job: Job): Post['request'] => ({
  name: job.name,
  args: job.args,
  id: job.id,
  label: job.label,
  attempt: job.attempt,
  version: job.version,
});

/** Why a run that has not ended is stopped. */
const stopReason = (job: Job, failure?: unknown): unknown =>
  job.signal.aborted ? job.signal.reason : (failure ?? new Error('the task was stopped'));

/** One attempt: one request per rank, each on a thread of its own (the executor has reserved their cores). */
function runJob(job: Job, lanes: Lanes): Observable<unknown> {
  const ranks = job.requirements.ranks ?? 1;
  if (ranks === 1) return runOne(job, lanes);
  return new Observable<unknown>((subscriber) => {
    let open = ranks;
    let done = false;
    let failure: unknown;
    let rank0: unknown;
    const succeeded: boolean[] = [];
    /**
     * failures of ranks that waited for a rank that had ended: reported only if that rank succeeded (a failure of its
     * own is reported instead; so is a crash, which may be heard of after its peers' consequences)
     */
    const consequences: Array<{ peer: number; error: Error }> = [];
    /** ranks whose failure is such a consequence: a rank that waited for one of them failed as a consequence too */
    const consequential: boolean[] = [];
    const fail = (error: Error): void => {
      done = true;
      failure = error;
      subscriber.error(error);
    };
    const settle = (rank: number, ok: boolean): void => {
      succeeded[rank] = ok;
      open--;
      if (done) return;
      const consequence = ok ? consequences.find((c) => c.peer === rank) : undefined;
      if (consequence !== undefined) fail(consequence.error);
      else if (open === 0) {
        // consequences of consequences only (their first cause succeeded, and was heard of before them): the first
        if (consequences.length > 0 && !succeeded.every(Boolean)) return fail(consequences[0]!.error);
        done = true;
        subscriber.next(rank0);
        subscriber.complete();
      }
    };
    const posts = mesh(requestOf(job), ranks).map(({ request, transfer }, rank): Post => ({
      request,
      transfer,
      answered: (response) => {
        if (response.ok) {
          if (rank === 0) rank0 = response.value;
          settle(rank, true);
          return;
        }
        const error = reviveError(response.error);
        Object.assign(error, { rank });
        const peer = response.error.details?.peerEnded;
        if (!done && typeof peer === 'number' && (succeeded[peer] === undefined || consequential[peer] === true)) {
          consequences.push({ peer, error });
          consequential[rank] = true;
        } else if (!done) fail(error);
        settle(rank, false);
      },
      crashed: (err) => {
        // (before, a crash of rank 1 was reported without its rank, or as rank 2 failing for rank 0, which had ended
        // waiting for rank 1)
        if (!done) fail(Object.assign(crashError(err, job, rank, ranks), { rank }));
        settle(rank, false);
      },
    }));
    for (const post of posts) lanes.submit(post);
    return () => {
      if (open === 0) return;
      // Cancelled, timed out, or another rank failed: a rank not started yet never starts; a running one has its
      // signal aborted, and its thread terminated if it has not returned within the grace period.
      done = true;
      const reason = stopReason(job, failure);
      // the task's cores stay held until every rank has ended (`holdUntil`): nothing starts on its threads meanwhile
      const ending: Array<Promise<void>> = [];
      posts.forEach((post, rank) => {
        const ended = succeeded[rank] === undefined ? lanes.cancel(post, reason) : undefined;
        if (ended !== undefined) ending.push(ended);
      });
      if (ending.length > 0) job.holdUntil?.(Promise.all(ending));
    };
  });
}

/** `runJob` for the common case of one rank: one request, nothing to coordinate. */
function runOne(job: Job, lanes: Lanes): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    let open = true;
    const post: Post = {
      request: requestOf(job),
      answered: (outcome) => {
        open = false;
        if (outcome.ok) {
          subscriber.next(outcome.value);
          subscriber.complete();
        } else subscriber.error(reviveError(outcome.error));
      },
      crashed: (err) => {
        open = false;
        subscriber.error(crashError(err, job, 0, 1));
      },
    };
    lanes.submit(post);
    return () => {
      if (!open) return;
      // its core stays held until it has returned, or its thread was terminated (`holdUntil`)
      const ended = lanes.cancel(post, stopReason(job));
      if (ended !== undefined) job.holdUntil?.(ended);
    };
  });
}

/** A full mesh of MessageChannels between the ranks. */
function mesh(base: Post['request'], size: number): Array<{ request: Post['request']; transfer: MessagePort[] }> {
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
