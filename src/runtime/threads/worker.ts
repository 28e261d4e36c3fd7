/**
 * The entry point of a `threads()` worker (a piscina worker): one serve run per lane (`lanes.ts`), which runs the
 * requests arriving on the lane's port one at a time, in order, through the remote runner (`../remote/runner.ts`), and
 * answers each on the port as soon as it has ended. Before it starts a request, the thread claims it in shared memory:
 * one the main thread has taken back meanwhile (to run it on another thread, or because it was cancelled) is passed
 * over. Plus what only threads have: aborts of a running request through its signal, and the communicator of tasks
 * with `ranks > 1`. It never throws at piscina: a task's failure comes back as data, so that the main thread can tell
 * a failed task from a crashed thread.
 */
import { workerData } from 'node:worker_threads';
import { UnserializableValueError } from '../../errors';
import { recordError, reviveError } from '../../recorded-error';
import { RemoteRunner, RunStop } from '../remote/runner';
import { structuredCloneWire, type RemoteOutcome } from '../remote/wire';
import { PortCommunicator } from './comm';
import {
  Slot,
  type ServeRequest,
  type ThreadAnswer,
  type ThreadRequest,
  type ThreadWorkerData,
  type ToThread,
} from './protocol';

const data = workerData as ThreadWorkerData;
const runner = new RemoteRunner({
  modules: data.modules,
  ...(data.digests !== undefined && { digests: data.digests }),
  where: data.where ?? 'a threads() worker',
  modulesOption: 'threads({ modules })',
  wire: structuredCloneWire,
});

/** Serves one lane: the piscina handler. Resolves once the main thread closes the lane's port. */
export default function serve({ port, slots }: ServeRequest): Promise<void> {
  return new Promise<void>((resolve) => {
    const queue: ThreadRequest[] = [];
    let next = 0;
    /** the request running now, while it is asynchronous (a synchronous one ends before any message is read) */
    let current: { readonly key: number; readonly stop: RunStop } | undefined;

    const answer = (req: ThreadRequest, outcome: RemoteOutcome): void => {
      Slot.done(slots, req);
      try {
        port.postMessage({ key: req.key, outcome } satisfies ThreadAnswer);
      } catch (err) {
        // (the runner checks results; this is what its check did not foresee)
        const error = new UnserializableValueError(
          `task ${req.label ?? req.name} (${req.id}) returned a value that cannot be sent back from a threads() ` +
            `worker by structured clone: ${err instanceof Error ? err.message : String(err)}. Return plain data.`,
        );
        port.postMessage({ key: req.key, outcome: { ok: false, error: recordError(error) } } satisfies ThreadAnswer);
      }
    };

    /** Runs the queued requests in order, until one is asynchronous (its end runs the rest). */
    const drain = (): void => {
      while (next < queue.length) {
        const req = queue[next++]!;
        if (!Slot.claim(slots, req)) continue; // taken back by the main thread
        const stop = new RunStop();
        const comm =
          req.comm !== undefined
            ? new PortCommunicator(req.comm.rank, req.comm.size, req.comm.ports, stop.signal)
            : undefined;
        const outcome = runner.run(req, stop, { comm });
        if (outcome instanceof Promise || comm !== undefined) {
          current = { key: req.key, stop };
          void Promise.resolve(outcome)
            // let the closing reach the other ranks (a rank still waiting on this one is then told it has ended)
            .then((o) => (comm !== undefined ? comm.close().then(() => o) : o))
            .then((o) => {
              current = undefined;
              answer(req, o);
              drain();
            });
          return;
        }
        answer(req, outcome);
      }
      queue.length = 0;
      next = 0;
    };

    port.on('message', (msg: ToThread) => {
      if (!isAbort(msg)) {
        for (const req of msg) queue.push(req);
        if (current === undefined) drain();
      } else if (current?.key === msg.abort) current.stop.abort(reviveError(msg.reason));
    });
    port.once('close', () => resolve());
  });
}

const isAbort = (msg: ToThread): msg is Extract<ToThread, { abort: number }> => !Array.isArray(msg);
