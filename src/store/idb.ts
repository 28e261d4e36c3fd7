/** `idbStore(name)`: a store in IndexedDB through idb-keyval (browsers). */
import type * as IdbKeyval from 'idb-keyval' with { 'resolution-mode': 'import' };
import {
  InvalidOptionsError,
  ScalemsError,
  StoreAccessError,
  StoreClosedError,
  StoreCorruptError,
  StoreLockedError,
  StoreVersionError,
  StoreWriteError,
} from '../errors';
import { checkOptions, rules, type RulesOf } from '../task/options';
import { show } from '../task/requirements';
import { versionProblem, withInternalWrites, type Store } from './store';
import { assertStorable } from './storable';

/** The schema version this code reads and writes, kept in the store under {@link IDB_META_KEY}. */
export const IDB_STORE_VERSION = 2;
/**
 * Where the store's format and version live. An array key: store keys are strings, so it can never
 * collide with one, and `keys()` / `entries()` leave it out.
 */
export const IDB_META_KEY: string[] = ['scalems-store'];

// idb-keyval ships its types as ESM but also a CommonJS build, which is what this CommonJS module loads.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { del, entries, get, keys, promisifyRequest, set, setMany } = require('idb-keyval') as typeof IdbKeyval;
type UseStore = IdbKeyval.UseStore;

interface Meta {
  format: 'scalems-store';
  version: number;
}

/**
 * A store in an IndexedDB object store (browsers; in Node only with an IndexedDB implementation such as
 * fake-indexeddb). Reads and writes go through idb-keyval; `setMany` is one transaction. Values must be
 * JSON data (see `assertStorable`), so that a workflow stored here can move to any other store.
 *
 * The database is opened at once, in the background. If it turns out not to be a scalems store
 * (`StoreCorruptError`) or of another version (`StoreVersionError`), every operation rejects with that
 * error and nothing is written. `close()` closes the database connection.
 *
 * One store at a time has a database's object store: opening takes an exclusive Web Lock
 * (`navigator.locks`, named `scalems-store:<dbName>/<storeName>`) and holds it until `close()` (or until the
 * page or worker goes away). If another tab or worker of the origin, or another `idbStore` of this page, holds
 * it, every operation rejects with `StoreLockedError` (and `openWorkflow` with it) and nothing is read or
 * written. Its `holder` is `{ pid: 0, host: <origin> }`: a browser names no process, nor which tab.
 *
 * A browser gives Web Locks only to secure contexts (https, or http on localhost): a page of another http origin
 * has none, and nothing would keep a second tab from opening the store and overwriting this one's records. There
 * opening rejects with `StoreAccessError`, unless `{ unlocked: true }` says to go without (only another `idbStore`
 * of the same page is kept out then). In Node (fake-indexeddb, whose databases are the process's own) another
 * `idbStore` of the process is kept out, and that is all there is.
 *
 * A write the browser refuses (the origin's storage quota is full: `QuotaExceededError`) rejects with
 * `StoreWriteError`; IndexedDB denied to the page (a sandboxed frame, a `data:` URL) with `StoreAccessError`; a
 * version upgrade to add this object store to a database another connection holds open, with `StoreLockedError`.
 */
