/**
 * The Node parts of the core, installed by `scalems` on Node and by `scalems/node`: the AsyncLocalStorage
 * carrier, the core count, a SQLite file under `.scalems/<name>/` as the default store, and the digests of the files
 * that define tasks, as loaded (`recordDefiningFiles`).
 */
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { installAsyncLocalCarrier } from '../context/async-local';
import { setAvailableCores } from '../runtime/cores';
import { recordDefiningFiles } from '../runtime/remote/modules';
import { setDefinedHook } from '../task/spec';
import { checkWorkflowName, setDefaultStoreFactory } from '../runtime/workflow';
import { InvalidOptionsError } from '../errors';
import { show } from '../task/requirements';
import type { Store } from '../store/store';
import { sqliteStore } from '../store/sqlite';
import { sqliteDriver } from '../store/sqlite-driver';

let installed = false;

/**
 * Installs the Node parts of the core (idempotent): the AsyncLocalStorage carrier, the core count, SQLite as the
 * default store, the digests of the files that define tasks.
 */
export function installNode(): void {
  if (installed) return;
  installed = true;
  installAsyncLocalCarrier();
  setAvailableCores(availableParallelism());
  setDefaultStoreFactory(defaultStore);
  setDefinedHook(recordDefiningFiles);
}

/**
 * The default store on Node: a SQLite file. Without better-sqlite3 (an optional peer dependency) `openWorkflow()`
 * rejects with `MissingDependencyError`, never falls back to memory: a workflow the user expects to resume would
 * otherwise lose its state at exit.
 */
function defaultStore(name: string): Store {
  sqliteDriver(
    `openWorkflow() without a store (on Node its state is kept in .scalems/${name}/state.sqlite)`,
    'or give it a store: openWorkflow({ store: memoryStore() })',
  );
  return sqliteStore(defaultStorePath(name));
}

/**
 * Where a workflow keeps its state on Node unless told otherwise: `.scalems/<name>/state.sqlite` under the working
 * directory.
 */
export function defaultStorePath(name: string, cwd: string = process.cwd()): string {
  return join(directoryOf(name, cwd, 'defaultStorePath'), 'state.sqlite');
}

/** A workflow's directory: its store and its tasks' working directories. */
export function workflowDir(name: string, cwd: string = process.cwd()): string {
  return directoryOf(name, cwd, 'workflowDir');
}

function directoryOf(name: string, cwd: string, call: string): string {
  checkWorkflowName(name, `${call}(name, cwd?)`);
  if (typeof cwd !== 'string' || cwd === '' || cwd.includes('\0'))
    throw new InvalidOptionsError(`${call}(name, cwd?): cwd must be a directory's path, got ${show(cwd)}`);
  return join(cwd, '.scalems', name);
}
