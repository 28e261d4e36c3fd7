import { availableParallelism } from 'node:os';
import { extname, join, resolve as resolvePath } from 'node:path';
import { BroadcastChannel, MessageChannel, type MessagePort } from 'node:worker_threads';
import Piscina from 'piscina';
import { Observable } from 'rxjs';
import { UnknownTaskError, UnregisteredFunctionError, UnsatisfiableRequirementsError, UnserializableValueError, WorkerCrashedError } from '../errors';
import { SPEC_FN, registeredName, type TaskSpec } from '../task/spec';
import type { Backend, BackendExecutor, Job } from './backend';
import { deserializeError, serializeError, unclonable, type AbortAnnouncement, type ThreadRequest, type ThreadResponse, type ThreadWorkerData } from './thread-protocol';

export interface ThreadsOptions {
  /**
   * Modules that define the tasks with `defineTask(name, fn)` (and export them): absolute paths, or
   * relative to `process.cwd()`. Every worker thread loads them all; tasks are found by name.
   * `.ts` modules are loaded through tsx (which must be installed); `.mjs` modules through `import()`.
   */
  readonly modules: readonly string[];
  /** Threads of each executor's pool, and so its cores (default `os.availableParallelism()`). */
  readonly maxThreads?: number;
  /**
   * Milliseconds a cancelled (or timed-out) task has to return once its `currentTask().signal` has
   * aborted, before its thread is terminated (and replaced). Default 1000.
   */
  readonly cancelGraceMs?: number;
}

let backends = 0;

/**
 * Runs `defineTask` functions of the given modules on worker threads (a piscina pool per executor).
 * Closures cannot be sent to a thread: they are refused at submit. Arguments and results cross by
 * structured clone. A function task with `ranks > 1` runs on `ranks` threads at once and talks through
 * `currentTask().comm`; its result is rank 0's.
 */
