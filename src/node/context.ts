import { AsyncLocalStorage, AsyncResource } from 'node:async_hooks';
import { availableParallelism } from 'node:os';
import { setContextCarrier, type Ambient, type ContextCarrier } from '../runtime/context';
import { setAvailableCores } from '../runtime/cores';
import { setDefaultStoreFactory } from '../store/workflow';
import { sqliteStore } from '../store/sqlite';
import { join } from 'node:path';

const storage = new AsyncLocalStorage<Ambient>();
/** The context of this module's loading: no user's store is active in it. */
const root = AsyncLocalStorage.snapshot();

/** Ambient scope carried across awaits by AsyncLocalStorage; submit captures the whole async context. */
const nodeCarrier: ContextCarrier = {
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

let installed = false;

/** Installs the Node parts of the core (idempotent). */
export function installNode(): void {
  if (installed) return;
  installed = true;
  setContextCarrier(nodeCarrier);
  setAvailableCores(availableParallelism());
  setDefaultStoreFactory((name) => sqliteStore(defaultStorePath(name)));
}

/** Where a workflow keeps its state on Node unless told otherwise: `.scalems/<name>/state.sqlite` under the working directory. */
export function defaultStorePath(name: string, cwd: string = process.cwd()): string {
  return join(workflowDir(name, cwd), 'state.sqlite');
}

/** A workflow's directory: its store and its tasks' working directories. */
export function workflowDir(name: string, cwd: string = process.cwd()): string {
  if (!/^[A-Za-z0-9._-]+$/.test(name) || name === '.' || name === '..') {
    throw new TypeError(`workflow name "${name}" cannot be a directory name: use letters, digits, ".", "_" and "-"`);
  }
  return join(cwd, '.scalems', name);
}
