/**
 * The workflow as `scalems serve` sees it: its store read without the lock (the connection `scalems status` reads
 * through, `openStoreReadonly`), kept open and polled for what changed. A poll costs nothing while nobody commits
 * (SQLite's `data_version` says so); otherwise one query reads the fields of each record that change (state,
 * attempts, times, executor, label, error) with SQLite's JSON functions, compares them with what was sent, and reads
 * whole only the records that are new. Records carry no revision: those fields are their version, and they are what
 * the page shows, so a change elsewhere in a record (its result, its artifacts) comes with a change of state.
 */
import * as fs from 'node:fs';
import type Database from 'better-sqlite3';
import { openStoreReadonly } from '../../store/sqlite';
import { TASK_KEY_PREFIX } from '../../store/slot';
import { checkTaskRecord } from '../../store/record-check';
import type { TaskRecord } from '../../store/state';
import { readWorkflow } from '../locate';
import type { PastAttempt, StateName, TaskRow } from './protocol';

/** What one poll found: the rows that are new or changed, and the ids of the tasks that went away. */
export interface Changes {
  readonly tasks: readonly TaskRow[];
  readonly removed: readonly string[];
}

/** The fields of a record that change, as the poll reads them: key first. */
type Dynamic = [
  key: string,
  state: StateName,
  attempts: number,
  executor: string | null,
  label: string | null,
  submittedAt: number | null,
  readyAt: number | null,
  startedAt: number | null,
  finishedAt: number | null,
  errorName: string | null,
  errorMessage: string | null,
  errorCode: string | null,
];

// Keys of task records are `task:<id>`: the range [`task:`, `task;`) holds exactly them (';' follows ':').
const POLL_SQL = `SELECT key, json_extract(value, '$.state'), json_extract(value, '$.attempts'),
  json_extract(value, '$.executor'), json_extract(value, '$.label'), json_extract(value, '$.submittedAt'),
  json_extract(value, '$.readyAt'), json_extract(value, '$.startedAt'), json_extract(value, '$.finishedAt'),
  json_extract(value, '$.error.name'), substr(json_extract(value, '$.error.message'), 1, 400),
  json_extract(value, '$.error.code')
  FROM scalems_kv WHERE key >= '${TASK_KEY_PREFIX}' AND key < '${TASK_KEY_PREFIX.slice(0, -1)};'`;

const ERROR_LINE = 200;

/** `Name: first line of the message`, cut to 200 characters. */
export function errorLine(name: string, message: string): string {
  const line = `${name}: ${message.split('\n', 1)[0]}`;
  return line.length > ERROR_LINE ? `${line.slice(0, ERROR_LINE - 1)}…` : line;
}

const opt = <T>(v: T | null | undefined): T | undefined => (v === null ? undefined : v);

/** The row of a whole record (a task seen for the first time). */
export function rowOf(r: TaskRecord, past?: readonly PastAttempt[]): TaskRow {
  return compact({
    id: r.id,
    label: r.label,
    name: r.name,
    kind: r.kind,
    state: r.state,
    executor: r.executor,
    attempts: r.attempts,
    submittedAt: r.submittedAt,
    readyAt: r.readyAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    inputs: r.inputs,
    error: r.error === undefined ? undefined : errorLine(r.error.name, r.error.message),
    errorCode: r.error?.code,
    past,
  });
}

/** The row with its changing fields replaced by those the poll read. */
function updated(old: TaskRow, d: Dynamic): TaskRow {
  return compact({
    id: old.id,
    label: opt(d[4]),
    name: old.name,
    kind: old.kind,
    state: d[1],
    executor: opt(d[3]),
    attempts: d[2],
    submittedAt: opt(d[5]),
    readyAt: opt(d[6]),
    startedAt: opt(d[7]),
    finishedAt: opt(d[8]),
    inputs: old.inputs,
    error: d[9] === null ? undefined : errorLine(d[9], d[10] ?? ''),
    errorCode: opt(d[11]),
    past: pastAfter(old, d),
  });
}

/**
 * The earlier attempts of a task once it has started another: the one that was the last ends when the task was made
 * ready again (a retry records that time), or at an unknown time (its process died and the workflow was resumed).
 */
function pastAfter(old: TaskRow, d: Dynamic): readonly PastAttempt[] | undefined {
  if (d[2] <= old.attempts || old.startedAt === undefined || old.attempts === 0) return old.past;
  const readyAt = d[6] ?? old.readyAt;
  const end = readyAt !== undefined && readyAt >= old.startedAt ? readyAt : null;
  return [...(old.past ?? []), [old.startedAt, end]];
}

function same(row: TaskRow, d: Dynamic): boolean {
  return (
    row.state === d[1] &&
    row.attempts === d[2] &&
    row.executor === opt(d[3]) &&
    row.label === opt(d[4]) &&
    row.submittedAt === opt(d[5]) &&
    row.readyAt === opt(d[6]) &&
    row.startedAt === opt(d[7]) &&
    row.finishedAt === opt(d[8]) &&
    row.errorCode === opt(d[11]) &&
    row.error === (d[9] === null ? undefined : errorLine(d[9], d[10] ?? ''))
  );
}

