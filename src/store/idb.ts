/** `idbStore(name)`: a store in IndexedDB through idb-keyval (browsers). */
import type * as IdbKeyval from 'idb-keyval' with { 'resolution-mode': 'import' };
import { StoreAccessError, StoreClosedError, StoreCorruptError, StoreLockedError, StoreVersionError } from '../errors';
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
 * written. Its `holder` is `{ pid: 0, host: <origin> }`: a browser names no process, nor which tab. Where
 * there is no Web Locks API (Node with fake-indexeddb, old browsers) there is no lock.
 */
export function idbStore(dbName: string, storeName = 'scalems'): Store {
  if (typeof indexedDB === 'undefined') {
    throw new StoreAccessError(
      'idbStore: IndexedDB is not available here; in Node use sqliteStore() or memoryStore().',
      `indexeddb:${dbName}/${storeName}`,
    );
  }
  const description = `indexeddb:${dbName}/${storeName}`;
  let connection: Promise<IDBDatabase> | undefined;
  let closed = false;
  // taken once, before the first connection, and kept across reconnections until close()
  const lock = acquireWebLock(`scalems-store:${dbName}/${storeName}`, description);

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

  const store: Store = {
    description,
    assertStorable,
    get: <V>(key: string) => get<V>(key, useStore),
    set: async (key, value) => {
      assertStorable(key, value);
      await set(key, value, useStore);
    },
    setMany: async (batch) => {
      for (const [key, value] of batch) assertStorable(key, value);
      if (batch.length > 0)
        await setMany(
          batch.map(([key, value]) => [key, value]),
          useStore,
        );
    },
    del: (key) => del(key, useStore),
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
        await setMany(
          batch.map(([key, value]) => [key, value]),
          useStore,
        );
    },
  });
}

interface WebLock {
  /** Lets the lock go; resolves once another opener can have it. */
  release(): Promise<void>;
}

/**
 * Takes the Web Lock `name` if it is free, and holds it until `release()`; rejects with `StoreLockedError` if
 * another holds it. Resolves `undefined` where there is no Web Locks API.
 */
async function acquireWebLock(name: string, description: string): Promise<WebLock | undefined> {
  const locks = (globalThis as { navigator?: { locks?: LockManager } }).navigator?.locks;
  if (locks === undefined) return undefined;
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  let request!: Promise<unknown>;
  const granted = await new Promise<boolean>((resolve, reject) => {
    // `ifAvailable`: not granted (null) at once rather than queued behind the holder
    request = locks.request(name, { ifAvailable: true, mode: 'exclusive' }, (lock) => {
      resolve(lock !== null);
      return lock === null ? undefined : held;
    });
    request.catch(reject);
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
    (state) => (state.held ?? []).filter((l) => l.name === name).map((l) => l.clientId),
    () => [],
  );
  const origin = (globalThis as { location?: { origin?: string } }).location?.origin ?? 'this origin';
  const client = holders.length > 0 ? ` (client ${holders.join(', ')})` : '';
  throw new StoreLockedError(
    `${description} is in use by another tab or worker of this origin (${origin}), or by another ` +
      `idbStore of this page: it holds the store's Web Lock "${name}"${client}. Close the workflow there ` +
      '(workflow.close()) or that tab, then open the store again; or use another database name. Nothing was ' +
      'read or written.',
    { pid: 0, host: origin },
  );
}

async function openVerified(dbName: string, storeName: string, description: string): Promise<IDBDatabase> {
  let db = await openDatabase(dbName, storeName);
  if (!db.objectStoreNames.contains(storeName)) {
    // An existing database without our object store: add it in a version upgrade.
    const version = db.version + 1;
    db.close();
    db = await openDatabase(dbName, storeName, version);
  }
  try {
    await verifyMeta(db, storeName, description);
    return db;
  } catch (error) {
    db.close();
    throw error;
  }
}

function openDatabase(dbName: string, storeName: string, version?: number): Promise<IDBDatabase> {
  const request = indexedDB.open(dbName, version);
  request.onupgradeneeded = () => {
    if (!request.result.objectStoreNames.contains(storeName)) request.result.createObjectStore(storeName);
  };
  return promisifyRequest(request);
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
