/** `TaskTable`: the persistent table of task records, laid out by the order the workflow came to know its tasks. */
import { ScalemsError } from '../errors';
import type { Table } from './table';

/**
 * A node of the tree: WIDTH children (an inner node) or WIDTH values (a leaf), then its owner: the token of the
 * editor that made it, which may still change it in place; everyone else copies it first.
 */
type Node = unknown[];

const BITS = 5;
const WIDTH = 1 << BITS;
const MASK = WIDTH - 1;
/** the shift of a root with 6 levels: 2^30 tasks, past which shifts in 32 bits would wrap */
const MAX_SHIFT = 5 * BITS;

/** The position of a task's record in the table: fixed when the workflow first hears of the task, never reused. */
export type IndexOf = (id: string) => number | undefined;

/**
 * An immutable table of task records, kept as a persistent vector (a 32-way tree over a small integer per task:
 * the order in which the workflow first heard of it), read by task id through `indexOf`.
 *
 * Why not a hash of the id, as the labels' table: a commit copies the path to each record it changes, and the
 * tasks in flight (the ones that change) are mostly the ones submitted last. By position, their records share a few
 * leaves at the end of the vector, which a commit copies once each, and the leaves of tasks that settled are never
 * copied again: they are promoted to the old generation once and stay live there. By hash, the same changes touch
 * leaves all over the table, and at a million tasks (15 records a leaf) each copy is 16 times larger; copies that
 * outlive a young-generation collection were promoted and died in the old one, which made the collector's work grow
 * faster than the number of tasks (issue #11's scale goal).
 *
 * `indexOf` is shared by every version: a task's position never changes, and a version that predates the task has
 * nothing at its position, so every version reads consistently. Opaque to immer (a class without `immerable`).
 */
export class TaskTable<V extends { readonly id: string }> implements Table<V> {
  /** @internal use `emptyTaskTable` and a `TaskTableEditor` */
  constructor(
    /** @internal */ readonly root: Node | undefined,
    /** @internal the shift of the root's level: 0 when the root is a leaf */ readonly shift: number,
    readonly size: number,
    /** @internal */ readonly indexOf: IndexOf,
  ) {}

  get(id: string): V | undefined {
    const index = this.indexOf(id);
    return index === undefined ? undefined : (this.at(index) as V | undefined);
  }

  has(id: string): boolean {
    return this.get(id) !== undefined;
  }

  /** @internal the record at a position (`undefined` if this version has none there) */
  at(index: number): V | undefined {
    let node = this.root;
    if (node === undefined || index >>> (this.shift + BITS) !== 0) return undefined;
    for (let s = this.shift; s > 0; s -= BITS) {
      node = node[(index >>> s) & MASK] as Node | undefined;
      if (node === undefined) return undefined;
    }
    return node[index & MASK] as V | undefined;
  }

  *entries(): IterableIterator<[string, V]> {
    for (const v of this.values()) yield [v.id, v];
  }

  *values(): IterableIterator<V> {
    if (this.root === undefined) return;
    for (const leaf of leaves(this.root, this.shift))
      for (let i = 0; i < WIDTH; i++) {
        const v = leaf[i] as V | undefined;
        if (v !== undefined) yield v;
      }
  }

  *keys(): IterableIterator<string> {
    for (const v of this.values()) yield v.id;
  }
}

function* leaves(node: Node, shift: number): IterableIterator<Node> {
  if (shift === 0) {
    yield node;
    return;
  }
  for (let i = 0; i < WIDTH; i++) {
    const child = node[i] as Node | undefined;
    if (child !== undefined) yield* leaves(child, shift - BITS);
  }
}

/** An empty table whose versions find a task's position with `indexOf`. */
export function emptyTaskTable<V extends { readonly id: string }>(indexOf: IndexOf): TaskTable<V> {
  return new TaskTable<V>(undefined, 0, 0, indexOf);
}

function newNode(token: object): Node {
  const node = new Array<unknown>(WIDTH + 1).fill(undefined);
  node[WIDTH] = token;
  return node;
}

/**
 * The changes of one commit to a task table: each node is copied the first time this editor changes it, then
 * changed in place; `finish()` publishes the new version.
 */
export class TaskTableEditor<V extends { readonly id: string }> {
  private root: Node | undefined;
  private shift: number;
  private size: number;
  /** marks the nodes this editor made or copied since the last finish */
  private token: object = {};

  constructor(private base: TaskTable<V>) {
    this.shift = base.shift;
    this.size = base.size;
  }

  /** Sets the record at `index` (the record's task's position: see `IndexOf`). */
  set(index: number, value: V): void {
    const token = this.token;
    let root = this.root;
    if (root === undefined) {
      const base = this.base.root;
      if (base === undefined) root = newNode(token);
      else {
        root = base.slice();
        root[WIDTH] = token;
      }
    }
    while (index >>> (this.shift + BITS) !== 0) {
      if (this.shift >= MAX_SHIFT) throw new ScalemsError(`a workflow holds at most 2^30 tasks (task number ${index})`);
      const up = newNode(token);
      up[0] = root;
      root = up;
      this.shift += BITS;
    }
    this.root = root;
    let node = root;
    for (let s = this.shift; s > 0; s -= BITS) {
      const k = (index >>> s) & MASK;
      let child = node[k] as Node | undefined;
      if (child === undefined) {
        child = newNode(token);
        node[k] = child;
      } else if (child[WIDTH] !== token) {
        child = child.slice();
        child[WIDTH] = token;
        node[k] = child;
      }
      node = child;
    }
    const k = index & MASK;
    if (node[k] === undefined) this.size++;
    node[k] = value;
  }

  /** The new version (the base itself if nothing changed). The editor starts over from it. */
  finish(): TaskTable<V> {
    if (this.root === undefined) return this.base;
    const table = new TaskTable<V>(this.root, this.shift, this.size, this.base.indexOf);
    this.root = undefined;
    this.token = {};
    this.base = table;
    return table;
  }
}
