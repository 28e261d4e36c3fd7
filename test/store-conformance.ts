import { StoreClosedError, UnstorableValueError } from '../src/errors';
import type { Store } from '../src/store/store';
import { copyRecord, type TaskRecord } from '../src/store/state';

/** What the store under test can do, so that the suite asks only what it promises. */
export interface StoreCapabilities {
  /** Values are serialised (not kept by reference): unstorable values are refused, writes are snapshots. */
  serialises: boolean;
}

export interface OpenedStore {
  store: Store;
  /** For persistent stores: opens the same store again (after `store` was closed). */
  reopen?: () => Promise<Store>;
  cleanup?: () => Promise<void>;
}

/**
 * Task records of every shape a store is given: the fields all there or mostly absent, times that are milliseconds
 * and times that are not, a key that is and one that is not `task:<id>`, results that are `null`, `false`, text.
 */
function sampleRecords(): Array<[string, TaskRecord]> {
  const base: TaskRecord = {
    id: 'f-0123abcd',
    kind: 'function',
    name: 'f',
    args: [1, { a: [null, 'é\u0000'] }],
    requirements: {},
    inputs: [],
    executor: 'executor-1',
    state: 'succeeded',
    attempts: 1,
    pending: 0,
    submittedAt: 1_795_981_498_606,
    readyAt: 1_795_981_498_606,
    startedAt: 1_795_981_498_609,
    finishedAt: 1_795_981_498_610,
    result: { n: 1 },
  };
  // records as the engine makes them: copyRecord's fields, in its order
  const made: Array<[string, TaskRecord]> = [
    [`task:${base.id}`, base],
    ['task:other-key', { ...base, id: 'x-1', result: null }],
    [
      'task:every-field',
      {
        ...base,
        id: 'every-field',
        kind: 'executable',
        label: 'lbl',
        key: 'k',
        parent: 'p-1',
        inputs: ['u-1', 'u-2'],
        group: 'big',
        requirements: { coresPerRank: 2, walltime: 60 },
        state: 'failed',
        pending: 1,
        result: false,
        error: { name: 'Error', message: 'no', stack: 'Error: no' },
        artifacts: { 'out.txt': '/tmp/out.txt' },
      },
    ],
    [
      'task:sparse',
      {
        id: 'sparse',
        kind: 'function',
        name: 'g',
        args: [],
        requirements: {},
        inputs: [],
        state: 'submitted',
        attempts: 0,
        pending: 0,
      },
    ],
    [
      'task:times',
      { ...base, id: 'times', submittedAt: 0.5, readyAt: 2 ** 60, startedAt: -3, finishedAt: 1e-7, result: 'text' },
    ],
    [
      'task:only-later-times',
      { ...base, id: 'only-later-times', submittedAt: undefined, readyAt: undefined, startedAt: 12 },
    ],
    ['task:far', { ...base, id: 'far', submittedAt: Number.MAX_SAFE_INTEGER, finishedAt: -Number.MAX_SAFE_INTEGER }],
    // text that looks like the brackets, quotes and commas around it, in the key and in the values
    [
      'task:q"],[\\"x\\\\', // task:q"],[\"x\\
      {
        ...base,
        id: 'q"],[\\"x\\\\',
        name: '[{"',
        args: ['"]', '\\', '\\"', '}]},[', { '"k[': ['\u2028', '\ud800', '😀'] }],
        result: '\\',
      },
    ],
  ];
  return made.map(([key, record]) => [key, copyRecord(record)]);
}

