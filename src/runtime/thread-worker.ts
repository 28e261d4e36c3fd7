/**
 * The entry point of a `threads()` worker (a piscina worker). It loads the task modules named in
 * `workerData`, then runs each request by looking its function up by NAME in the `defineTask`
 * registry (never `eval`), with `currentTask()` giving id, label, signal, attempt and, for tasks with
 * `ranks > 1`, the communicator. It never throws at piscina: a task's failure comes back as data, so
 * that the main thread can tell a failed task from a crashed thread.
 */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { pathToFileURL } from 'node:url';
import { installNode } from '../node/context';
import { NoAmbientScopeError, UnknownTaskError, UnserializableValueError } from '../errors';
import { invocable, lookupTask } from '../task/spec';
import { runInScope } from './context';
import { isThenable } from './in-process';
import type { RunningTaskScope, TaskContext } from './executor';
import { PortCommunicator } from './thread-comm';
import { Ring, abortedBeforeStart, deserializeError, serializeError, unclonable, type AbortAnnouncement, type ThreadRequest, type ThreadResponse, type ThreadWorkerData } from './thread-protocol';

installNode();

const data = workerData as ThreadWorkerData;

/**
 * One running attempt (rank) on this thread. Its AbortController is made only when the function asks
 * for its signal (or when it is aborted): most tasks never do, and a controller costs microseconds.
 */
class Run {
  private controller: AbortController | undefined;
  private reason: Error | undefined;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.reason !== undefined) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: Error): void {
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.reason ??= reason;
  }
}

/** Running attempts of this thread, by run key. */
const running = new Map<number, Run>();
/** Aborts announced for runs that have not started here (yet): a run may be aborted before its request arrives. */
const early = new Map<number, Error>();
const EARLY_LIMIT = 1024;

const channel = new BroadcastChannel(data.channel);
channel.unref();
channel.onmessage = (event: unknown): void => {
  const { key, reason } = (event as { data: AbortAnnouncement }).data;
  const run = running.get(key);
  if (run !== undefined) {
    run.abort(deserializeError(reason));
    return;
  }
  early.set(key, deserializeError(reason));
  if (early.size > EARLY_LIMIT) early.delete(early.keys().next().value!);
};

let loaded = false;
let loading: Promise<void> | undefined;

async function loadModules(): Promise<void> {
  for (const path of data.modules) {
    if (/\.mjs$/.test(path)) await import(pathToFileURL(path).href);
    // eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS (and .ts through tsx) task modules
    else require(path);
  }
  loaded = true;
}

function fail(err: unknown): ThreadResponse {
  return { ok: false, error: serializeError(err) };
}

const noSubmit = (): never => {
  throw new NoAmbientScopeError('currentTask().submit() is not available inside a threads() worker: return data from the task and submit follow-up work from the main program');
};

/** What `currentTask()` gives a function running on this thread. */
class ThreadTask implements TaskContext, RunningTaskScope {
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  readonly comm: PortCommunicator | undefined;
  readonly workdir = undefined;

  constructor(
    req: ThreadRequest,
    private readonly run: Run,
    comm: PortCommunicator | undefined,
  ) {
    this.id = req.id;
    this.label = req.label;
    this.attempt = req.attempt;
    this.comm = comm;
  }

  get signal(): AbortSignal {
    return this.run.signal;
  }

  get context(): TaskContext {
    return this;
  }

  get submit(): TaskContext['submit'] {
    return noSubmit;
  }

  awaitOther<R>(settled: Promise<R>): Promise<R> {
    return settled;
  }
}

/**
 * Runs one request (one rank of one attempt). The piscina handler: a function that returns at once
 * is answered at once (no promise, no extra turn); an async one when it settles.
 */
export default function runThreadTask(req: ThreadRequest): ThreadResponse | Promise<ThreadResponse> {
  if (!loaded) {
    return (loading ??= loadModules()).then(
      () => runThreadTask(req),
      (err: unknown) => fail(err),
    );
  }
  const fn = lookupTask(req.name);
  if (fn === undefined) {
    return fail(
      new UnknownTaskError(
        `no task named "${req.name}" is defined by the modules of this threads() pool (${data.modules.join(', ')}): define it with defineTask("${req.name}", fn) in one of them`,
      ),
    );
  }
  // aborted before it started here (cancelled while queued, or before this thread listened): do not run it
  const earlyReason = early.size > 0 ? early.get(req.key) : undefined;
  const abortedReason = earlyReason ?? abortedBeforeStart(data.aborts, req.key);
  if (abortedReason !== undefined) {
    early.delete(req.key);
    return fail(abortedReason);
  }
  const run = new Run();
  running.set(req.key, run);
  // where this rank runs, so that the main thread can terminate this thread if it ignores its signal
  Ring.set(data.placed, req.key + (req.comm?.rank ?? 0), threadId);
  const comm = req.comm !== undefined ? new PortCommunicator(req.comm.rank, req.comm.size, req.comm.ports, run.signal) : undefined;
  let value: unknown;
  try {
    const task = new ThreadTask(req, run, comm);
    value = runInScope({ task }, () => invocable(fn)(...req.args));
  } catch (err) {
    return finish(req, comm, fail(err));
  }
  if (isThenable(value)) {
    return Promise.resolve(value).then(
      (v) => finish(req, comm, respond(req, v)),
      (err: unknown) => finish(req, comm, fail(err)),
    );
  }
  return finish(req, comm, respond(req, value));
}

/** The response to a run that returned `value`. */
function respond(req: ThreadRequest, value: unknown): ThreadResponse {
  // Only rank 0's result is the task's: the other ranks' results are not sent back.
  const result = req.comm !== undefined && req.comm.rank !== 0 ? undefined : value;
  const problem = unclonable(result, 'the result');
  if (problem !== undefined) {
    return fail(new UnserializableValueError(`task ${req.label ?? req.name} (${req.id}) returned a value that cannot be sent back from its worker thread: ${problem}. Return plain data.`));
  }
  return { ok: true, value: result };
}

/** Ends a run here, then answers with `response`. */
function finish(req: ThreadRequest, comm: PortCommunicator | undefined, response: ThreadResponse): ThreadResponse | Promise<ThreadResponse> {
  running.delete(req.key);
  if (comm === undefined) return response;
  // Let the closing reach the other ranks (a rank still waiting on this one is then told it has
  // ended) before piscina parks this thread in Atomics.wait.
  return comm.close().then(() => response);
}