export function threads(options: ThreadsOptions): Backend {
  const modules = resolveModules(options);
  const maxThreads = options.maxThreads ?? availableParallelism();
  if (!Number.isInteger(maxThreads) || maxThreads < 1) throw new TypeError(`threads({ maxThreads }): expected a positive integer, got ${String(options.maxThreads)}`);
  const grace = options.cancelGraceMs ?? 1000;
  if (!(grace >= 0)) throw new TypeError(`threads({ cancelGraceMs }): expected a non-negative number of milliseconds, got ${String(options.cancelGraceMs)}`);
  const defined = probeModules(modules);
  const workerFile = join(__dirname, `thread-worker${extname(__filename)}`);
  const execArgv = workerExecArgv(modules, workerFile);
  const channelName = `scalems-threads-${process.pid}-${++backends}-${Math.random().toString(36).slice(2)}`;
  let channel: BroadcastChannel | undefined;
  let runs = 0;
  const workerData: ThreadWorkerData = { modules, channel: channelName };
  const moduleList = modules.join(', ');

  /** Tells the workers to abort a run through its signal. */
  const announce = (key: number, reason: unknown): void => {
    if (channel === undefined) {
      channel = new BroadcastChannel(channelName);
      channel.unref();
    }
    channel.postMessage({ key, reason: serializeError(reason) } satisfies AbortAnnouncement);
  };

  const accept = (spec: TaskSpec): void => {
    if (spec.kind === 'executable') {
      throw new UnsatisfiableRequirementsError(`threads() runs defineTask functions only; the executable ${spec.name} cannot run on it: submit it to an executor on processes() (or slurm())`);
    }
    const fn = spec[SPEC_FN];
    if (fn !== undefined && registeredName(fn) === undefined) {
      throw new UnregisteredFunctionError(
        `${fn.name !== '' ? `function ${fn.name}` : 'an anonymous function'} cannot be sent to a worker thread: threads() runs only functions registered with defineTask(name, fn) in one of its modules (${moduleList}). Move it into such a module, wrap it with defineTask, and export it.`,
      );
    }
    if (defined !== undefined && !defined.has(spec.name)) {
      throw new UnknownTaskError(
        `no task named "${spec.name}" is defined by the modules given to threads({ modules }) (${moduleList}): define it with defineTask("${spec.name}", fn) in one of them and export it, or add the module that defines it`,
      );
    }
    for (let i = 0; i < spec.args.length; i++) {
      const problem = unclonable(spec.args[i], `argument ${i}`);
      if (problem !== undefined) {
        throw new UnserializableValueError(`task ${spec.label ?? spec.name}: ${problem}; arguments of threads() tasks are copied to a worker thread by structured clone. Pass plain data.`);
      }
    }
  };

  return {
    kind: 'threads',
    open(worker): BackendExecutor {
      const cores = worker.cores ?? maxThreads;
      if (cores > maxThreads) {
        throw new UnsatisfiableRequirementsError(
          `the executor asks for ${cores} cores but threads() has at most ${maxThreads} threads per executor${options.maxThreads === undefined ? ' (the default, os.availableParallelism())' : ''}: pass threads({ maxThreads: ${cores}, ... }) or ask for fewer cores`,
        );
      }
      let pool: Piscina<ThreadRequest, ThreadResponse> | undefined;
      const getPool = (): Piscina<ThreadRequest, ThreadResponse> => {
        if (pool === undefined) {
          pool = new Piscina<ThreadRequest, ThreadResponse>({ filename: workerFile, minThreads: cores, maxThreads: cores, workerData, execArgv });
          // a thread that dies between tasks is replaced; its tasks (if any) have their own error
          pool.on('error', () => undefined);
        }
        return pool;
      };
      return {
        capacity: { cores, gpus: worker.gpus ?? 0, memoryMB: worker.memoryMB ?? Infinity },
        accept,
        run: (job) => runJob(job, getPool(), ++runs, announce, grace),
        close: async () => {
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

/** One attempt: one piscina task per rank, started together (the executor has reserved their cores). */
function runJob(job: Job, pool: Piscina<ThreadRequest, ThreadResponse>, key: number, announce: (key: number, reason: unknown) => void, grace: number): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const ranks = job.requirements.ranks ?? 1;
    const kill = new AbortController();
    const base: ThreadRequest = { key, name: job.name, args: job.args, id: job.id, label: job.label, attempt: job.attempt };
    let open = ranks;
    let done = false;
    let failure: unknown;
    let rank0: unknown;
    let killer: ReturnType<typeof setTimeout> | undefined;
    const settle = (): void => {
      if (--open === 0 && killer !== undefined) clearTimeout(killer);
    };
    const requests = ranks === 1 ? [{ request: base, transfer: [] as MessagePort[] }] : mesh(base, ranks);
    requests.forEach(({ request, transfer }, rank) => {
      pool.run(request, { transferList: transfer, signal: kill.signal }).then(
        (response) => {
          settle();
          if (done) return;
          if (!response.ok) {
            done = true;
            failure = deserializeError(response.error);
            if (ranks > 1) Object.assign(failure as Error, { rank });
            subscriber.error(failure);
          } else {
            if (rank === 0) rank0 = response.value;
            if (open === 0) {
              done = true;
              subscriber.next(rank0);
              subscriber.complete();
            }
          }
        },
        (err: unknown) => {
          settle();
          if (done) return;
          done = true;
          failure = crashError(err, job, rank, ranks);
          subscriber.error(failure);
        },
      );
    });
    return () => {
      if (open === 0) return;
      // Cancelled, timed out, or another rank failed: abort the signal in the worker(s), then terminate
      // the thread(s) if the function has not returned within the grace period.
      done = true;
      const reason: unknown = job.signal.aborted ? job.signal.reason : (failure ?? new Error('the task was stopped'));
      announce(key, reason);
      killer = setTimeout(() => kill.abort(reason), grace);
      killer.unref();
    };
  });
}

/** A full mesh of MessageChannels between the ranks. */
function mesh(base: ThreadRequest, size: number): Array<{ request: ThreadRequest; transfer: MessagePort[] }> {
  const ports: Array<Array<MessagePort | null>> = Array.from({ length: size }, () => new Array<MessagePort | null>(size).fill(null));
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
  if (err instanceof Error && err.name === 'DataCloneError') {
    return new UnserializableValueError(`${what}: its arguments cannot be sent to a worker thread: ${message}. Pass plain data.`);
  }
  return new WorkerCrashedError(
    `${what}: its worker thread died (${message}); the pool replaces the thread and goes on. A task must not call process.exit() or leave an error uncaught in a callback.`,
    { cause: err },
  );
}

function resolveModules(options: ThreadsOptions): string[] {
  const list: unknown = (options as { modules?: unknown } | undefined)?.modules;
  if (!Array.isArray(list) || list.length === 0 || !list.every((m): m is string => typeof m === 'string' && m.length > 0)) {
    throw new TypeError('threads({ modules }): expected a non-empty array of module paths (absolute, or relative to process.cwd()) that define the tasks with defineTask');
  }
  return list.map((m) => {
    const path = resolvePath(process.cwd(), m);
    try {
      return require.resolve(path);
    } catch (err) {
      throw new TypeError(`threads({ modules }): module ${m} not found (looked for ${path})`, { cause: err });
    }
  });
}

/**
 * The task names each module exports, found by loading the modules here (synchronously), or
 * undefined where this thread cannot load them (an ES module, or TypeScript without tsx): then the
 * workers report unknown names when the task runs.
 */
function probeModules(modules: readonly string[]): Set<string> | undefined {
  const names = new Set<string>();
  for (const path of modules) {
    let exports: unknown;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- loading the user's task modules, synchronously
      exports = require(path);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_REQUIRE_ESM' || code === 'ERR_UNKNOWN_FILE_EXTENSION' || (isTypeScript(path) && err instanceof SyntaxError)) return undefined;
      throw new TypeError(`threads({ modules }): module ${path} failed to load: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    collectTaskNames(exports, names);
    if (typeof exports === 'object' && exports !== null) collectTaskNames((exports as { default?: unknown }).default, names);
  }
  return names;
}

function collectTaskNames(exports: unknown, names: Set<string>): void {
  if (typeof exports === 'function') {
    const name = registeredName(exports as (...args: never[]) => unknown);
    if (name !== undefined) names.add(name);
  }
  if ((typeof exports !== 'object' && typeof exports !== 'function') || exports === null) return;
  for (const key of Object.keys(exports)) {
    const value: unknown = (exports as Record<string, unknown>)[key];
    if (typeof value === 'function') {
      const name = registeredName(value as (...args: never[]) => unknown);
      if (name !== undefined) names.add(name);
    }
  }
}

const isTypeScript = (path: string): boolean => /\.[cm]?ts$/.test(path);

/**
 * Worker threads do not inherit the parent's loaders here: TypeScript (this library run from source,
 * or `.ts` task modules) is loaded with tsx's CommonJS hook, which works inside worker threads.
 */
function workerExecArgv(modules: readonly string[], workerFile: string): string[] {
  const argv = process.execArgv.includes('--enable-source-maps') ? ['--enable-source-maps'] : [];
  if (!isTypeScript(workerFile) && !modules.some(isTypeScript)) return argv;
  let tsx: string;
  try {
    tsx = require.resolve('tsx/cjs', { paths: [process.cwd(), __dirname] });
  } catch (err) {
    const ts = modules.find(isTypeScript) ?? workerFile;
    throw new TypeError(`threads(): ${ts} is TypeScript, and worker threads load TypeScript with tsx, which is not installed: npm install --save-dev tsx, or compile the module to JavaScript`, {
      cause: err,
    });
  }
  return [...argv, '--require', tsx];
}