export function idbStore(dbName: string, storeName = 'scalems', options: IdbStoreOptions = {}): Store {
  for (const [what, value] of [
    ['dbName', dbName],
    ['storeName', storeName],
  ] as const)
    if (typeof value !== 'string' || value === '')
      throw new InvalidOptionsError(
        `idbStore(dbName, storeName?, options?): ${what} must be a name, got ${show(value)}`,
      );
  const description = `indexeddb:${dbName}/${storeName}`;
  checkOptions('idbStore', options, OPTION_RULES);
  if (typeof indexedDB === 'undefined') {
    throw new StoreAccessError(
      'idbStore: IndexedDB is not available here; in Node use sqliteStore() or memoryStore().',
      description,
    );
  }
  let connection: Promise<IDBDatabase> | undefined;
  let closed = false;
  // taken once, before the first connection, and kept across reconnections until close()
  // what to call to go without the lock: (before, the description, "name/scalems", was given as the database's name)
  const unlocked = `idbStore(${JSON.stringify(dbName)}, ${JSON.stringify(storeName)}, { unlocked: true })`;
  const lock = acquireLock(`scalems-store:${dbName}/${storeName}`, description, options.unlocked === true, unlocked);

  const database = (): Promise<IDBDatabase> => {
    if (closed)
      return Promise.reject(new StoreClosedError(`${description}: the store is closed; open it again to use it.`));
    connection ??= lock
      .then(() => openVerified(dbName, storeName, description))
      .then((db) => {
        // Let other connections upgrade the database (another store name in it); reopen on next use.
        db.onversionchange = db.onclose = () => {
          db.close();
          if (!closed) connection = undefined;
        };
        return db;
      });
    return connection;
  };
  const useStore: UseStore = (mode, callback) =>
    database().then((db) => callback(db.transaction(storeName, mode).objectStore(storeName)));
  database().catch(() => undefined); // start opening now; the error is reported by the operations

  const written = (write: Promise<void>): Promise<void> => write.catch((error: unknown) => writeFailure(error));
  const writeFailure = (error: unknown): never => {
    const name = domName(error);
    if (error instanceof ScalemsError || name === undefined) throw error;
    if (name === 'QuotaExceededError')
      throw new StoreWriteError(
        `${description}: the browser's storage for this origin is full (QuotaExceededError). ${KEPT}: free ` +
          "space (this origin's other data; or ask for persistent storage, navigator.storage.persist()) and they land.",
        description,
        'disk full',
        { cause: error },
      );
    const message = (error as { message?: unknown }).message;
    const detail = typeof message === 'string' && message !== '' ? `${name}: ${message}` : name;
    throw new StoreWriteError(
      `${description}: the browser failed a write (${detail}). ${KEPT}.`,
      description,
      'i/o error',
      {
        cause: error,
      },
    );
  };

  const store: Store = {
    description,
    assertStorable,
    get: <V>(key: string) => get<V>(key, useStore),
    set: async (key, value) => {
      assertStorable(key, value);
      await written(set(key, value, useStore));
    },
    setMany: async (batch) => {
      for (const [key, value] of batch) assertStorable(key, value);
      if (batch.length > 0)
        await written(
          setMany(
            batch.map(([key, value]) => [key, value]),
            useStore,
          ),
        );
    },
    del: (key) => written(del(key, useStore)),
    keys: async () => (await keys(useStore)).filter((key): key is string => typeof key === 'string'),
    entries: async <V>() =>
      (await entries<IDBValidKey, V>(useStore)).filter((entry): entry is [string, V] => typeof entry[0] === 'string'),
    close: async () => {
      if (closed) return;
      const open = connection;
      closed = true;
      const db = await open?.catch(() => undefined);
      db?.close();
      await (await lock.catch(() => undefined))?.release();
    },
  };
  return withInternalWrites(store, {
    setManyChecked: async (batch) => {
      if (batch.length > 0)
        await written(
          setMany(
            batch.map(([key, value]) => [key, value]),
            useStore,
          ),
        );
    },
  });
}

export interface IdbStoreOptions {
  /**
   * Open the store where the browser gives no Web Locks (a page not in a secure context: http:// other than
   * localhost). Only another `idbStore` of this page is kept out then: another tab can open the same store at once,
   * and each overwrites the other's records. Default false: there, opening rejects with `StoreAccessError`.
   */
  unlocked?: boolean;
}

const OPTION_RULES = { unlocked: rules.flag } satisfies RulesOf<IdbStoreOptions>;

const KEPT =
  'Nothing of the failed batch was written; a workflow keeps those records and writes them again on its next ' +
  'write, flushed() or close()';

/** The locks this realm (page, worker, Node process) holds: another `idbStore` of it is kept out without Web Locks. */
const heldHere = new Set<string>();