/** The row without its undefined fields (they would cost a key each in every message). */
function compact(row: { [K in keyof TaskRow]: TaskRow[K] | undefined }): TaskRow {
  for (const k of Object.keys(row) as Array<keyof TaskRow>) if (row[k] === undefined) delete row[k];
  return row as TaskRow;
}

/** A file's size and modification time, to tell whether a store read into memory must be read again. */
const stamp = (file: string): string => {
  const s = fs.statSync(file, { throwIfNoEntry: false });
  const w = fs.statSync(`${file}-wal`, { throwIfNoEntry: false });
  return `${s?.size}:${s?.mtimeMs}:${w?.size}:${w?.mtimeMs}`;
};

/** A workflow's store, watched. `open` reads it whole once (as `scalems status` does, with the same errors). */
export class StoreSource {
  private readonly rows = new Map<string, TaskRow>();
  /** input id → the tasks that take it (inputs never change: built as tasks appear) */
  private readonly dependents = new Map<string, string[]>();
  private db: Database.Database;
  private poll: Database.Statement;
  private getOne: Database.Statement;
  private version: unknown;
  private fileStamp: string;
  /** the number of the last poll that found a change */
  seq = 0;

  private constructor(
    readonly file: string,
    readonly workflow: string,
    records: readonly TaskRecord[],
  ) {
    for (const r of records) this.add(rowOf(r));
    this.fileStamp = stamp(file);
    this.db = openStoreReadonly(file, false); // readWorkflow has just verified it
    [this.poll, this.getOne] = this.prepare();
    // `version` stays unknown: the first poll reads what was committed between `readWorkflow` and this connection
  }

  /** Opens the store at `file` (of the workflow named `fallbackName` unless the store says otherwise). */
  static async open(file: string, fallbackName: string): Promise<StoreSource> {
    const { name, records } = await readWorkflow(file);
    return new StoreSource(file, name ?? fallbackName, records);
  }

  /** Every task, in the store's order of keys. */
  all(): TaskRow[] {
    return [...this.rows.values()];
  }

  get size(): number {
    return this.rows.size;
  }

  /** The tasks that take `id` as an input. */
  dependentsOf(id: string): readonly string[] {
    return this.dependents.get(id) ?? [];
  }

  row(id: string): TaskRow | undefined {
    return this.rows.get(id);
  }

  /** The whole record of a task, read now (undefined if the store holds none). */
  record(id: string): TaskRecord | undefined {
    const json = this.getOne.get(`${TASK_KEY_PREFIX}${id}`) as string | undefined;
    if (json === undefined) return undefined;
    let value: unknown;
    try {
      value = JSON.parse(json);
    } catch {
      value = json; // not JSON: checkTaskRecord names the value and says what to do
    }
    checkTaskRecord(this.file, `${TASK_KEY_PREFIX}${id}`, value);
    return value;
  }

  /** Reads what changed since the last call; undefined when nothing did. */
  changes(): Changes | undefined {
    if (!this.moved()) return undefined;
    const seen = new Set<string>();
    const tasks: TaskRow[] = [];
    for (const d of this.poll.all() as Dynamic[]) {
      const id = d[0].slice(TASK_KEY_PREFIX.length);
      seen.add(id);
      const old = this.rows.get(id);
      if (old !== undefined && same(old, d)) continue;
      const row = old === undefined ? this.fresh(id) : updated(old, d);
      if (row === undefined) continue;
      if (old === undefined) this.add(row);
      else this.rows.set(id, row);
      tasks.push(row);
    }
    const removed: string[] = [];
    if (seen.size < this.rows.size) for (const id of this.rows.keys()) if (!seen.has(id)) removed.push(id);
    for (const id of removed) this.rows.delete(id);
    if (tasks.length === 0 && removed.length === 0) return undefined;
    this.seq++;
    return { tasks, removed };
  }

  close(): void {
    this.db.close();
  }

  private fresh(id: string): TaskRow | undefined {
    const r = this.record(id);
    return r === undefined ? undefined : rowOf(r);
  }

  private add(row: TaskRow): void {
    this.rows.set(row.id, row);
    for (const input of row.inputs) {
      const list = this.dependents.get(input);
      if (list === undefined) this.dependents.set(input, [row.id]);
      else list.push(row.id);
    }
  }

  private prepare(): [Database.Statement, Database.Statement] {
    return [this.db.prepare(POLL_SQL).raw(), this.db.prepare('SELECT value FROM scalems_kv WHERE key = ?').pluck()];
  }

  private dataVersion(): unknown {
    return this.db.pragma('data_version', { simple: true });
  }

  /**
   * Whether the store may have changed: SQLite's `data_version` moves when another connection commits. A store that
   * could only be read into memory (another user's, with no write-ahead log; see `openReadonly`) is a copy: it is
   * read again when its file changes.
   */
  private moved(): boolean {
    if (this.db.memory) {
      const now = stamp(this.file);
      if (now === this.fileStamp) return false;
      this.fileStamp = now;
      this.db.close();
      this.db = openStoreReadonly(this.file, false);
      [this.poll, this.getOne] = this.prepare();
      return true;
    }
    const version = this.dataVersion();
    if (version === this.version) return false;
    this.version = version;
    return true;
  }
}
