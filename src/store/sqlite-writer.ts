/** The writer thread of a SQLite store: batches committed on a connection of its own. */
import { Worker } from 'node:worker_threads';
import { sqliteDriver, sqliteDriverPath } from './sqlite-driver';

/**
 * A write as the writer thread takes it: rows flattened as key, json, key, json, ...; `write` upserts them into the
 * key-value table, `append` adds task records to the record log (see {@link FOLD_SQL}): each as its text, or as the
 * array of its fields (`recordFields`), whose text the thread makes.
 */
type Request =
  | { readonly id: number; readonly op: 'write'; readonly rows: string[] }
  | { readonly id: number; readonly op: 'append'; readonly rows: Array<string | unknown[]> }
  | { readonly id: number; readonly op: 'del'; readonly key: string }
  | { readonly id: number; readonly op: 'close' };
interface Reply {
  readonly id: number;
  readonly error?: { readonly message: string; readonly code?: string };
}

/** rows per multi-row upsert */
const MULTI = 32;
/** how long the writer waits without a request before it folds the record log into the key-value table */
export const IDLE_FOLD_MS = 1000;
/**
 * The record log's rows from which the writer folds it during a run, without waiting to be idle: once it holds at
 * least this many and at least as many as the key-value table (see {@link FOLD_SQL}).
 */
export const FOLD_MIN_ROWS = 131_072;

/**
 * Folds the record log into the key-value table (then emptied). Task records are appended to
 * `scalems_log` (rowid order, no key index: a batch of them writes only the pages at the table's end), and folded
 * into `scalems_kv` (one row per key, under a key index) in one transaction, by a writer that has written (what a run
 * that crashed left is read through the log until then, so that a store refused as it is opened is left as it was):
 * when the store is closed, when its writer has had nothing to do for {@link IDLE_FOLD_MS}, before any other write or
 * delete (so that a record in the log never hides a later value of its key), and during a run that never pauses,
 * whenever the log has grown to {@link FOLD_MIN_ROWS} rows and to the table's size. That bound keeps the log at most
 * as large as the table (what a reader's `get`, `scalems serve` after a fold, and the open after a crash go through)
 * and leaves close at most half of a burst's records to fold, while each fold still merges at least as many rows as
 * the table holds, so that it rewrites each page of the key index about once (folding a fixed number of rows each
 * time would, as the table grows, rewrite one page per row again). Readers see the last value of each key
 * across both tables (`createCurrentView`). Upserting each batch into the key index instead cost the writer thread
 * three times the CPU: random task ids land all over the index, so every batch rewrote most of its pages; one fold
 * rewrites them once.
 *
 * Every transaction that changes `scalems_kv` (a fold, a write, a delete) also counts one up in `scalems_meta`'s
 * `kv_version` ({@link KV_CHANGED_SQL}). Between two changes of it the log only grows, so a reader that watches the
 * store (`scalems serve`) reads only the log's rows it has not seen.
 */
export const FOLD_SQL =
  'INSERT INTO scalems_kv (key, value) SELECT key, value FROM scalems_log WHERE true ORDER BY key, seq ' +
  'ON CONFLICT (key) DO UPDATE SET value = excluded.value';
/** Empties the record log, once folded. */
const EMPTY_LOG_SQL = 'DELETE FROM scalems_log';
/** Counts a change of `scalems_kv` (see {@link FOLD_SQL}). */
export const KV_CHANGED_SQL =
  "INSERT INTO scalems_meta (name, value) VALUES ('kv_version', '1') " +
  'ON CONFLICT (name) DO UPDATE SET value = CAST(value AS INTEGER) + 1';
/** the size the write-ahead log reaches before the writer checkpoints it into the file, whatever the page size */
export const WAL_BYTES = 10_000 * 4096;