interface WebLock {
  /** Lets the lock go; resolves once another opener can have it. */
  release(): Promise<void>;
}

/** The origin of this page or worker, as messages name it. */
const originName = (): string => (globalThis as { location?: { origin?: string } }).location?.origin ?? 'this origin';

/**
 * Takes the lock `name` if it is free, and holds it until `release()`; rejects with `StoreLockedError` if another
 * holds it. The lock of this realm always; the Web Lock where there is a Web Locks API; where a browser has none,
 * rejects with `StoreAccessError` unless `unlocked`.
 */
async function acquireLock(name: string, description: string, unlocked: boolean, orElse: string): Promise<WebLock> {
  if (heldHere.has(name)) throw lockedError(name, description, []);
  heldHere.add(name);
  let web: WebLock | undefined;
  try {
    web = await acquireWebLock(name, description, unlocked, orElse);
  } catch (error) {
    heldHere.delete(name);
    throw error;
  }
  return {
    release: async () => {
      heldHere.delete(name);
      await web?.release();
    },
  };
}

/**
 * Takes the Web Lock `name` if it is free, and holds it until `release()`; rejects with `StoreLockedError` if
 * another holds it. Resolves `undefined` where there is no Web Locks API and that is allowed (Node; a browser page
 * not in a secure context, with `unlocked`); else rejects with `StoreAccessError`.
 */
async function acquireWebLock(
  name: string,
  description: string,
  unlocked: boolean,
  orElse: string,
): Promise<WebLock | undefined> {
  const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
  if (locks === undefined) {
    // a browser (a page or a worker: they say whether they are a secure context) without Web Locks
    const secure = (globalThis as { isSecureContext?: unknown }).isSecureContext;
    if (typeof secure !== 'boolean' || unlocked) return undefined;
    throw new StoreAccessError(
      `${description}: this browser gives this page no Web Locks (${
        secure
          ? 'it has no Web Locks API'
          : `${originName()} is not a secure context: browsers give them to https, and to http on localhost`
      }), and without one nothing keeps another tab from opening the store at once and overwriting its records. ` +
        `Serve the page over https (or from localhost); or, if only one tab will ever open it, open it with ${orElse}.`,
      description,
    );
  }
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let request!: Promise<unknown>;
  const granted = await new Promise<boolean>((resolve, reject) => {
    // `ifAvailable`: not granted (null) at once rather than queued behind the holder
    try {
      request = locks.request(name, { ifAvailable: true, mode: 'exclusive' }, (lock) => {
        resolve(lock !== null);
        return lock === null ? undefined : held;
      });
    } catch (error) {
      reject(error);
      return;
    }
    request.catch(reject);
  }).catch((error: unknown) => {
    throw denied(error, description, 'Web Locks');
  });
  if (granted)
    return {
      release: async () => {
        release();
        await request.catch(() => undefined); // settles once the lock is let go
      },
    };
  // who holds it, as far as a browser tells: its client id (a tab or worker; opaque), not which one it is
  const holders = await locks.query().then(
    (state) => (state.held ?? []).filter((l) => l.name === name).map((l) => l.clientId ?? ''),
    () => [],
  );
  throw lockedError(name, description, holders);
}

function lockedError(name: string, description: string, holders: readonly string[]): StoreLockedError {
  const origin = originName();
  const client = holders.length > 0 ? ` (client ${holders.join(', ')})` : '';
  return new StoreLockedError(
    `${description} is in use by another tab or worker of this origin (${origin}), or by another ` +
      `idbStore of this page: it holds the store's lock "${name}"${client}. Close the workflow there ` +
      '(workflow.close()) or that tab, then open the store again; or use another database name. Nothing was ' +
      'read or written.',
    { pid: 0, host: origin },
  );
}

/** The name of a `DOMException` (or of an error like one: fake-indexeddb's), else undefined. */
function domName(error: unknown): string | undefined {
  const name = typeof error === 'object' && error !== null ? (error as { name?: unknown }).name : undefined;
  return typeof name === 'string' && name !== '' ? name : undefined;
}

