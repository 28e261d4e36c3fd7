/**
 * The workflow as `scalems serve` sees it: its store read without the lock, through the connection `scalems status`
 * reads through (`openStoreReadonly`: the same checks, the same errors), kept open and polled for what changed.
 *
 * Records carry no revision. So the connection keeps, in a table of its own (a TEMP table: this connection's, in
 * memory; the store is not written), the value of each task record as last read, and a poll asks SQLite for the keys
 * whose value differs: the comparison runs in SQLite, no record is parsed or even handed to JavaScript unless it
 * changed (a scan of 100 000 records that hands each to JavaScript costs several times more). A poll costs nothing
 * while nobody commits: SQLite's `data_version` says so.
 */
import * as fs from 'node:fs';
import type Database from 'better-sqlite3';
import { createCurrentView, hasRecordLog, openStoreReadonly } from '../../store/sqlite';
import { decodeRecord, isEncodedRecord } from '../../store/record-codec';
import { TASK_KEY_PREFIX } from '../../store/slot';
import { WORKFLOW_KEY, workflowNameIn } from '../../store/store';
import { checkTaskRecord } from '../../store/record-check';
import type { TaskRecord } from '../../store/state';
import type { PastAttempt, TaskRow } from './protocol';

/** What one poll found: the rows that are new or changed, and the ids of the tasks that went away. */
export interface Changes {
  readonly tasks: readonly TaskRow[];
  readonly removed: readonly string[];
}

// Keys of task records are `task:<id>`: the range [`task:`, `task;`) holds exactly them (';' follows ':').
const RANGE = (t: string): string =>
  `${t}.key >= '${TASK_KEY_PREFIX}' AND ${t}.key < '${TASK_KEY_PREFIX.slice(0, -1)};'`;
const SEEN_SQL = 'CREATE TEMP TABLE IF NOT EXISTS seen (key TEXT PRIMARY KEY NOT NULL, value TEXT) WITHOUT ROWID';
/** the records that are new or changed since last read */
const CHANGED_SQL =
  'SELECT m.key, m.value FROM temp.scalems_current m LEFT JOIN temp.seen s ON s.key = m.key ' +
  `WHERE ${RANGE('m')} AND s.value IS NOT m.value`;
/** the records that went away */
const GONE_SQL = 'SELECT s.key FROM temp.seen s LEFT JOIN temp.scalems_current m ON m.key = s.key WHERE m.key IS NULL';

const ERROR_LINE = 200;

/** `Name: first line of the message`, cut to 200 characters. */
export function errorLine(name: string, message: string): string {
  const line = `${name}: ${message.split('\n', 1)[0]}`;
  return line.length > ERROR_LINE ? `${line.slice(0, ERROR_LINE - 1)}…` : line;
}

/**
 * The row of a record. Every field is set, absent ones `undefined` (JSON leaves them out): rows of one shape, which V8
 * keeps small (deleting the absent fields made each row a dictionary of about 1 KiB).
 */
export function rowOf(r: TaskRecord, past?: readonly PastAttempt[]): TaskRow {
  return {
    id: r.id,
    label: r.label,
    name: r.name,
    kind: r.kind,
    state: r.state,
    executor: r.executor,
    group: r.group,
    attempts: r.attempts,
    submittedAt: r.submittedAt,
    readyAt: r.readyAt,
    startedAt: r.startedAt,
    finishedAt: r.finishedAt,
    inputs: r.inputs,
    error: r.error === undefined ? undefined : errorLine(r.error.name, r.error.message),
    errorCode: r.error?.code,
    past,
  };
}

/**
 * The earlier attempts of a task once it has started another: the one that was the last ends when the task was made
 * ready again (a retry records that time), or at an unknown time (its process died and the workflow was resumed).
 */
function pastAfter(old: TaskRow, next: TaskRecord): readonly PastAttempt[] | undefined {
  if (next.attempts <= old.attempts || old.startedAt === undefined || old.attempts === 0) return old.past;
  const readyAt = next.readyAt ?? old.readyAt;
  const end = readyAt !== undefined && readyAt >= old.startedAt ? readyAt : null;
  return [...(old.past ?? []), [old.startedAt, end]];
}

/** A file's size and modification time, to tell whether a store read into memory must be read again. */
const identityOf = (file: string): string => {
  const s = fs.statSync(file, { throwIfNoEntry: false });
  return s === undefined ? 'missing' : `${s.dev}:${s.ino}`;
};

const stamp = (file: string): string => {
  const s = fs.statSync(file, { throwIfNoEntry: false });
  const w = fs.statSync(`${file}-wal`, { throwIfNoEntry: false });
  return `${s?.size}:${s?.mtimeMs}:${w?.size}:${w?.mtimeMs}`;
};

