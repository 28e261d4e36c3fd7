/** How committed records reach the store: behind the commits, in batches (src/store/write-behind.ts). */
import { memoryStore } from '../src/store/memory';
import { TaskSlot } from '../src/store/slot';
import type { TaskRecord } from '../src/store/state';
import type { Store } from '../src/store/store';
import { SETTLED_BATCH, SETTLED_DELAY_MS, WriteBehind } from '../src/store/write-behind';

/** A memory store that counts the records handed to it, batch by batch. */
function countingStore(): Store & { batches: number[] } {
  const inner = memoryStore();
  const batches: number[] = [];
  return {
    ...inner,
    batches,
    async setMany(entries) {
      batches.push(entries.length);
      await inner.setMany(entries);
    },
  };
}

/** `n` slots of tasks committed as `state` (ids from `from` on). */
function slots(n: number, state: TaskRecord['state'], from = 0): TaskSlot[] {
  return Array.from({ length: n }, (_, i) => {
    const slot = new TaskSlot(`t-${from + i}`, from + i);
    slot.committed = {
      id: slot.id,
      kind: 'function',
      name: 't',
      args: [],
      requirements: {},
      inputs: [],
      state,
      attempts: state === 'succeeded' ? 1 : 0,
      pending: 0,
    };
    return slot;
  });
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

describe('WriteBehind', () => {
  test(`settled records wait up to ${SETTLED_DELAY_MS} ms, unless ${SETTLED_BATCH} of them wait: those go at once`, async () => {
    const store = countingStore();
    const behind = new WriteBehind(store);
    behind.changed(slots(SETTLED_BATCH - 1, 'succeeded'));
    expect(store.batches).toEqual([]); // waiting for the window
    behind.changed(slots(2, 'succeeded', SETTLED_BATCH)); // the batch is full: handed over with this commit
    expect(store.batches).toEqual([SETTLED_BATCH + 1]);
    behind.changed(slots(3, 'succeeded', 2 * SETTLED_BATCH)); // a new batch, waiting for its own window
    expect(store.batches).toEqual([SETTLED_BATCH + 1]);
    await sleep(SETTLED_DELAY_MS + 50);
    expect(store.batches).toEqual([SETTLED_BATCH + 1, 3]);
    await behind.written();
  });

  test('records of tasks in flight do not count toward a settled batch', async () => {
    const store = countingStore();
    const behind = new WriteBehind(store);
    behind.changed(slots(SETTLED_BATCH, 'running'));
    behind.changed(slots(1, 'succeeded', SETTLED_BATCH));
    expect(store.batches).toEqual([]);
    behind.writeAll();
    expect(store.batches).toEqual([SETTLED_BATCH + 1]);
    await behind.written();
  });
});