/** A browser's refusal (`SecurityError`: a sandboxed frame, a `data:` URL) as `StoreAccessError`; others as is. */
function denied(error: unknown, description: string, what: string): unknown {
  if (domName(error) !== 'SecurityError') return error;
  const message = (error as { message?: unknown }).message;
  const detail = typeof message === 'string' && message !== '' ? message : 'SecurityError';
  return new StoreAccessError(
    `${description}: this page may not use ${what} (${detail}: a sandboxed frame without allow-same-origin, a ` +
      'data: or opaque origin, or storage blocked by the browser settings). Open the workflow from a page of a ' +
      'regular origin, or use memoryStore().',
    description,
    { cause: error },
  );
}

async function openVerified(dbName: string, storeName: string, description: string): Promise<IDBDatabase> {
  let db = await openDatabase(dbName, storeName, description);
  if (!db.objectStoreNames.contains(storeName)) {
    // An existing database without our object store: add it in a version upgrade.
    const version = db.version + 1;
    db.close();
    db = await openDatabase(dbName, storeName, description, version);
  }
  try {
    await verifyMeta(db, storeName, description);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

/**
 * Opens the database (at `version`: an upgrade that adds the object store). An upgrade that another open connection
 * blocks (another tab's or this page's code's, to the same database) rejects with `StoreLockedError` at once, rather
 * than wait for it to close, maybe never; if it opens later all the same, it is closed.
 */
function openDatabase(dbName: string, storeName: string, description: string, version?: number): Promise<IDBDatabase> {
  return new Promise<IDBDatabase>((resolve, reject) => {
    let request: IDBOpenDBRequest;
    try {
      request = indexedDB.open(dbName, version);
    } catch (error) {
      reject(denied(error, description, 'IndexedDB'));
      return;
    }
    let blocked = false;
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
    };
    request.onsuccess = () => {
      if (blocked) request.result.close();
      else resolve(request.result);
    };
    request.onerror = () => reject(denied(request.error, description, 'IndexedDB'));
    request.onblocked = () => {
      blocked = true;
      const origin = originName();
      reject(
        new StoreLockedError(
          `${description}: adding the object store "${storeName}" to database "${dbName}" needs a version upgrade, ` +
            'which another open connection to that database blocks (another tab of this origin, or code of this ' +
            'page that opened it). Close that connection (or that tab), then open the store again; or use a ' +
            'database of its own. Nothing was read or written.',
          { pid: 0, host: origin },
        ),
      );
    };
  });
}

async function verifyMeta(db: IDBDatabase, storeName: string, description: string): Promise<void> {
  const read = db.transaction(storeName, 'readonly').objectStore(storeName);
  const [meta, count] = await Promise.all([
    promisifyRequest(read.get(IDB_META_KEY)) as Promise<Partial<Meta> | undefined>,
    promisifyRequest(read.count()),
  ]);
  if (meta === undefined) {
    if (count > 0) {
      throw new StoreCorruptError(
        `${description} holds ${count} entries but is not a scalems store (no format marker). It was left ` +
          'untouched: use another database or object store name, or delete this one to start afresh.',
      );
    }
    const write = db.transaction(storeName, 'readwrite');
    write
      .objectStore(storeName)
      .put({ format: 'scalems-store', version: IDB_STORE_VERSION } satisfies Meta, IDB_META_KEY);
    await promisifyRequest(write);
    return;
  }
  if (meta.format !== 'scalems-store' || typeof meta.version !== 'number') {
    throw new StoreCorruptError(
      `${description} is not a scalems store (its format marker is damaged). It was left untouched.`,
    );
  }
  if (meta.version !== IDB_STORE_VERSION) {
    throw new StoreVersionError(
      versionProblem(description, meta.version, IDB_STORE_VERSION, 'use another database name'),
      meta.version,
      IDB_STORE_VERSION,
    );
  }
}
