import { AsyncLocalStorage } from 'node:async_hooks';
import { availableParallelism } from 'node:os';
import { setContextCarrier, type Ambient, type ContextCarrier } from '../runtime/context';
import { setAvailableCores } from '../runtime/cores';

const storage = new AsyncLocalStorage<Ambient>();
/** The context of this module's loading: no user's store is active in it. */
const root = AsyncLocalStorage.snapshot();

/** Ambient scope carried across awaits by AsyncLocalStorage; submit captures the whole async context. */
const nodeCarrier: ContextCarrier = {
  run: (scope, fn) => storage.run(scope, fn),
  get: () => storage.getStore(),
  snapshot: () => AsyncLocalStorage.snapshot(),
  detached: (fn) => root(fn),
};

let installed = false;

/** Installs the Node parts of the core (idempotent). */
export function installNode(): void {
  if (installed) return;
  installed = true;
  setContextCarrier(nodeCarrier);
  setAvailableCores(availableParallelism());
}
