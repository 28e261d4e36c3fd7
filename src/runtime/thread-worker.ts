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

/** Runs one request (one rank of one attempt). The piscina handler. */
export default async function runThreadTask(req: ThreadRequest): Promise<ThreadResponse> {
  if (!loaded) {
    try {
      await (loading ??= loadModules());
    } catch (err) {
      return fail(err);
    }
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
  const earlyReason = early.get(req.key) ?? abortedBeforeStart(data.aborts, req.key);
  if (earlyReason !== undefined) {
    early.delete(req.key);
    return fail(earlyReason);
  }
  const run = new Run();
  running.set(req.key, run);
  // where this rank runs, so that the main thread can terminate this thread if it ignores its signal
  Ring.set(data.placed, req.key + (req.comm?.rank ?? 0), threadId);
  const comm = req.comm !== undefined ? new PortCommunicator(req.comm.rank, req.comm.size, req.comm.ports, run.signal) : undefined;
  try {
    const context: TaskContext = {
      id: req.id,
      label: req.label,
      get signal() {
        return run.signal;
      },
      attempt: req.attempt,
      submit: noSubmit,
      ...(comm !== undefined ? { comm } : {}),
    };
    const scope: RunningTaskScope = { id: req.id, context, awaitOther: (settled) => settled };
    const value: unknown = await runInScope({ task: scope }, () => invocable(fn)(...req.args));
    // Only rank 0's result is the task's: the other ranks' results are not sent back.
    const result = req.comm !== undefined && req.comm.rank !== 0 ? undefined : value;
    const problem = unclonable(result, 'the result');
    if (problem !== undefined) {
      return fail(new UnserializableValueError(`task ${req.label ?? req.name} (${req.id}) returned a value that cannot be sent back from its worker thread: ${problem}. Return plain data.`));
    }
    return { ok: true, value: result };
  } catch (err) {
    return fail(err);
  } finally {
    running.delete(req.key);
    // Let the closing reach the other ranks (a rank still waiting on this one is then told it has
    // ended) before piscina parks this thread in Atomics.wait.
    if (comm !== undefined) await comm.close();
  }
}
