/** `Table`: a persistent map of the workflow state (labels), shared between versions of the state. */
import { hash32 } from '../task/hash';

/**
 * A version of a table of the workflow state (its task records, its labels): immutable, read by key.
 * A newer version shares what did not change with the older ones.
 */
export interface Table<V> {
  readonly size: number;
  get(key: string): V | undefined;
  has(key: string): boolean;
  entries(): IterableIterator<[string, V]>;
  values(): IterableIterator<V>;
  keys(): IterableIterator<string>;
}

/**
 * A node of the trie: an inner node holds FANOUT children, then its owner; a leaf holds its owner,
 * then hash, key, value, hash, key, value, ... The owner is the token of the editor that made the node:
 * that editor may still change it in place, everyone else copies it first. Each key's hash is kept
 * beside it (as a small integer, no allocation) so that a lookup compares integers in the leaf it
 * already reads and only touches the one key whose hash matches. Comparing the keys themselves read
 * each key string, a cache miss apiece once the table outgrows the caches: with 15 keys a leaf at a
 * million tasks, that was the largest part of a table write (8 bytes per entry buy it back).
 */
type Node = unknown[];

const BITS = 4;
const FANOUT = 1 << BITS;
const MASK = FANOUT - 1;
/** inner levels: 16^4 = 65 536 leaves, about one key per leaf at 65 000 keys, 15 at a million */
const DEPTH = 4;
/** slots per leaf entry: hash, key, value */
const ENTRY = 3;

const emptyRoot: Node = new Array<unknown>(FANOUT + 1).fill(undefined);

/**
 * An immutable map of many entries (the labels; task records are in a `TaskTable`), kept as a trie of
 * 16-way nodes over a hash of the key, with small key/value arrays as leaves. A new version shares every
 * node it did not change with the old one, so a commit copies a few nodes of 17 slots per changed key,
 * never the table: the cost of a change stays independent of the number of entries. Narrow nodes keep
 * that copy small (a change copies about 70 pointers; 64-way nodes copied twice as many). Changes are
 * made through a {@link TableEditor}, one per commit.
 *
 * Tables are opaque to immer (a class without `immerable`): the workflow's reducer updates them
 * through its editor and stores each version as a value in the immer state.
 */
export class HashTable<V> implements Table<V> {
  /** @internal */
  constructor(
    readonly root: Node,
    readonly size: number,
  ) {}

  get(key: string): V | undefined {
    return find(this.root, key, hashOf(key)) as V | undefined;
  }

  has(key: string): boolean {
    return this.get(key) !== undefined;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const leaf of leaves(this.root, 0))
      for (let i = 2; i < leaf.length; i += ENTRY) yield [leaf[i] as string, leaf[i + 1] as V];
  }

  *values(): IterableIterator<V> {
    for (const leaf of leaves(this.root, 0)) for (let i = 3; i < leaf.length; i += ENTRY) yield leaf[i] as V;
  }

  *keys(): IterableIterator<string> {
    for (const leaf of leaves(this.root, 0)) for (let i = 2; i < leaf.length; i += ENTRY) yield leaf[i] as string;
  }
}

/** The key's hash as a signed 32-bit integer: a small integer to V8, stored in a leaf without allocating. */
const hashOf = (key: string): number => hash32(key) | 0;

function find(root: Node, key: string, h: number): unknown {
  let node: Node | undefined = root;
  for (let d = 0; d < DEPTH; d++) {
    node = node[(h >>> (d * BITS)) & MASK] as Node | undefined;
    if (node === undefined) return undefined;
  }
  for (let i = 1; i < node.length; i += ENTRY) if (node[i] === h && node[i + 1] === key) return node[i + 2];
  return undefined;
}

function* leaves(node: Node, depth: number): IterableIterator<Node> {
  if (depth === DEPTH) {
    yield node;
    return;
  }
  for (let i = 0; i < FANOUT; i++) {
    const child = node[i] as Node | undefined;
    if (child !== undefined) yield* leaves(child, depth + 1);
  }
}

const EMPTY = new HashTable<never>(emptyRoot, 0);

export function emptyTable<V>(): HashTable<V> {
  return EMPTY as HashTable<V>;
}

/**
 * The changes of one commit to a table: each node is copied the first time this editor changes it,
 * then changed in place; `finish()` publishes the new version.
 */
export class TableEditor<V> {
  private root: Node | undefined;
  /** marks the nodes this editor copied since the last finish */
  private token: object = {};
  private size: number;

  constructor(private base: HashTable<V>) {
    this.size = base.size;
  }

  get(key: string): V | undefined {
    return find(this.root ?? this.base.root, key, hashOf(key)) as V | undefined;
  }

  set(key: string, value: V): void {
    const h = hashOf(key);
    const token = this.token;
    let node = this.root;
    if (node === undefined) {
      node = this.base.root.slice();
      node[FANOUT] = token;
      this.root = node;
    }
    for (let d = 0; d < DEPTH; d++) {
      const slot = (h >>> (d * BITS)) & MASK;
      let child = node[slot] as Node | undefined;
      const leafLevel = d === DEPTH - 1;
      if (child === undefined) {
        child = leafLevel ? [token] : new Array<unknown>(FANOUT + 1).fill(undefined);
        if (!leafLevel) child[FANOUT] = token;
        node[slot] = child;
      } else if ((leafLevel ? child[0] : child[FANOUT]) !== token) {
        child = child.slice();
        child[leafLevel ? 0 : FANOUT] = token;
        node[slot] = child;
      }
      node = child;
    }
    for (let i = 1; i < node.length; i += ENTRY) {
      if (node[i] === h && node[i + 1] === key) {
        node[i + 2] = value;
        return;
      }
    }
    node.push(h, key, value);
    this.size++;
  }

  /** The new version (the base itself if nothing changed). The editor starts over from it. */
  finish(): HashTable<V> {
    if (this.root === undefined) return this.base;
    const table = new HashTable<V>(this.root, this.size);
    this.root = undefined;
    this.token = {};
    this.base = table;
    return table;
  }
}
