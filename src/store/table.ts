import { enableMapSet } from 'immer';
import { hash32 } from '../task/hash';

enableMapSet();

/**
 * A map of many entries kept as a shallow trie of `Map`s (64 × 64 buckets, then key → value), so
 * that an immer update copies two small index maps and one bucket of a few dozen entries, never the
 * whole table: the cost of a change stays (nearly) independent of the number of tasks. `Map`s, not
 * objects: copying an object keyed by task ids makes V8 build a new hidden class per copy.
 */
export type Table<V> = ReadonlyMap<string, ReadonlyMap<string, ReadonlyMap<string, V>>>;

type MutableTable<V> = Map<string, Map<string, Map<string, V>>>;

const FANOUT = 64;

function path(key: string): [number, number] {
  const h = hash32(key) % (FANOUT * FANOUT);
  return [h >>> 6, h & (FANOUT - 1)];
}

export function emptyTable<V>(): Table<V> {
  return new Map();
}

export function tableGet<V>(table: Table<V>, key: string): V | undefined {
  const [a, b] = path(key);
  return table.get(String(a))?.get(String(b))?.get(key);
}

/** Mutating write, for use on an immer draft. */
export function tableSet<V>(table: Table<V>, key: string, value: V): void {
  const t = table as MutableTable<V>;
  const [a, b] = path(key).map(String) as [string, string];
  let mid = t.get(a);
  if (mid === undefined) t.set(a, (mid = new Map()));
  let bucket = mid.get(b);
  if (bucket === undefined) mid.set(b, (bucket = new Map()));
  bucket.set(key, value);
}

export function* tableEntries<V>(table: Table<V>): IterableIterator<[string, V]> {
  for (const mid of table.values()) for (const bucket of mid.values()) yield* bucket.entries();
}

export function* tableValues<V>(table: Table<V>): IterableIterator<V> {
  for (const mid of table.values()) for (const bucket of mid.values()) yield* bucket.values();
}

export function tableSize<V>(table: Table<V>): number {
  let n = 0;
  for (const mid of table.values()) for (const bucket of mid.values()) n += bucket.size;
  return n;
}
