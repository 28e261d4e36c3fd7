import 'fake-indexeddb/auto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { memoryStore } from '../src/store/memory';
import { sqliteStore } from '../src/store/sqlite';
import { idbStore } from '../src/store/idb';
import { storeConformance } from './store-conformance';

storeConformance('memoryStore', { serialises: false }, async () => ({ store: memoryStore() }));

storeConformance('sqliteStore', { serialises: true }, async () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-store-'));
  const file = path.join(dir, 'nested', 'state.sqlite');
  return {
    store: sqliteStore(file),
    reopen: async () => sqliteStore(file),
    cleanup: async () => fs.rmSync(dir, { recursive: true, force: true }),
  };
});

let databases = 0;
storeConformance('idbStore', { serialises: true }, async () => {
  const name = `scalems-conformance-${++databases}`;
  return {
    store: idbStore(name),
    reopen: async () => idbStore(name),
    cleanup: async () => {
      await new Promise<void>((resolve, reject) => {
        const request = indexedDB.deleteDatabase(name);
        request.onsuccess = () => resolve();
        request.onerror = () => reject(request.error);
        request.onblocked = () => reject(new Error(`${name}: a connection was left open`));
      });
    },
  };
});
