/** `memoryStore()`: a store in memory, kept by reference. */
import { StoreClosedError } from '../errors';
import { TASK_KEY_PREFIX } from './slot';
import type { TaskRecord } from './state';
import { withInternalWrites, type Store } from './store';

/**
 * A store that keeps everything in memory, by reference. The default in a browser, and the store
 * of choice for tests and throw-away workflows: nothing survives the process.
 */
export function memoryStore(): Store {
  const data = new Map<string, unknown>();
  /**
   * The task records the workflow writes (`setRecords`), by the id in their key `task:<id>`: the record's own id
   * string is the map's key, where the key would be one more string held per task for good (32 bytes, a million
   * times). A key written otherwise (`set`, `setMany`) lives in `data`, and takes the place of the record's.
   */
  const records = new Map<string, unknown>();
  let closed = false;
  const open = (): void => {
    if (closed)
      throw new StoreClosedError('memoryStore: the store is closed; a memory store cannot be reopened: use a new one');
  };
  /** The id in a task record's key, undefined for any other key. */
  const idOf = (key: string): string | undefined =>
    key.startsWith(TASK_KEY_PREFIX) ? key.slice(TASK_KEY_PREFIX.length) : undefined;
  const put = (key: string, value: unknown): void => {
    const id = idOf(key);
    if (id !== undefined && records.size > 0) records.delete(id);
    data.set(key, value);
  };
  const all = (): Array<[string, unknown]> => {
    const out = [...data.entries()];
    for (const [id, record] of records) out.push([TASK_KEY_PREFIX + id, record]);
    return out;
  };
  const setRecords = async (entries: ReadonlyArray<readonly [string, TaskRecord]>): Promise<void> => {
    open();
    for (const [key, record] of entries) {
      const { id } = record;
      // the key is `task:<id>` (checked without making that string: a workflow writes a million of them)
      if (key.length !== TASK_KEY_PREFIX.length + id.length || !key.endsWith(id) || !key.startsWith(TASK_KEY_PREFIX)) {
        put(key, record); // another key (the interface allows it): kept by that key
        continue;
      }
      // a key written with `set` before: the record takes its place
      if (data.size > 0) data.delete(key);
      records.set(id, record);
    }
  };
  const store: Store = {
    description: 'memory',
    persistent: false,
    async get<V>(key: string) {
      open();
      const id = idOf(key);
      if (id !== undefined && records.has(id)) return records.get(id) as V;
      return data.get(key) as V | undefined;
    },
    async set(key, value) {
      open();
      put(key, value);
    },
    async setMany(entries) {
      open();
      for (const [k, v] of entries) put(k, v);
    },
    async del(key) {
      open();
      const id = idOf(key);
      if (id !== undefined) records.delete(id);
      data.delete(key);
    },
    async keys() {
      open();
      return all().map(([key]) => key);
    },
    async entries<V>() {
      open();
      return all() as Array<[string, V]>;
    },
    async close() {
      closed = true;
    },
  };
  return withInternalWrites(store, { setRecords });
}