// The writer thread, as source: a worker cannot load this package's .ts files under jest or tsx,
// and the thread needs nothing of the package but the SQLite driver, whose path it is given.
const WRITER_SOURCE = `
// CommonJS, or an ES module where the process says so (node --input-type=module, in its arguments or NODE_OPTIONS):
// there require is not defined, and Node's own modules come through process.getBuiltinModule (Node >= 20.16)
const builtin = (name) => (typeof require === 'function' ? require(name) : process.getBuiltinModule(name));
const { parentPort, receiveMessageOnPort, workerData } = builtin('node:worker_threads');
const Database = builtin('node:module').createRequire(workerData.driver)(workerData.driver);
const db = new Database(workerData.path, { fileMustExist: true });
db.pragma('synchronous = NORMAL');
db.pragma('busy_timeout = 10000');
db.pragma('cache_size = -65536');
// A multi-row upsert keeps a statement journal (the pages it changed, to undo it alone): in memory, not in a
// temporary file, which cost a write() per page, about a third of this thread's time.
db.pragma('temp_store = MEMORY');
const upsertSql = (n) =>
  'INSERT INTO scalems_kv (key, value) VALUES ' + Array(n).fill('(?, ?)').join(', ') +
  ' ON CONFLICT (key) DO UPDATE SET value = excluded.value';
const upsert = db.prepare(upsertSql(1));
// ${MULTI} rows per statement: a third cheaper than one by one (keys are unique within a batch)
const upsertMany = db.prepare(upsertSql(${MULTI}));
const remove = db.prepare('DELETE FROM scalems_kv WHERE key = ?');
// the records come without the '#' that marks them encoded (see encodeRecordBody): SQLite adds it
const appendSql = (n) => "INSERT INTO scalems_log (key, value) VALUES " + Array(n).fill("(?, '#' || ?)").join(', ');
const appendOne = db.prepare(appendSql(1));
const appendMany = db.prepare(appendSql(${MULTI}));
const foldKv = db.prepare(${JSON.stringify(FOLD_SQL)});
const emptyLog = db.prepare(${JSON.stringify(EMPTY_LOG_SQL)});
const kvChanged = db.prepare(${JSON.stringify(KV_CHANGED_SQL)});
/** whether the record log may hold rows (true until a fold commits) */
let logged = db.prepare('SELECT EXISTS (SELECT 1 FROM scalems_log)').pluck().get() === 1;
const countLog = db.prepare('SELECT count(*) FROM scalems_log').pluck();
const countKv = db.prepare('SELECT count(*) FROM scalems_kv').pluck();
/** rows in the log (appended since the last fold) */
let logRows = logged ? countLog.get() : 0;
/** the log's rows from which to fold during a run (see FOLD_MIN_ROWS): at least foldMin, and the table's size */
const foldMin = workerData.fold.minRows;
let foldAt = foldMin;
/** the table's size is counted again once the log reaches foldMin, after a change of the table */
let kvCounted = false;
/** inside a transaction that changes the key-value table: the log's records into it first, and the change counted */
const foldIn = () => {
  if (logged) {
    foldKv.run();
    emptyLog.run();
  }
  kvChanged.run();
};
// A checkpoint copies the log's pages into the file and syncs both: once the log holds ${WAL_BYTES} bytes (10 000
// pages of SQLite's default 4 KiB) instead of SQLite's 1 000 pages, so that a page the batches keep changing (the key
// index's) is copied once per checkpoint, and the thread waits for a sync a tenth as often. What a crash can lose is
// the same: a commit is in the log either way. Counted in bytes, not pages: a store some tool rebuilt with larger
// pages would otherwise let the log grow as many times larger.
db.pragma('wal_autocheckpoint = ' + Math.max(1, Math.round(${WAL_BYTES} / db.pragma('page_size', { simple: true }))));
// A transaction larger than that (a fold during a long run merges the whole log, and grows with the store) grows
// the log file past it, and SQLite reuses the file from its start after a checkpoint without shrinking it: it stayed
// at its largest (300 MB at 2.5 million tasks) until the store was closed. Cut back to this size once reused.
db.pragma('journal_size_limit = ${WAL_BYTES}');
/** the rows (key, json, key, json, ...) in the order of their keys, rows of the same key in the order given */
const byKey = (rows) => {
  const at = [];
  for (let i = 0; i < rows.length; i += 2) at.push(i);
  at.sort((a, b) => (rows[a] < rows[b] ? -1 : rows[a] > rows[b] ? 1 : a - b));
  const sorted = [];
  for (const i of at) sorted.push(rows[i], rows[i + 1]);
  return sorted;
};
const put = (unsorted) => {
  // in key order, each insert lands next to the last one in the key index: its pages are then in the CPU's cache
  const rows = unsorted.length > 2 ? byKey(unsorted) : unsorted;
  let i = 0;
  for (; i + ${2 * MULTI} <= rows.length; i += ${2 * MULTI}) upsertMany.run(rows.slice(i, i + ${2 * MULTI}));
  for (; i < rows.length; i += 2) upsert.run(rows[i], rows[i + 1]);
};
const putLog = (rows) => {
  // records posted as the arrays of their fields: their text is made here, off the engine's thread
  for (let k = 1; k < rows.length; k += 2) if (typeof rows[k] !== 'string') rows[k] = JSON.stringify(rows[k]);
  let i = 0;
  for (; i + ${2 * MULTI} <= rows.length; i += ${2 * MULTI}) appendMany.run(rows.slice(i, i + ${2 * MULTI}));
  for (; i < rows.length; i += 2) appendOne.run(rows[i], rows[i + 1]);
};
// a write or delete of the key-value table folds the log first, in the same transaction
const batch = db.transaction((m) => {
  if (m.op === 'append') return putLog(m.rows);
  foldIn();
  if (m.op === 'write') put(m.rows);
  else remove.run(m.key);
});
const batches = db.transaction((writes) => {
  if (writes[0].op !== 'append') foldIn();
  for (const m of writes) (m.op === 'append' ? putLog : put)(m.rows);
});
const fold = db.transaction(() => logged && foldIn());
/** after a commit of these requests (\`rows\`: the log rows they appended): what the log and the table now hold */
const settle = (op, rows) => {
  if (op === 'append') {
    logged = true;
    logRows += rows;
  } else folded();
};
/** the log was folded (or emptied): the table changed */
const folded = () => {
  logged = false;
  logRows = 0;
  foldAt = foldMin;
  kvCounted = false;
};
const appended = (m) => m.rows.length / 2;
/** During a run: folds the log once it holds foldAt rows (see FOLD_MIN_ROWS); a failure leaves it for twice as many. */
function foldIfGrown() {
  if (logRows < foldAt) return;
  if (!kvCounted) {
    kvCounted = true;
    foldAt = Math.max(foldMin, countKv.get());
    if (logRows < foldAt) return;
  }
  try {
    fold();
    folded();
  } catch {
    foldAt = 2 * logRows;
  }
}
const errorOf = (e) => ({
  message: String(e && e.message),
  code: e && typeof e.code === 'string' ? e.code : undefined,
});
const reply = (m, error) => parentPort.postMessage({ id: m.id, error });
/** Runs one request; replies. */
function run(m) {
  let error;
  try {
    if (m.op === 'close') closeDb();
    else {
      if (m.op === 'append') logged = true;
      batch(m);
      settle(m.op, m.op === 'append' ? appended(m) : 0);
    }
  } catch (e) {
    error = errorOf(e);
  }
  reply(m, error);
}
/** Folds the log (what fails to fold stays in the log, which the next open folds: nothing is lost) and closes. */
/**
 * Whether this writer was asked to write. Until then it leaves the log as it found it, even at close: a store whose
 * log holds a damaged record is refused as it is opened (StoreCorruptError), and closed without a change to its file.
 */
let wrote = false;
function closeDb() {
  try {
    if (wrote) fold();
  } catch {}
  db.close();
}
/**
 * Writes queued one after the other commit as one transaction: a page the batches share (the key index's, where
 * random keys land everywhere) is then written to the log once, not once per batch, so a writer behind the engine
 * catches up with fewer writes. If that transaction fails, nothing of it was written: each write is tried again
 * alone, so that each fails or succeeds as it would have by itself.
 */
function runWrites(writes) {
  if (writes.length === 1) return run(writes[0]);
  try {
    if (writes[0].op === 'append') logged = true;
    batches(writes);
    settle(writes[0].op, writes[0].op === 'append' ? writes.reduce((n, m) => n + appended(m), 0) : 0);
  } catch {
    for (const m of writes) run(m);
    return;
  }
  for (const m of writes) reply(m, undefined);
}
let idle;
/** Folds the log once the writer has had nothing to do for fold.idleMs; a failure leaves it for later. */
function foldWhenIdle() {
  idle = undefined;
  try {
    fold();
    folded();
  } catch {}
}
parentPort.on('message', (first) => {
  if (idle !== undefined) clearTimeout(idle);
  idle = undefined;
  if (first.op !== 'close') wrote = true;
  const queue = [first];
  for (let next; queue[queue.length - 1].op !== 'close' && (next = receiveMessageOnPort(parentPort)) !== undefined; )
    queue.push(next.message);
  for (let i = 0; i < queue.length; ) {
    const op = queue[i].op;
    let j = i;
    if (op === 'write' || op === 'append') while (j < queue.length && queue[j].op === op) j++;
    if (j > i) runWrites(queue.slice(i, j));
    else run(queue[j++]);
    i = j;
  }
  if (queue[queue.length - 1].op === 'close') return parentPort.close();
  foldIfGrown();
  if (logged) idle = setTimeout(foldWhenIdle, workerData.fold.idleMs);
});
`;

