/** `memoryStore()`: a store in memory, kept by reference. */
import { StoreClosedError } from '../errors';
import type { Store } from './store';

/**
 * A store that keeps everything in memory, by reference. The default in a browser, and the store
 * of choice for tests and throw-away workflows: nothing survives the process.
 */
export function memoryStore(): Store {
  const data = new Map<string, unknown>();
  let closed = false;
  const open = (): void => {
    if (closed)
      throw new StoreClosedError('memoryStore: the store is closed; a memory store cannot be reopened: use a new one');
  };
  return {
    description: 'memory',
    persistent: false,
    async get<V>(key: string) {
      open();
      return data.get(key) as V | undefined;
    },
    async set(key, value) {
      open();
      data.set(key, value);
    },
    async setMany(entries) {
      open();
      for (const [k, v] of entries) data.set(k, v);
    },
    async del(key) {
      open();
      data.delete(key);
    },
    async keys() {
      open();
      return [...data.keys()];
    },
    async entries<V>() {
      open();
      return [...data.entries()] as Array<[string, V]>;
    },
    async close() {
      closed = true;
    },
  };
}
