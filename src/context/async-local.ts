/**
 * The ambient scope carried by AsyncLocalStorage (Node): across awaits, and with the submitter's whole
 * async context captured at submit. Installed by the Node entry point, and by the remote side of the
 * backends (worker threads, job steps), where it is all they need of Node's entry.
 */
import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { setContextCarrier, type Ambient, type ContextCarrier } from './ambient';

const storage = new AsyncLocalStorage<Ambient>();
/** The context of this module's loading: no user's store is active in it. */
const root = AsyncLocalStorage.snapshot();

const asyncLocalCarrier: ContextCarrier = {
  acrossAwaits: true,
  run: (scope, fn) => storage.run(scope, fn),
  get: () => storage.getStore(),
  // What AsyncLocalStorage.snapshot() does, without its per-call deprecation wrapper (Node 20):
  // an AsyncResource captures the whole async context it is created in.
  snapshot: () => {
    const resource = new AsyncResource('scalems.task', { requireManualDestroy: true });
    return (fn) => resource.runInAsyncScope(fn);
  },
  detached: (fn) => root(fn),
};

/** Carries the ambient scope with AsyncLocalStorage from now on (idempotent). */
export function installAsyncLocalCarrier(): void {
  setContextCarrier(asyncLocalCarrier);
}