/**
 * The writing half of a SQLite store: a thread with its own connection that runs each batch as one
 * transaction, so that the SQLite work of persisting a workflow runs beside the engine instead of
 * on its event loop (a batch of task records costs the event loop only its JSON). Requests run in
 * the order they are made; each resolves once committed. The thread starts when the store opens,
 * and keeps the process alive only while writes are pending.
 */
export class SqliteWriter {
  private worker: Worker | undefined;
  private next = 0;
  private readonly pending = new Map<number, { resolve: () => void; reject: (error: unknown) => void }>();
  private failed: unknown;
  private last: Promise<void> = Promise.resolve();

  constructor(
    private readonly dbPath: string,
    /** turns a SQLite error of the thread into the store's error (corruption, ...) */
    private readonly translate: (error: unknown) => unknown,
    /** when the writer folds the record log without being closed (tests change them) */
    private readonly fold: { readonly minRows: number; readonly idleMs: number } = {
      minRows: FOLD_MIN_ROWS,
      idleMs: IDLE_FOLD_MS,
    },
  ) {}

  /** Starts the thread now rather than at the first write (it takes tens of milliseconds to start). */
  warm(): void {
    this.worker ??= this.start();
  }

  /** Upserts `rows` (key, JSON text) in one transaction. */
  write(rows: string[]): Promise<void> {
    return this.request({ id: ++this.next, op: 'write', rows });
  }

