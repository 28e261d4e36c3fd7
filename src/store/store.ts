import type { TaskRecord } from './state';

/**
 * The persistence contract of a workflow. It has the shape of idb-keyval (`get`, `set`, `setMany`,
 * `del`, `keys`, `entries`) plus `close`, so that any key-value database can back a workflow.
 *
 * Keys are strings. Values are whatever the workflow hands over: plain, JSON-compatible data
 * (task records, metadata). A store that persists to disk must reject a value it cannot store
 * with {@link UnstorableValueError} *before* writing anything of the batch, never store half of it.
 */
export interface Store {
  /** A short human-readable description, for error messages and `scalems status` ("sqlite:/x/state.sqlite"). */
  readonly description: string;
  /**
   * `false` for a store whose content does not outlive the process (memory): task identity then need not be
   * the same in another process. Any other store is taken to persist.
   */
  readonly persistent?: boolean;
  get<V = unknown>(key: string): Promise<V | undefined>;
  set(key: string, value: unknown): Promise<void>;
  /** Writes all entries atomically (one transaction where the store has them). */
  setMany(entries: ReadonlyArray<readonly [string, unknown]>): Promise<void>;
  del(key: string): Promise<void>;
  keys(): Promise<string[]>;
  entries<V = unknown>(): Promise<Array<[string, V]>>;
  /**
   * Throws `UnstorableValueError` (naming `key` and the path inside `value`) if this store could not
   * store the value faithfully. Absent on stores that keep values by reference (memory).
   */
  assertStorable?(key: string, value: unknown): void;
  /**
   * @internal `setMany` for values already checked: every part of them that did not come from the
   * engine was passed through `assertStorable` where it arose (task arguments at submit, results when
   * they arrive), so the store may skip checking them again. The workflow writes its records with it, or with
   * `setRecords` where a store has that.
   */
  setManyChecked?(entries: ReadonlyArray<readonly [string, unknown]>): Promise<void>;
  /**
   * @internal `setManyChecked` for task records (their keys `task:<id>`): a store may keep them in a form of its own,
   * as long as reading gives back the record `JSON.parse(JSON.stringify(record))` would (the SQLite store encodes
   * them more compactly than as JSON objects: see `record-codec.ts`).
   */
  setRecords?(entries: ReadonlyArray<readonly [string, TaskRecord]>): Promise<void>;
  /** Flushes and releases the store (and any lock it holds). Idempotent. */
  close(): Promise<void>;
}

/**
 * @internal Gives `store` the workflow's own ways in (`setManyChecked`, `setRecords`), not enumerable: a store made
 * from it by spreading it (`{ ...sqliteStore(path), setMany }`, as a user logs or fails writes) has neither, so the
 * workflow's writes go through that store's `setMany`.
 */
export function withInternalWrites(store: Store, internal: Pick<Store, 'setManyChecked' | 'setRecords'>): Store {
  for (const [name, value] of Object.entries(internal))
    Object.defineProperty(store, name, { value, enumerable: false });
  return store;
}

/**
 * @internal Why a store of format `found` cannot be opened by this scalems (format `expected`), and what to do.
 * Format 1 identified a function task by its name alone and an input file by its path: its results cannot be
 * matched safely to tasks identified by function version and file content, so it is refused, not migrated.
 */
export function versionProblem(what: string, found: number, expected: number, elsewhere: string): string {
  if (found > expected)
    return (
      `${what} was written by a newer scalems store format (version ${found}); this scalems reads version ` +
      `${expected}. It was left untouched: open it with the scalems release that wrote it, or ${elsewhere}.`
    );
  return (
    `${what} was written by an older scalems store format (version ${found}); this scalems reads version ` +
    `${expected}.` +
    (found === 1
      ? ' Version 1 identified a function task by its name alone and an input file by its path, so its results ' +
        'cannot be matched safely to tasks identified by their function’s version and their files’ content: it is ' +
        'not migrated.'
      : '') +
    ` It was left untouched: open it with the scalems release that wrote it, or ${elsewhere} (its tasks then run ` +
    'again).'
  );
}

/** The key of the workflow's own record in its store: `{ name }`, the name it was last opened with. */
export const WORKFLOW_KEY = 'meta:workflow';

/** The name in a workflow record read from a store, if it holds one. */
export function workflowNameIn(value: unknown): string | undefined {
  const name = typeof value === 'object' && value !== null ? (value as { name?: unknown }).name : undefined;
  return typeof name === 'string' && name !== '' ? name : undefined;
}
