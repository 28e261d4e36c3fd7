import { hash32 } from '../task/hash';

/**
 * A map of many entries kept as two levels (bucket → key → value) so that an immer update copies one
 * small bucket and the bucket index, never the whole map: the cost of a change stays independent of the
 * number of tasks in the workflow.
 */
export type Table<V> = Readonly<Record<string, Readonly<Record<string, V>>>>;

const BUCKETS = 1024;

export function bucketOf(key: string): string {
  return (hash32(key) % BUCKETS).toString(36);
}

export function tableGet<V>(table: Table<V>, key: string): V | undefined {
  const bucket = table[bucketOf(key)];
  return bucket === undefined ? undefined : bucket[key];
}

/** Mutating write, for use on an immer draft. */
export function tableSet<V>(table: Record<string, Record<string, V>>, key: string, value: V): void {
  const b = bucketOf(key);
  const bucket = table[b] ?? (table[b] = {});
  bucket[key] = value;
}

/** Mutating delete, for use on an immer draft. */
export function tableDelete<V>(table: Record<string, Record<string, V>>, key: string): void {
  const bucket = table[bucketOf(key)];
  if (bucket !== undefined) delete bucket[key];
}

export function* tableEntries<V>(table: Table<V>): IterableIterator<[string, V]> {
  for (const bucket of Object.values(table)) yield* Object.entries(bucket) as Array<[string, V]>;
}

export function* tableValues<V>(table: Table<V>): IterableIterator<V> {
  for (const bucket of Object.values(table)) yield* Object.values(bucket);
}
