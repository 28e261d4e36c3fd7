/** `memoryStore()`: a store in memory, kept by reference. */
import { StoreClosedError } from '../errors';
import { TASK_KEY_PREFIX } from './slot';
import type { TaskRecord } from './state';
import { withInternalWrites, type Store } from './store';

/**
 * @internal Records that a later record of their task may replace, waiting in a memory store's log before it is
 * indexed.
 */
export const MAX_REPLACEABLE = 65_536;

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
  /**
   * Records written since the map was last brought up to date, in the order they were written: the map takes them
   * when the store is next read or written otherwise (`index`). A workflow of a million tasks writes a million
   * records and reads none back, and a set into a map of them costs cache misses that grow with the map: 0.7 µs a
   * task at a million tasks, against 0.5 at 100 000 (`--cpu-prof`; issue #11's scale goal).
   *
   * What the log holds beyond the map is the records a later one of the same task replaces. A task's first success
   * (`attempts` 1) is written once, or again as its label is set (once) or taken by a later task: a later success has
   * started again, and counts 2. Any other record (in flight, failed, cancelled, a retry's) may be replaced, and once
   * {@link MAX_REPLACEABLE} of those wait, the log is indexed. So the log costs a pointer per task, and holds at most
   * that many records (and a few per task) that the map would have let go.
   */
  let unindexed: TaskRecord[] = [];
  /** how many of the records in `unindexed` a later record of the same task may replace */
  let replaceable = 0;
  let closed = false;
  /** Throws if the store is closed; else indexes the waiting records, so that what follows sees every write. */
  const open = (): void => {
    if (closed)
      throw new StoreClosedError('memoryStore: the store is closed; a memory store cannot be reopened: use a new one');
    if (unindexed.length > 0) index();
  };
  /** Puts the waiting records in the map, in the order they were written. */
  const index = (): void => {
    const log = unindexed;
    unindexed = [];
    replaceable = 0;
    for (const record of log) setRecord(record);
  };
  /** A record under its key `task:<id>`: in place of a value written under that key with `set`, if any. */
  const setRecord = (record: TaskRecord): void => {
    if (data.size > 0) data.delete(TASK_KEY_PREFIX + record.id);
    records.set(record.id, record);
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
    if (closed) open();
    for (const [key, record] of entries) {
      const { id } = record;
      // the key is `task:<id>` (checked without making that string: a workflow writes a million of them)
      if (key.length !== TASK_KEY_PREFIX.length + id.length || !key.endsWith(id) || !key.startsWith(TASK_KEY_PREFIX)) {
        open(); // after the records written before it
        put(key, record); // another key (the interface allows it): kept by that key
        continue;
      }
      unindexed.push(record);
      if ((record.attempts !== 1 || record.state !== 'succeeded') && ++replaceable >= MAX_REPLACEABLE) index();
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
