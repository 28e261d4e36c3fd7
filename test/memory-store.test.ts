/**
 * What `memoryStore` holds besides what its conformance suite reads back: records written since the store was last
 * read wait in a log (see `memory.ts`), and a record that a later one of its task replaced is let go all the same.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { MAX_REPLACEABLE, memoryStore } from '../src/store/memory';
import type { TaskRecord } from '../src/store/state';

/** `global.gc` when node runs with --expose-gc (npm test does), else enabled here. */
function gc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const record = (id: string, state: TaskRecord['state'], attempts: number): TaskRecord => ({
  id,
  kind: 'function',
  name: 'f',
  args: [],
  requirements: {},
  inputs: [],
  state,
  attempts,
  pending: 0,
});
const entry = (r: TaskRecord): [string, TaskRecord] => [`task:${r.id}`, r];

/** Whether the object behind `ref` is collected, after a few collections. */
async function collected(ref: WeakRef<object>): Promise<boolean> {
  const collect = gc();
  for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
    await new Promise((r) => setTimeout(r, 5));
    collect();
  }
  return ref.deref() === undefined;
}

describe('memoryStore, written and never read', () => {
  test('a record that a later one of its task replaced is let go, once the log holds the bound of such records', async () => {
    const store = memoryStore();
    let ref!: WeakRef<object>;
    await (async () => {
      const running = record('x', 'running', 1);
      ref = new WeakRef(running);
      await store.setRecords!([entry(running)]);
    })();
    await store.setRecords!([entry(record('x', 'succeeded', 1))]);
    // fewer than the bound of records that may be replaced: the replaced one waits in the log
    const others = (n: number, from: number): Array<[string, TaskRecord]> =>
      Array.from({ length: n }, (_, i) => entry(record(`y${from + i}`, 'running', 1)));
    await store.setRecords!(others(MAX_REPLACEABLE - 2, 0));
    expect(await collected(ref)).toBe(false);
    // the bound: the log is indexed, and the map keeps the last record of each task
    await store.setRecords!(others(1, MAX_REPLACEABLE));
    expect(await collected(ref)).toBe(true);
    expect(await store.get('task:x')).toMatchObject({ state: 'succeeded' });
    expect(await store.keys()).toHaveLength(MAX_REPLACEABLE);
    await store.close();
  });

  test('set after records waiting in the log takes their place, and a record after it takes it back', async () => {
    const store = memoryStore();
    const n = 2 * MAX_REPLACEABLE;
    await store.setRecords!(Array.from({ length: n }, (_, i) => entry(record(`s${i}`, 'succeeded', 1))));
    await store.set('task:s0', { plain: true }); // after them: it takes the record's place
    await store.setRecords!([entry(record('s1', 'ready', 1))]);
    expect(await store.get('task:s0')).toEqual({ plain: true });
    expect(await store.get('task:s1')).toMatchObject({ state: 'ready' });
    expect(await store.get(`task:s${n - 1}`)).toMatchObject({ state: 'succeeded' });
    expect(await store.keys()).toHaveLength(n);
    await store.close();
  });
});
