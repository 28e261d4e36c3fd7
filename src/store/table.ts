import { hash32 } from '../task/hash';

type Leaf<V> = Map<string, V>;
/** Three levels of 64-slot arrays, then a map: arrays copy in nanoseconds, and a leaf holds about one entry per 262 144 keys. */
type Level3<V> = ReadonlyArray<Leaf<V> | undefined>;
type Level2<V> = ReadonlyArray<Level3<V> | undefined>;
type Root<V> = ReadonlyArray<Level2<V> | undefined>;

const BITS = 6;
const FANOUT = 1 << BITS;
const MASK = FANOUT - 1;

function slots(key: string): [number, number, number] {
  const h = hash32(key);
  return [h & MASK, (h >>> BITS) & MASK, (h >>> (2 * BITS)) & MASK];
}

const emptyRoot: Root<never> = new Array<undefined>(FANOUT).fill(undefined);

/**
 * An immutable map of many entries (task records, labels), kept as a shallow trie: three levels of
 * 64-slot arrays, then key → value maps. A new version shares every bucket it did not change with the old one,
 * so a commit copies a few small maps, never the whole table: the cost of a change stays independent
 * of the number of tasks. Changes are made through a {@link TableEditor}, one per commit.
 *
 * Tables are opaque to immer (a class without `immerable`): the workflow's reducer updates them
 * through its editor and stores each version as a value in the immer state.
 */
export class Table<V> {
  /** @internal */
  constructor(
    readonly root: Root<V>,
    readonly size: number,
  ) {}

  get(key: string): V | undefined {
    const [a, b, c] = slots(key);
    return this.root[a]?.[b]?.[c]?.get(key);
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  private *leaves(): IterableIterator<Leaf<V>> {
    for (const l2 of this.root) if (l2 !== undefined) for (const l3 of l2) if (l3 !== undefined) for (const leaf of l3) if (leaf !== undefined) yield leaf;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const leaf of this.leaves()) yield* leaf.entries();
  }

  *values(): IterableIterator<V> {
    for (const leaf of this.leaves()) yield* leaf.values();
  }

  *keys(): IterableIterator<string> {
    for (const leaf of this.leaves()) yield* leaf.keys();
  }
}

const EMPTY = new Table<never>(emptyRoot, 0);

export function emptyTable<V>(): Table<V> {
  return EMPTY as Table<V>;
}

/**
 * The changes of one commit to a table: each bucket is copied the first time this editor changes
 * it, then changed in place; `finish()` publishes the new version.
 */
export class TableEditor<V> {
  private root: Array<Level2<V> | undefined> | undefined;
  /** arrays and leaves copied by this editor since the last finish: changed in place */
  private readonly owned = new Set<object>();
  private size: number;

  constructor(private base: Table<V>) {
    this.size = base.size;
  }

  get(key: string): V | undefined {
    if (this.root === undefined) return this.base.get(key);
    const [a, b, c] = slots(key);
    return this.root[a]?.[b]?.[c]?.get(key);
  }

  set(key: string, value: V): void {
    const [a, b, c] = slots(key);
    const root = (this.root ??= this.base.root.slice());
    const l2 = this.own(root[a], () => new Array<undefined>(FANOUT).fill(undefined)) as Array<Level3<V> | undefined>;
    root[a] = l2;
    const l3 = this.own(l2[b], () => new Array<undefined>(FANOUT).fill(undefined)) as Array<Leaf<V> | undefined>;
    l2[b] = l3;
    let leaf = l3[c];
    if (leaf === undefined || !this.owned.has(leaf)) {
      leaf = new Map(leaf);
      this.owned.add(leaf);
      l3[c] = leaf;
    }
    if (!leaf.has(key)) this.size++;
    leaf.set(key, value);
  }

  /** `node` if this editor made it, else a copy of it (or a new one) that it now owns. */
  private own<T>(node: ReadonlyArray<T> | undefined, create: () => T[]): T[] {
    if (node !== undefined && this.owned.has(node)) return node as T[];
    const copy = node === undefined ? create() : node.slice();
    this.owned.add(copy);
    return copy;
  }

  /** The new version (the base itself if nothing changed). The editor starts over from it. */
  finish(): Table<V> {
    if (this.root === undefined) return this.base;
    const table = new Table<V>(this.root, this.size);
    this.root = undefined;
    this.owned.clear();
    this.base = table;
    return table;
  }
}

export const tableGet = <V>(table: Table<V>, key: string): V | undefined => table.get(key);
export const tableEntries = <V>(table: Table<V>): IterableIterator<[string, V]> => table.entries();
export const tableValues = <V>(table: Table<V>): IterableIterator<V> => table.values();
export const tableSize = <V>(table: Table<V>): number => table.size;