/** A workflow's store, watched. */
export class StoreSource {
  private readonly rows = new Map<string, TaskRow>();
  /** input id → the tasks that take it (inputs never change: built as tasks appear) */
  private readonly dependents = new Map<string, string[]>();
  private db!: Database.Database;
  private getOne!: Database.Statement;
  private changed!: Database.Statement;
  private gone!: Database.Statement;
  private remember!: Database.Statement;
  private forget!: Database.Statement;
  private count!: Database.Statement;
  private remembered!: Database.Statement;
  private rememberAll!: Database.Statement;
  private seen!: Database.Statement;
  private seenOne!: Database.Statement;
  /** of a store with a record log (format 3): its rows after a seq, the last seq, the key-value table's version */
  private appended: Database.Statement | undefined;
  private lastLogged: Database.Statement | undefined;
  private kvVersion: Database.Statement | undefined;
  /** the key-value table's version, and the log's last seq, at the last read */
  private lastKv: unknown;
  private lastSeq = 0;
  /** the store's `schema_version` when connected */
  private schemaVersion: unknown;
  private version: unknown;
  private fileStamp = '';
  /** the ids shown before the file was replaced (see `moved`) */
  private replaced: string[] = [];
  /** the device and inode of the file when connected: another file there (a store replaced, made anew) is read anew */
  private fileIdentity = '';
  /** the name the workflow was last opened with (the store records it), else the one it was opened as here */
  readonly workflow: string;
  /** the number of the last poll that found a change */
  seq = 0;

  private constructor(
    readonly file: string,
    fallbackName: string,
  ) {
    this.connect(true);
    const name = this.getOne.get(WORKFLOW_KEY) as string | undefined;
    this.workflow = (name === undefined ? undefined : workflowNameIn(this.parse(WORKFLOW_KEY, name))) ?? fallbackName;
    this.version = this.dataVersion();
    this.read(); // every record is new
  }

  /**
   * Opens the store at `file` (of the workflow named `fallbackName` unless the store says otherwise) and reads every
   * task. A missing, damaged or foreign store throws what `scalems status` throws for it.
   */
  static async open(file: string, fallbackName: string): Promise<StoreSource> {
    return new StoreSource(file, fallbackName);
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
    const key = `${TASK_KEY_PREFIX}${id}`;
    const json = this.getOne.get(key) as string | undefined;
    if (json === undefined) return undefined;
    const value = this.parse(key, json);
    checkTaskRecord(this.file, key, value);
    return value;
  }

  /** Reads what changed since the last call; undefined when nothing did. */
  changes(): Changes | undefined {
    if (!this.moved()) return undefined;
    const read = this.read();
    const tasks = read.tasks;
    let removed = read.removed;
    if (this.replaced.length > 0) {
      // the tasks of the file replaced that the new one does not hold
      removed = [...removed, ...this.replaced.filter((id) => !this.rows.has(id))];
      this.replaced = [];
    }
    if (tasks.length === 0 && removed.length === 0) return undefined;
    this.seq++;
    return { tasks, removed };
  }

  /** The records that changed and those that went away, in one read transaction (one state of the store). */
  private read(): Changes {
    const tasks: TaskRow[] = [];
    const removed: string[] = [];
    const fold = (key: string, json: string): void => {
      const record = this.parse(key, json);
      checkTaskRecord(this.file, key, record);
      const old = this.rows.get(record.id);
      const row = rowOf(record, old === undefined ? undefined : pastAfter(old, record));
      // a copy read into memory again (see `moved`) knows no value: a task the same as shown is not sent
      if (old !== undefined && JSON.stringify(old) === JSON.stringify(row)) return;
      if (old === undefined) this.add(row);
      else this.rows.set(row.id, row);
      tasks.push(row);
    };
    this.db.transaction(() => {
      // the key-value table unchanged since the last read: what changed is the log's rows appended since
      const kv = this.kvVersion?.get();
      if (this.appended !== undefined && kv === this.lastKv && this.remembered.get() !== 0) {
        const latest = new Map<string, string>();
        for (const [seq, key, text] of this.appended.raw().iterate(this.lastSeq) as Iterable<
          [number, string, string]
        >) {
          this.lastSeq = seq;
          if (key.startsWith(TASK_KEY_PREFIX)) latest.set(key, text);
        }
        for (const [key, text] of latest) {
          if (this.seenOne.get(key) === text) continue;
          this.remember.run(key, text);
          fold(key, text);
        }
        return;
      }
      this.lastKv = kv;
      this.lastSeq = (this.lastLogged?.get() as number | null | undefined) ?? 0;
      if (this.remembered.get() === 0) {
        // the first read: every record is new; copied in one statement, then read one by one (not all at once)
        this.rememberAll.run();
        for (const [key, json] of this.seen.raw().iterate() as Iterable<[string, string]>) fold(key, json);
      } else {
        // all(), not iterate(): the connection writes its TEMP table on the way (only changed records come back)
        for (const [key, json] of this.changed.raw().all() as Array<[string, string]>) {
          this.remember.run(key, json);
          fold(key, json);
        }
      }
      if ((this.count.get() as number) < this.rows.size) {
        for (const key of this.gone.pluck().all() as string[]) {
          this.forget.run(key);
          const id = key.slice(TASK_KEY_PREFIX.length);
          if (this.rows.delete(id)) removed.push(id);
        }
      }
    })();
    return { tasks, removed };
  }