/** The behaviour every `Store` must have. Call inside a test file; it defines a `describe` block. */
export function storeConformance(
  name: string,
  capabilities: StoreCapabilities,
  open: () => Promise<OpenedStore>,
): void {
  describe(`Store conformance: ${name}`, () => {
    let opened: OpenedStore;
    let store: Store;
    beforeEach(async () => {
      opened = await open();
      store = opened.store;
    });
    afterEach(async () => {
      await store.close();
      await opened.cleanup?.();
    });

    test('has a description', () => {
      expect(store.description).toMatch(/\S/);
    });

    test('get of a missing key is undefined, and the key is not listed', async () => {
      expect(await store.get('missing')).toBeUndefined();
      expect(await store.keys()).not.toContain('missing');
    });

    test('set/get round-trips nested JSON, null and edge-case strings', async () => {
      const value = {
        id: 'task:abc',
        state: 'succeeded',
        nested: { list: [1, -2.5, 1e300, 'x', true, false, null, { deep: [[[]]] }], empty: {} },
        text: 'unicode ✓ 𝄞 "quotes" \\ \n \u0000 lone \ud800 surrogate',
      };
      await store.set('task:abc', value);
      await store.set('null', null);
      await store.set('', 'empty key');
      await store.set('weird "key" % _ ✓', 0);
      expect(await store.get('task:abc')).toEqual(value);
      expect(await store.get('null')).toBeNull();
      expect(await store.get('')).toBe('empty key');
      expect(await store.get('weird "key" % _ ✓')).toBe(0);
    });

    test('set overwrites', async () => {
      await store.set('k', { v: 1 });
      await store.set('k', { v: 2, w: [3] });
      expect(await store.get('k')).toEqual({ v: 2, w: [3] });
      expect(await store.keys()).toEqual(['k']);
    });

    test('setMany writes every entry; a key repeated in the batch keeps its last value', async () => {
      await store.set('a', 'old');
      await store.setMany([
        ['a', 1],
        ['b', { two: 2 }],
        ['c', [3]],
        ['b', { two: 'last' }],
      ]);
      await store.setMany([]);
      expect(Object.fromEntries(await store.entries())).toEqual({ a: 1, b: { two: 'last' }, c: [3] });
    });

    test('in a large batch too, a repeated key keeps its last value (wherever the repeats fall)', async () => {
      const batch: Array<[string, number]> = Array.from({ length: 100 }, (_, i) => [`k${i}`, i]);
      batch[20] = ['k5', -20]; // repeats close together
      batch[90] = ['k40', -90]; // and far apart
      await store.setMany(batch);
      const stored = new Map(await store.entries<number>());
      expect(stored.get('k5')).toBe(-20);
      expect(stored.get('k40')).toBe(-90);
      expect(stored.size).toBe(98);
    });

    test('del removes a key; deleting a missing key is a no-op', async () => {
      await store.setMany([
        ['a', 1],
        ['b', 2],
      ]);
      await store.del('a');
      await store.del('never-there');
      expect(await store.get('a')).toBeUndefined();
      expect(await store.keys()).toEqual(['b']);
    });

    test('keys and entries stay complete and consistent over many operations (5 000 keys)', async () => {
      const model = new Map<string, unknown>();
      for (let start = 0; start < 5000; start += 1000) {
        const batch: Array<[string, unknown]> = [];
        for (let i = start; i < start + 1000; i++) batch.push([`task:${i}`, { i, state: 'submitted' }]);
        await store.setMany(batch);
        for (const [k, v] of batch) model.set(k, v);
      }
      for (let i = 0; i < 5000; i += 7) {
        await store.set(`task:${i}`, { i, state: 'succeeded', result: [i] });
        model.set(`task:${i}`, { i, state: 'succeeded', result: [i] });
      }
      for (let i = 3; i < 5000; i += 11) {
        await store.del(`task:${i}`);
        model.delete(`task:${i}`);
      }
      const keys = await store.keys();
      const entries = await store.entries();
      expect(new Set(keys).size).toBe(keys.length);
      expect([...keys].sort()).toEqual([...model.keys()].sort());
      expect(entries.map(([k]) => k)).toEqual(keys);
      expect(new Map(entries)).toEqual(model);
    });

    test('values survive close and reopen (persistent stores)', async () => {
      if (!opened.reopen) return; // not persistent
      await store.setMany([
        ['a', { nested: [1, { b: 'c' }] }],
        ['gone', 1],
      ]);
      await store.del('gone');
      await store.close();
      store = await opened.reopen();
      expect(await store.entries()).toEqual([['a', { nested: [1, { b: 'c' }] }]]);
    });

    test('a read sees every write made before it, awaited or not; close waits for writes in flight', async () => {
      void store.setMany(Array.from({ length: 500 }, (_, i) => [`k${i}`, { i }] as const));
      void store.set('k0', 'changed');
      void store.del('k1');
      expect(await store.get('k0')).toBe('changed');
      expect(await store.get('k1')).toBeUndefined();
      expect(await store.get('k499')).toEqual({ i: 499 });
      void store.set('last', 1);
      expect((await store.keys()).length).toBe(500);
      if (!opened.reopen) return;
      void store.set('written-at-close', true);
      await store.close();
      store = await opened.reopen();
      expect(await store.get('written-at-close')).toBe(true);
    });

    test('setManyChecked, where a store has it, writes what setMany writes', async () => {
      if (store.setManyChecked === undefined) return;
      const value = { nested: [1, { b: 'c' }], n: null, s: 'é\u0000' };
      await store.setManyChecked([
        ['a', value],
        ['b', 2],
      ]);
      expect(await store.get('a')).toEqual(value);
      expect(await store.get('b')).toBe(2);
    });

    test('setRecords, where a store has it, gives back each record as JSON would, fields in their order', async () => {
      if (store.setRecords === undefined) return;
      const records = sampleRecords();
      await store.setRecords(records);
      const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));
      for (const [key, record] of records) {
        const read = await store.get(key);
        expect(read).toEqual(asJson(record));
        expect(JSON.stringify(read)).toBe(JSON.stringify(record)); // the same fields, in the same order
      }
      const all = new Map(await store.entries());
      for (const [key, record] of records) expect(JSON.stringify(all.get(key))).toBe(JSON.stringify(record));
      // written again: the last record of a key is the one kept
      const [key, first] = records[0]!;
      await store.setRecords([[key, { ...first, state: 'failed', attempts: 2 }]]);
      expect(await store.get(key)).toMatchObject({ state: 'failed', attempts: 2 });
    });

    test('the records of a task written in turn, nothing read between, in one batch or several: the last is read', async () => {
      if (store.setRecords === undefined) return;
      const [[, base]] = sampleRecords() as [[string, TaskRecord]];
      // a task's life as the workflow writes it: a first success, then run again (its files were gone), then retried
      const life = (id: string): TaskRecord[] => [
        { ...base, id, state: 'succeeded', attempts: 1 },
        { ...base, id, state: 'submitted', attempts: 1, result: undefined },
        { ...base, id, state: 'running', attempts: 2, result: undefined },
        { ...base, id, state: 'failed', attempts: 2, result: undefined },
        { ...base, id, state: 'ready', attempts: 2, result: undefined },
        { ...base, id, state: 'succeeded', attempts: 3, result: { n: 3 } },
      ];
      const apart = life('apart');
      for (const record of apart) await store.setRecords([[`task:${record.id}`, record]]);
      const together = life('together').slice(0, 4); // ends failed
      await store.setRecords(together.map((record) => [`task:${record.id}`, record] as const));
      const stopped = life('stopped').slice(0, 2); // a first success, then submitted again
      for (const record of stopped) await store.setRecords([[`task:${record.id}`, record]]);
      const entries = new Map(await store.entries<TaskRecord>());
      for (const records of [apart, together, stopped]) {
        const last = records[records.length - 1]!;
        const key = `task:${last.id}`;
        expect(entries.get(key)).toMatchObject({ state: last.state, attempts: last.attempts });
        expect(await store.get(key)).toMatchObject({ state: last.state, attempts: last.attempts });
        expect((await store.keys()).filter((k) => k === key)).toHaveLength(1);
      }
    });

    test('setRecords and set on one key: the last write is what get, keys and entries see; del removes it', async () => {
      if (store.setRecords === undefined) return;
      const [[key, record]] = sampleRecords() as [[string, TaskRecord]];
      const asJson = (value: unknown): unknown => JSON.parse(JSON.stringify(value));
      await store.set(key, { plain: 1 });
      await store.setRecords([[key, record]]);
      expect(await store.get(key)).toEqual(asJson(record));
      await store.set(key, { plain: 2 });
      expect(await store.get(key)).toEqual({ plain: 2 });
      await store.setRecords([[key, { ...record, attempts: 3 }]]);
      expect(await store.get(key)).toMatchObject({ attempts: 3 });
      expect((await store.keys()).filter((k) => k === key)).toHaveLength(1);
      const listed = (await store.entries()).filter(([k]) => k === key);
      expect(listed).toHaveLength(1);
      expect(listed[0]![1]).toMatchObject({ attempts: 3 });
      await store.del(key);
      expect(await store.get(key)).toBeUndefined();
      expect(await store.keys()).not.toContain(key);
    });

    test('a store spread from it, with a setMany of its own, gets every write through that setMany', () => {
      // how a user logs or fails writes: the workflow writes with setRecords or setManyChecked where a store has them
      const spread: Store = { ...store, setMany: (entries) => store.setMany(entries) };
      expect(spread.setRecords).toBeUndefined();
      expect(spread.setManyChecked).toBeUndefined();
    });

    test('operations after close reject with StoreClosedError; close is idempotent', async () => {
      await store.set('a', 1);
      await store.close();
      await expect(store.close()).resolves.toBeUndefined();
      await expect(store.get('a')).rejects.toThrow(StoreClosedError);
      await expect(store.set('a', 2)).rejects.toThrow(StoreClosedError);
      await expect(store.setMany([['a', 2]])).rejects.toThrow(StoreClosedError);
      if (store.setManyChecked !== undefined)
        await expect(store.setManyChecked([['a', 2]])).rejects.toThrow(StoreClosedError);
      await expect(store.del('a')).rejects.toThrow(StoreClosedError);
      await expect(store.keys()).rejects.toThrow(StoreClosedError);
      await expect(store.entries()).rejects.toThrow(StoreClosedError);
    });

    if (!capabilities.serialises) return;

    test('stores a snapshot: changing the object after set does not change the stored value', async () => {
      const value = { list: [1] };
      await store.set('k', value);
      value.list.push(2);
      expect(await store.get('k')).toEqual({ list: [1] });
    });

    test('setMany with one unstorable value throws UnstorableValueError and writes nothing of the batch', async () => {
      await store.set('task:keep', { v: 'original' });
      const batch: Array<[string, unknown]> = [
        ['task:keep', { v: 'overwritten?' }],
        ['task:new', { v: 1 }],
        ['task:abc', { result: { data: [0, 1, 2, () => 3] } }],
        ['task:after', { v: 2 }],
      ];
      const error = await store.setMany(batch).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnstorableValueError);
      expect((error as Error).message).toContain('task:abc.result.data[3]');
      expect((error as Error).message).toContain('function');
      expect(await store.entries()).toEqual([['task:keep', { v: 'original' }]]);
    });

    class Point {
      constructor(readonly x: number) {}
    }
    const cyclic: Record<string, unknown> = { a: { b: [] as unknown[] } };
    ((cyclic.a as Record<string, unknown>).b as unknown[]).push(cyclic);
    const refused: Array<[string, unknown, string | RegExp]> = [
      ['function property', { meta: { fn: () => 1 } }, 'k.meta.fn is a function'],
      ['bigint', { n: 10n }, 'k.n is a bigint'],
      ['symbol value', { s: Symbol('s') }, 'k.s is a symbol'],
      ['symbol key', { [Symbol('s')]: 1 }, 'symbol-keyed'],
      ['NaN', { x: [NaN] }, 'k.x[0] is NaN'],
      ['Infinity', { x: -Infinity }, 'k.x is -Infinity'],
      ['undefined value', undefined, /k is undefined.*del\(key\)/],
      ['undefined in an array', [1, undefined], 'k[1] is undefined'],
      ['array hole', [1, , 3], 'k[1] is a hole'], // eslint-disable-line no-sparse-arrays
      ['Date', { when: new Date(0) }, /k\.when is an instance of Date.*toISOString/],
      ['Map', { m: new Map() }, 'k.m is an instance of Map'],
      ['Error', { e: new Error('x') }, /k\.e is an instance of Error.*message/],
      ['Uint8Array', { b: new Uint8Array(2) }, 'k.b is an instance of Uint8Array'],
      ['class instance', { p: new Point(1) }, 'k.p is an instance of Point'],
      ['cycle', cyclic, 'k.a.b[0] refers back to k (a cycle)'],
      ['non-identifier property', { 'a b': { c: () => 0 } }, 'k["a b"].c is a function'],
      // flat values (an array or object of leaves) take a shorter way in (storable.ts): refused there the same
      ['function in a flat array', [1, () => 2], 'k[1] is a function'],
      ['NaN in a flat array', ['a', NaN], 'k[1] is NaN'],
      ['class instance of leaves', new Point(1), 'k is an instance of Point'],
      ['Date, alone', new Date(0), /k is an instance of Date.*toISOString/],
      ['object of leaves with a prototype of its own', Object.create({ inherited: 1 }) as object, 'k is an instance'],
      ['bigint in a flat object', { a: 1, n: 10n }, 'k.n is a bigint'],
    ];
    test.each(refused)('refuses %s, naming the path, and writes nothing', async (_, value, message) => {
      await store.set('k', 'before');
      const error = await store.set('k', value).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(UnstorableValueError);
      expect((error as Error).message).toMatch(message);
      expect(await store.get('k')).toBe('before');
    });

    test('refuses a value nested deeper than 1000 levels, which JSON could not write or read back', async () => {
      const nest = (levels: number): unknown => {
        let v: unknown = 0;
        for (let i = 0; i < levels; i++) v = Object.freeze([v]);
        return v;
      };
      await store.set('ok', nest(1_000));
      expect(JSON.stringify(await store.get('ok'))).toBe(JSON.stringify(nest(1_000)));
      const error = await store.set('k', nest(2_500)).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(UnstorableValueError);
      expect((error as Error).message).toMatch(/nests deeper than 1000 levels; flatten it/);
      expect(await store.get('k')).toBeUndefined();
    });

    test('refuses a value nested too deeply to walk, instead of crashing', async () => {
      let deep: unknown = 0;
      for (let i = 0; i < 200_000; i++) deep = [deep];
      await expect(store.set('k', deep)).rejects.toThrow(UnstorableValueError);
      expect(await store.get('k')).toBeUndefined();
    });

    test('accepts what JSON keeps: undefined properties (omitted), shared references, null-prototype objects', async () => {
      const shared = { s: 1 };
      const bare = Object.create(null) as Record<string, unknown>;
      bare.x = 1;
      await store.set('k', { opt: undefined, a: shared, b: shared, bare });
      const back = await store.get<Record<string, unknown>>('k');
      expect(back).toEqual({ a: { s: 1 }, b: { s: 1 }, bare: { x: 1 } });
      expect(back && 'opt' in back && back.opt !== undefined).toBe(false);
    });
  });
}
