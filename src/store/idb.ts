/** `idbStore(name)`: a store in IndexedDB through idb-keyval (browsers). */
import type * as IdbKeyval from 'idb-keyval' with { 'resolution-mode': 'import' };
import { StoreClosedError, StoreCorruptError, StoreVersionError } from '../errors';
import { versionProblem, type Store } from './store';
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
 * error and nothing is written. `close()` closes the database connection. There is no cross-tab lock.
 */
export function idbStore(dbName: string, storeName = 'scalems'): Store {
  if (typeof indexedDB === 'undefined') {
    throw new Error('idbStore: IndexedDB is not available here; in Node use sqliteStore() or memoryStore().');
  }
  const description = `indexeddb:${dbName}/${storeName}`;
  let connection: Promise<IDBDatabase> | undefined;
  let closed = false;

  const database = (): Promise<IDBDatabase> => {
    if (closed)
      return Promise.reject(new StoreClosedError(`${description}: the store is closed; open it again to use it.`));
    connection ??= openVerified(dbName, storeName, description).then((db) => {
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

  return {
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
    setManyChecked: async (batch) => {
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
    },
  };
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