  close(): void {
    this.db.close();
  }

  private add(row: TaskRow): void {
    this.rows.set(row.id, row);
    for (const input of row.inputs) {
      const list = this.dependents.get(input);
      if (list === undefined) this.dependents.set(input, [row.id]);
      else list.push(row.id);
    }
  }

  private parse(key: string, text: string): unknown {
    try {
      // an encoded record that does not decode is given as its text: checkTaskRecord refuses it
      return isEncodedRecord(text) ? (decodeRecord(key, text) ?? text) : JSON.parse(text);
    } catch {
      return text; // not JSON: checkTaskRecord (or workflowNameIn) refuses it
    }
  }

  /** Opens (or opens again) the connection; `verify` runs the quick check `scalems status` runs. */
  private connect(verify: boolean): void {
    this.fileStamp = stamp(this.file);
    const identity = identityOf(this.file);
    this.db = openStoreReadonly(this.file, verify);
    this.fileIdentity = identity;
    // a scan of 100 000 records reads about 35 MB: cached, a poll reads them from memory. Not mapped: a store
    // truncated under a mapping kills the process (SIGBUS) at the next read of a page past its end.
    this.db.pragma('cache_size = -65536');
    this.db.pragma('temp_store = MEMORY');
    this.db.exec(SEEN_SQL);
    createCurrentView(this.db); // the store's records: its record log's over its key-value table's
    this.schemaVersion = this.db.pragma('schema_version', { simple: true });
    this.getOne = this.db.prepare('SELECT value FROM temp.scalems_current WHERE key = ?').pluck();
    this.changed = this.db.prepare(CHANGED_SQL);
    this.gone = this.db.prepare(GONE_SQL);
    this.remember = this.db.prepare('INSERT OR REPLACE INTO temp.seen (key, value) VALUES (?, ?)');
    this.forget = this.db.prepare('DELETE FROM temp.seen WHERE key = ?');
    this.count = this.db.prepare(`SELECT count(*) FROM temp.scalems_current m WHERE ${RANGE('m')}`).pluck();
    this.remembered = this.db.prepare('SELECT count(*) FROM temp.seen').pluck();
    this.rememberAll = this.db.prepare(
      `INSERT INTO temp.seen (key, value) SELECT m.key, m.value FROM temp.scalems_current m WHERE ${RANGE('m')}`,
    );
    this.seen = this.db.prepare('SELECT key, value FROM temp.seen');
    this.seenOne = this.db.prepare('SELECT value FROM temp.seen WHERE key = ?').pluck();
    // a copy read again (see `moved`) starts with an empty TEMP table: read whole
    this.lastKv = undefined;
    if (hasRecordLog(this.db)) {
      this.appended = this.db.prepare('SELECT seq, key, value FROM main.scalems_log WHERE seq > ? ORDER BY seq');
      this.lastLogged = this.db.prepare('SELECT max(seq) FROM main.scalems_log').pluck();
      this.kvVersion = this.db.prepare("SELECT value FROM main.scalems_meta WHERE name = 'kv_version'").pluck();
    } else [this.appended, this.lastLogged, this.kvVersion] = [undefined, undefined, undefined];
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
    if (identityOf(this.file) !== this.fileIdentity) {
      // another file at the path (the store deleted and made again, or copied over): the connection still reads the
      // old one. Every task shown goes, and the new file's come as new.
      if (this.fileIdentity !== '') {
        this.db.close();
        this.fileIdentity = ''; // until connected: while no store is there, each poll says so and tries again
        this.replaced.push(...this.rows.keys());
        this.rows.clear();
        this.dependents.clear();
      }
      this.connect(true);
      this.version = this.dataVersion();
      return true;
    }
    if (this.db.memory) {
      if (stamp(this.file) === this.fileStamp) return false;
      this.db.close();
      this.connect(false);
      return true;
    }
    const version = this.dataVersion();
    if (version === this.version) return false;
    this.version = version;
    // its tables changed (a store of format 2, given its record log by a workflow that opened it): read them anew
    if (this.db.pragma('schema_version', { simple: true }) !== this.schemaVersion) {
      this.db.close();
      this.connect(false);
    }
    return true;
  }
}
