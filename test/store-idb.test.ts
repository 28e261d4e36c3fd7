import 'fake-indexeddb/auto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { builtinModules } from 'node:module';
import {
  InvalidOptionsError,
  StoreAccessError,
  StoreCorruptError,
  StoreLockedError,
  StoreVersionError,
  StoreWriteError,
} from '../src/errors';
import { IDB_META_KEY, IDB_STORE_VERSION, idbStore } from '../src/store/idb';
import type { Store } from '../src/store/store';

let counter = 0;
let dbName: string;
const open: Store[] = [];
const openStore = (storeName?: string): Store => {
  const store = idbStore(dbName, storeName);
  open.push(store);
  return store;
};
beforeEach(() => {
  dbName = `scalems-idb-test-${++counter}`;
});
afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
});

const request = <T>(req: IDBRequest<T>): Promise<T> =>
  new Promise((resolve, reject) => {
    req.onsuccess = () => resolve(req.result);
    req.onerror = () => reject(req.error);
  });

/** Opens the raw database, creating `storeName` with `content` if given. */
async function rawDatabase(content?: {
  storeName: string;
  entries: Array<[IDBValidKey, unknown]>;
}): Promise<IDBDatabase> {
  const req = indexedDB.open(dbName);
  req.onupgradeneeded = () => {
    if (!content) return;
    const objectStore = req.result.createObjectStore(content.storeName);
    for (const [key, value] of content.entries) objectStore.put(value, key);
  };
  return request(req);
}
async function rawEntries(storeName: string): Promise<Array<[IDBValidKey, unknown]>> {
  const db = await rawDatabase();
  try {
    const objectStore = db.transaction(storeName, 'readonly').objectStore(storeName);
    const [keys, values] = await Promise.all([request(objectStore.getAllKeys()), request(objectStore.getAll())]);
    return keys.map((key, i) => [key, values[i]]);
  } finally {
    db.close();
  }
}

