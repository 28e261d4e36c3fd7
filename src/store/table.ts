import { hash32 } from '../task/hash';

/**
 * A map of many entries kept as a shallow trie (64 × 64 buckets, then key → value) so that an immer
 * update copies two small index objects and one bucket of a few dozen entries, never the whole map:
 * the cost of a change stays (nearly) independent of the number of tasks in the workflow.
 */
export type Table<V> = Readonly<Record<string, Readonly<Record<string, Readonly<Record<string, V>>>>>>;

type MutableTable<V> = Record<string, Record<string, Record<string, V>>>;

const FANOUT = 64;

function path(key: string): [string, string] {
  const h = hash32(key) % (FANOUT * FANOUT);
  return [(h >>> 6).toString(36), (h & (FANOUT - 1)).toString(36)];
}

export function tableGet<V>(table: Table<V>, key: string): V | undefined {
  const [a, b] = path(key);
  return table[a]?.[b]?.[key];
}

/** Mutating write, for use on an immer draft. */
export function tableSet<V>(table: Table<V>, key: string, value: V): void {
  const t = table as MutableTable<V>;
  const [a, b] = path(key);
  const mid = t[a] ?? (t[a] = {});
  const bucket = mid[b] ?? (mid[b] = {});
  bucket[key] = value;
}

export function* tableEntries<V>(table: Table<V>): IterableIterator<[string, V]> {
  for (const mid of Object.values(table)) for (const bucket of Object.values(mid)) yield* Object.entries(bucket) as Array<[string, V]>;
}

export function* tableValues<V>(table: Table<V>): IterableIterator<V> {
  for (const mid of Object.values(table)) for (const bucket of Object.values(mid)) yield* Object.values(bucket);
}
