/**
 * The entry point of a `threads()` worker (a piscina worker): the remote runner (`../remote/runner.ts`)
 * plus what only threads have: aborts announced on a BroadcastChannel or found in shared memory, the
 * placement of each rank (so that the main thread can terminate a thread that ignores its signal), and
 * the communicator of tasks with `ranks > 1`. It never throws at piscina: a task's failure comes back as
 * data, so that the main thread can tell a failed task from a crashed thread.
 */
import { BroadcastChannel, threadId, workerData } from 'node:worker_threads';
import { recordError, reviveError } from '../../recorded-error';
import { RemoteRunner, RunStop } from '../remote/runner';
import { structuredCloneWire, type RemoteOutcome } from '../remote/wire';
import { PortCommunicator } from './comm';
import {
  Ring,
  abortedBeforeStart,
  type AbortAnnouncement,
  type ThreadRequest,
  type ThreadResponse,
  type ThreadWorkerData,
} from './protocol';

const data = workerData as ThreadWorkerData;
const runner = new RemoteRunner({
  modules: data.modules,
  where: 'a threads() worker',
  modulesOption: 'threads({ modules })',
  wire: structuredCloneWire,
});

/** Running attempts of this thread, by run key. */
const running = new Map<number, RunStop>();
/** Aborts announced for runs that have not started here (yet): a run may be aborted before its request arrives. */
const early = new Map<number, Error>();
const EARLY_LIMIT = 1024;

const channel = new BroadcastChannel(data.channel);
channel.unref();
channel.onmessage = (event: unknown): void => {
  const { key, reason } = (event as { data: AbortAnnouncement }).data;
  const stop = running.get(key);
  if (stop !== undefined) {
    stop.abort(reviveError(reason));
    return;
  }
  early.set(key, reviveError(reason));
  if (early.size > EARLY_LIMIT) early.delete(early.keys().next().value!);
};

/** Runs one request (one rank of one attempt): the piscina handler. */
export default function runThreadTask(req: ThreadRequest): ThreadResponse | Promise<ThreadResponse> {
  // aborted before it started here (cancelled while queued, or before this thread listened): do not run it
  const abortedReason = (early.size > 0 ? early.get(req.key) : undefined) ?? abortedBeforeStart(data.aborts, req.key);
  if (abortedReason !== undefined) {
    early.delete(req.key);
    return { ok: false, error: recordError(abortedReason) };
  }
  const stop = new RunStop();
  running.set(req.key, stop);
  // where this rank runs, so that the main thread can terminate this thread if it ignores its signal
  Ring.set(data.placed, req.key + (req.comm?.rank ?? 0), threadId);
  const comm =
    req.comm !== undefined
      ? new PortCommunicator(req.comm.rank, req.comm.size, req.comm.ports, stop.signal)
      : undefined;
  const outcome = runner.run(req, stop, { comm });
  return outcome instanceof Promise ? outcome.then((o) => finish(req, comm, o)) : finish(req, comm, outcome);
}

/** Ends a run here, then answers with its outcome. */
function finish(
  req: ThreadRequest,
  comm: PortCommunicator | undefined,
  outcome: RemoteOutcome,
): ThreadResponse | Promise<ThreadResponse> {
  running.delete(req.key);
  if (comm === undefined) return outcome;
  // Let the closing reach the other ranks (a rank still waiting on this one is then told it has
  // ended) before piscina parks this thread in Atomics.wait.
  return comm.close().then(() => outcome);
}