describe('idbStore', () => {
  test('keeps its format and version under a meta key that keys() and entries() leave out', async () => {
    const store = openStore();
    await store.set('a', 1);
    expect(await store.keys()).toEqual(['a']);
    expect(await store.entries()).toEqual([['a', 1]]);
    expect(await rawEntries('scalems')).toEqual([
      ['a', 1],
      [IDB_META_KEY, { format: 'scalems-store', version: IDB_STORE_VERSION }],
    ]);
  });

  test('a store of another version rejects every operation with StoreVersionError and is left untouched', async () => {
    const content: Array<[IDBValidKey, unknown]> = [
      ['task:1', { state: 'succeeded' }],
      [IDB_META_KEY, { format: 'scalems-store', version: 99 }],
    ];
    (await rawDatabase({ storeName: 'scalems', entries: content })).close();
    const store = openStore();
    await expect(store.keys()).rejects.toThrow(StoreVersionError);
    const error = await store.set('task:2', 1).catch((e: unknown) => e);
    expect(error).toMatchObject({ found: 99, expected: IDB_STORE_VERSION });
    expect((error as Error).message).toMatch(/indexeddb:.*newer scalems store format \(version 99\)/);
    await store.close();
    expect(await rawEntries('scalems')).toEqual(content);
  });

  test('an object store holding data but no format marker is not a scalems store, and is left untouched', async () => {
    const content: Array<[IDBValidKey, unknown]> = [['user-setting', 'dark-mode']];
    (await rawDatabase({ storeName: 'scalems', entries: content })).close();
    const store = openStore();
    await expect(store.get('user-setting')).rejects.toThrow(StoreCorruptError);
    await expect(store.set('x', 1)).rejects.toThrow(/holds 1 entries but is not a scalems store/);
    await store.close();
    expect(await rawEntries('scalems')).toEqual(content);
  });

  test('adds its object store to an existing database, next to the others, and two stores can share a database', async () => {
    (await rawDatabase({ storeName: 'app', entries: [['theme', 'dark']] })).close();
    const first = openStore('runs-a');
    await first.set('a', 1);
    const second = openStore('runs-b'); // upgrades the database while `first` is open
    await second.set('b', 2);
    await first.set('a2', 3); // `first` gave way to the upgrade and reopens transparently
    expect(await first.entries()).toEqual([
      ['a', 1],
      ['a2', 3],
    ]);
    expect(await second.entries()).toEqual([['b', 2]]);
    expect(await rawEntries('app')).toEqual([['theme', 'dark']]);
  });

  test('close() closes the database connection', async () => {
    const connections: IDBDatabase[] = [];
    const realOpen = indexedDB.open.bind(indexedDB);
    const spy = jest.spyOn(indexedDB, 'open').mockImplementation((name, version) => {
      const req = realOpen(name, version);
      req.addEventListener('success', () => connections.push(req.result));
      return req;
    });
    try {
      const store = openStore();
      await store.set('a', 1);
      const db = connections.at(-1);
      expect(db).toBeDefined();
      expect(() => db?.transaction('scalems', 'readonly')).not.toThrow();
      await store.close();
      expect(() => db?.transaction('scalems', 'readonly')).toThrow(/closed|InvalidState/i);
    } finally {
      spy.mockRestore();
    }
  });

  test('a second idbStore of the same object store in this realm is kept out until the first closes', async () => {
    const first = openStore();
    await first.set('a', 1);
    const second = idbStore(dbName);
    await expect(second.get('a')).rejects.toThrow(StoreLockedError);
    await expect(second.get('a')).rejects.toThrow(
      /is in use by another tab or worker of this origin.*or by another idbStore of this page/,
    );
    await second.close();
    expect(await openStore('other').keys()).toEqual([]); // another object store of the database is not locked by it
    await first.close();
    const third = openStore();
    expect(await third.get('a')).toBe(1);
  });

  describe('in a browser page that is not a secure context (no Web Locks: another tab could open the store)', () => {
    const global = globalThis as { isSecureContext?: boolean };
    beforeEach(() => (global.isSecureContext = false));
    afterEach(() => delete global.isSecureContext);

    test('opening is refused with StoreAccessError saying why and what to do', async () => {
      const store = openStore();
      await expect(store.get('a')).rejects.toThrow(StoreAccessError);
      await expect(store.get('a')).rejects.toThrow(
        /is not a secure context.*Serve the page over https.*unlocked: true/,
      );
      // the call to make, with the database's own name (before: its description, "<name>/scalems", as the name)
      await expect(store.get('a')).rejects.toThrow(
        `open it with idbStore(${JSON.stringify(dbName)}, "scalems", { unlocked: true }).`,
      );
    });

    test('{ unlocked: true } opens it (another idbStore of the page is still kept out)', async () => {
      const store = idbStore(dbName, 'scalems', { unlocked: true });
      open.push(store);
      await store.set('a', 1);
      expect(await store.get('a')).toBe(1);
      const second = idbStore(dbName, 'scalems', { unlocked: true });
      await expect(second.get('a')).rejects.toThrow(StoreLockedError);
      await second.close();
      expect(() => idbStore(dbName, 'scalems', { unlocked: 'yes' } as never)).toThrow(InvalidOptionsError);
    });
  });

  test('an upgrade that another open connection blocks rejects with StoreLockedError, not hangs', async () => {
    const other = await rawDatabase({ storeName: 'app', entries: [['theme', 'dark']] }); // never closes on its own
    try {
      const store = openStore();
      await expect(store.get('a')).rejects.toThrow(StoreLockedError);
      await expect(store.get('a')).rejects.toThrow(/needs a version upgrade, which another open connection/);
      await store.close();
    } finally {
      other.close();
    }
    const store = openStore(); // the connection gone, the upgrade goes through
    await store.set('a', 1);
    expect(await rawEntries('app')).toEqual([['theme', 'dark']]);
  });

  test("a write the browser refuses (the origin's quota is full) rejects with StoreWriteError", async () => {
    const store = openStore();
    await store.set('a', 1);
    const spy = jest.spyOn(IDBObjectStore.prototype, 'put').mockImplementation(() => {
      throw new DOMException('', 'QuotaExceededError');
    });
    try {
      const refused = store.setMany([['b', 2]]);
      await expect(refused).rejects.toThrow(StoreWriteError);
      await expect(store.set('b', 2)).rejects.toThrow(
        /storage for this origin is full \(QuotaExceededError\).*free space/,
      );
      await expect(store.setMany([['b', 2]])).rejects.toMatchObject({
        reason: 'disk full',
        path: `indexeddb:${dbName}/scalems`,
      });
    } finally {
      spy.mockRestore();
    }
    await store.setMany([['b', 2]]);
    expect(await store.get('b')).toBe(2);
  });

  test('IndexedDB denied to the page (a sandboxed frame, a data: URL) is StoreAccessError, not a raw SecurityError', async () => {
    const spy = jest.spyOn(indexedDB, 'open').mockImplementation(() => {
      throw new DOMException('access to the Indexed Database API is denied in this context', 'SecurityError');
    });
    try {
      const store = openStore();
      await expect(store.get('a')).rejects.toThrow(StoreAccessError);
      await expect(store.get('a')).rejects.toThrow(
        /may not use IndexedDB \(access to the Indexed Database API is denied/,
      );
    } finally {
      spy.mockRestore();
    }
  });

  test('says so clearly where there is no IndexedDB', () => {
    const saved = globalThis.indexedDB;
    try {
      // @ts-expect-error -- simulate an environment without IndexedDB
      delete globalThis.indexedDB;
      expect(() => idbStore('x')).toThrow(/IndexedDB is not available here/);
      expect(() => idbStore('x')).toThrow(StoreAccessError);
    } finally {
      globalThis.indexedDB = saved;
    }
  });

  test('imports nothing from Node (it is for browsers), directly or through its local imports', () => {
    const nodeModules = new Set(builtinModules.flatMap((name) => [name, `node:${name}`]));
    const seen = new Set<string>();
    const visit = (file: string): void => {
      if (seen.has(file)) return;
      seen.add(file);
      // `import type` and `export type ... from` are erased when compiled: they load nothing
      const source = fs.readFileSync(file, 'utf8').replace(/\b(?:import|export)\s+type\s[^;]*?\sfrom\s+'[^']+'/g, '');
      const specifiers = [...source.matchAll(/(?:from\s+|require\(\s*|import\(\s*)'([^']+)'/g)].map(
        (m) => m[1] as string,
      );
      for (const specifier of specifiers) {
        expect(`${path.basename(file)} imports ${specifier}: ${nodeModules.has(specifier)}`).toMatch(/false$/);
        if (specifier.startsWith('.')) visit(`${path.resolve(path.dirname(file), specifier)}.ts`);
      }
    };
    visit(path.resolve(__dirname, '../src/store/idb.ts'));
    expect([...seen].map((f) => path.basename(f)).sort()).toEqual([
      'errors.ts',
      'idb.ts',
      'options.ts', // its option rules
      'requirements.ts', // (through options.ts)
      'storable.ts',
      'store.ts',
    ]);
  });
});