  /**
   * Appends task records `rows` (key, then `encodeRecordBody` text or the `recordFields` array it is the text of)
   * to the record log in one transaction. Throws a `DataCloneError` if a value cannot be posted to the thread
   * (nothing is sent then).
   */
  append(rows: Array<string | unknown[]>): Promise<void> {
    return this.request({ id: ++this.next, op: 'append', rows });
  }

  del(key: string): Promise<void> {
    return this.request({ id: ++this.next, op: 'del', key });
  }

  /** Resolves once every request made so far has been committed (or has failed). */
  async idle(): Promise<void> {
    await this.last.catch(() => undefined);
  }

  /** Finishes the pending writes, closes the thread's connection and ends the thread. */
  async close(): Promise<void> {
    if (this.worker === undefined) return;
    const worker = this.worker;
    try {
      // a thread that failed has nothing to close (its writes have been rejected)
      if (this.failed === undefined) await this.request({ id: ++this.next, op: 'close' });
    } finally {
      this.worker = undefined;
      await worker.terminate();
    }
  }

  private request(message: Request): Promise<void> {
    if (this.failed !== undefined) return Promise.reject(this.failed);
    const worker = (this.worker ??= this.start());
    // posted first: a message that cannot be cloned throws, and leaves no request waiting for a reply
    worker.postMessage(message);
    const done = new Promise<void>((resolve, reject) => this.pending.set(message.id, { resolve, reject }));
    if (this.pending.size === 1) worker.ref();
    this.last = done;
    return done;
  }

  private start(): Worker {
    const worker = new Worker(WRITER_SOURCE, {
      eval: true,
      workerData: { driver: sqliteDriverPath(), path: this.dbPath, fold: this.fold },
    });
    worker.on('message', (reply: Reply) => {
      const waiter = this.pending.get(reply.id);
      if (waiter === undefined) return;
      this.pending.delete(reply.id);
      if (this.pending.size === 0) worker.unref();
      if (reply.error === undefined) waiter.resolve();
      else
        waiter.reject(
          this.translate(new (sqliteDriver().SqliteError)(reply.error.message, reply.error.code ?? 'SQLITE_ERROR')),
        );
    });
    worker.on('error', (error) => this.fail(error));
    worker.on('exit', (code) => {
      if (this.pending.size > 0)
        this.fail(
          new Error(`the SQLite writer thread of ${this.dbPath} stopped (exit code ${code}) with writes pending`),
        );
    });
    // until a write is pending; after the listeners are added: adding a 'message' listener refs the thread again,
    // and a store opened and never written then kept the process alive
    worker.unref();
    return worker;
  }

  private fail(error: unknown): void {
    this.failed ??= error;
    for (const waiter of this.pending.values()) waiter.reject(error);
    this.pending.clear();
  }
}
