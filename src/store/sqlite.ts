/** `sqliteStore(path)`: a store in one SQLite file (better-sqlite3, WAL), the default on Node. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import type Database from 'better-sqlite3';
import {
  InvalidOptionsError,
  StoreAccessError,
  StoreClosedError,
  StoreCorruptError,
  StoreVersionError,
  StoreWriteError,
} from '../errors';
import { checkOptions, rules, type RulesOf } from '../task/options';
import { show } from '../task/requirements';
import { versionProblem, withInternalWrites, type Store } from './store';
import { assertStorable, toStorableJson } from './storable';
import { decodeRecord, isEncodedRecord, recordFields } from './record-codec';
import { acquireFileLock, type FileLock } from './lock';
import { SqliteWriter } from './sqlite-writer';
import { accessFailure, corrupt, translate, writeFailure } from './sqlite-errors';
import { openReadonly } from './sqlite-readonly';
import { sqliteDriver } from './sqlite-driver';

/**
 * The schema version this code writes (`PRAGMA user_version` of the file). Version 3 appends task records, encoded
 * (`record-codec.ts`), to a record log folded into the key-value table (`FOLD_SQL`); version 2 wrote them into that
 * table as JSON objects, which this code still reads: a version 2 store opened for writing becomes version 3 (the
 * scalems releases of version 2 then refuse it as newer, as they would miss the log and could not read the records).
 */
export const SQLITE_STORE_VERSION = 3;
/** The oldest schema version this code reads. */
const OLDEST_READABLE_VERSION = 2;
/** `PRAGMA application_id` of every scalems store: 'SCMS'. Any other SQLite file is not a store. */
export const SQLITE_STORE_APPLICATION_ID = 0x53434d53;

export interface SqliteStoreOptions {
  /**
   * Open an existing store for reading only, without taking its lock, for example to inspect a store
   * that a running workflow holds. Writes reject. Default: false.
   */
  readonly?: boolean;
  /** Run `PRAGMA quick_check` when opening (about 25 ms per 100 000 records). Default: true. */
  verify?: boolean;
}

const OPTION_RULES = { readonly: rules.flag, verify: rules.flag } satisfies RulesOf<SqliteStoreOptions>;

const LOG_TABLE_SQL =
  'CREATE TABLE IF NOT EXISTS scalems_log (seq INTEGER PRIMARY KEY, key TEXT NOT NULL, value TEXT NOT NULL);';
const SCHEMA = `
  CREATE TABLE scalems_meta (name TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
  CREATE TABLE scalems_kv (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL);
  ${LOG_TABLE_SQL}`;

/** @internal Whether the store on `db` has a record log (format 3; format 2 had none). */
export function hasRecordLog(db: Database.Database): boolean {
  return (
    db.prepare("SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'scalems_log'").get() !== undefined
  );
}

/**
 * @internal The store as readers see it, as a TEMP view `scalems_current (key, value)` on connection `db`: the last
 * value of each key, the record log's over the key-value table's (see `FOLD_SQL`). A version 2 store has no log.
 */
export function createCurrentView(db: Database.Database): void {
  db.exec(
    !hasRecordLog(db)
      ? 'CREATE TEMP VIEW IF NOT EXISTS scalems_current AS SELECT key, value FROM main.scalems_kv'
      : // one max() in a GROUP BY: the row's other columns are those of the row with the largest seq (SQLite's rule)
        'CREATE TEMP VIEW IF NOT EXISTS scalems_current AS ' +
          'SELECT key, value FROM main.scalems_kv WHERE key NOT IN (SELECT key FROM main.scalems_log) ' +
          'UNION ALL SELECT key, value FROM (SELECT key, value, max(seq) FROM main.scalems_log GROUP BY key)',
  );
}

/**
 * A store in one SQLite file (Node only): WAL journal, `synchronous=NORMAL`, one row per key with the
 * value as JSON text (task records, from the workflow's `setRecords`, encoded and appended to a record log first:
 * see `FOLD_SQL`), one transaction per `setMany` (or for several queued behind one another: each is still
 * written whole or not at all), a checkpoint once the `-wal` file holds about 40 MB (10 000 pages of 4 KiB).
 * Values must be JSON data (see `assertStorable`); anything else is refused before a byte of the batch is written.
 * Values are checked and turned into JSON on the caller's thread; a writer thread with its own connection commits
 * them (see `SqliteWriter`), in order, and reads wait for the writes made before them.
 *
 * Opening creates the parent directories (mode 0700) and the file (0600, as are its -wal, -shm and lock files:
 * task records hold the `env` values of executables) if needed, and takes the lock `<path>.lock`
 * (see `acquireFileLock`): a store in use by another live process, or already open in this one,
 * throws `StoreLockedError`. A file that is not a scalems store or is damaged throws
 * `StoreCorruptError`; one of another schema version throws `StoreVersionError`; a path that cannot be made
 * or opened (a parent that is a file, a missing permission) throws `StoreAccessError`; a failed write (disk
 * full, read-only, I/O error) rejects with `StoreWriteError`. In those cases the file is not modified.
 */
export function sqliteStore(file: string, options: SqliteStoreOptions = {}): Store {
  if (typeof file !== 'string' || file === '' || file.includes('\0'))
    throw new InvalidOptionsError(
      `sqliteStore(file, options): file must be a path (a non-empty string without NUL), got ${show(file)}`,
    );
  checkOptions('sqliteStore', options, OPTION_RULES);
  sqliteDriver(); // before anything is made: a missing driver throws MissingDependencyError, naming it
  const resolved = path.resolve(file);
  if (options.readonly) {
    const dbPath = realStorePath(resolved);
    return wrap(openStoreReadonly(dbPath, options.verify ?? true), dbPath, undefined);
  }
  try {
    // only the directories made here get 0700: the store's own directory holds task records and task files
    fs.mkdirSync(path.dirname(resolved), { recursive: true, mode: 0o700 });
  } catch (error) {
    throw accessFailure(error, resolved, 'make the directory of');
  }
  const dbPath = realStorePath(resolved);
  let lock: FileLock;
  try {
    lock = acquireFileLock(`${dbPath}.lock`, `The store ${dbPath}`);
  } catch (error) {
    throw accessFailure(error, dbPath, 'lock');
  }
  try {
    removeLeftovers(dbPath);
    if (!fs.existsSync(dbPath)) create(dbPath);
    refuseHardLinks(dbPath);
    const db = openVerified(dbPath, false, options.verify ?? true);
    db.pragma('journal_mode = WAL'); // already so since creation; this restores it if a tool changed it
    db.pragma('synchronous = NORMAL');
    db.transaction(() => {
      // the rows of an older version are read as they are; what is written from now on is this version's
      if ((db.pragma('user_version', { simple: true }) as number) < SQLITE_STORE_VERSION) {
        db.exec(LOG_TABLE_SQL);
        db.pragma(`user_version = ${SQLITE_STORE_VERSION}`);
      }
      // What a run that ended without closing the store left in the record log is read through it (see
      // `createCurrentView`), and folded once this store has written: folded here, a damaged record in it was written
      // into the table (over the good one of its key) before the workflow read it and refused the store as damaged.
    })();
    return wrap(db, dbPath, lock);
  } catch (error) {
    lock.release();
    throw translate(error, dbPath);
  }
}

/**
 * @internal The connection `sqliteStore(file, { readonly: true })` reads through: the store verified (header,
 * version, schema, `quick_check` unless `verify` is false) and opened read-only, without its lock. `scalems serve`
 * keeps one open to poll a running workflow's store with queries of its own.
 */
export function openStoreReadonly(file: string, verify = true): Database.Database {
  sqliteDriver();
  const dbPath = path.resolve(file);
  if (!fs.existsSync(dbPath))
    throw new StoreAccessError(`sqlite:${dbPath}: no store at this path to open read-only.`, dbPath);
  refuseDirectory(dbPath, fs.statSync(dbPath));
  return openVerified(dbPath, true, verify);
}

/**
 * The store's path with its symbolic links resolved (also a link to a file yet to be made): the lock `<path>.lock`
 * is then the same file whichever name a process opens the store by, as SQLite's own -wal and -shm files are.
 */
function realStorePath(resolved: string): string {
  let at = resolved;
  for (let hops = 0; hops < 40; hops++) {
    try {
      return fs.realpathSync(at);
    } catch {
      // not there (yet): its directory's real path, and the target of the name if it is a dangling link
    }
    let target: string | undefined;
    try {
      target = fs.readlinkSync(at);
    } catch {
      target = undefined;
    }
    if (target === undefined) {
      let dir: string;
      try {
        dir = fs.realpathSync(path.dirname(at));
      } catch {
        return at; // a directory to be made: what it is, opening says
      }
      return path.join(dir, path.basename(at));
    }
    at = path.resolve(path.dirname(at), target);
  }
  return at;
}

/** Throws `StoreAccessError` if a directory is where the store file goes. */
function refuseDirectory(dbPath: string, stat: fs.Stats): void {
  if (stat.isDirectory())
    throw new StoreAccessError(
      `cannot open the store ${dbPath}: a directory is in the way (the store is a file). Nothing was changed: ` +
        'choose another store path, or move what is in the way.',
      dbPath,
    );
}

/**
 * A store file with other hard links is refused: the lock file (`<path>.lock`) and SQLite's -wal and -shm files go by
 * the name opened, so two processes opening two of its names would both write it, and SQLite's journal would not
 * protect it (sqlite.org, "How To Corrupt An SQLite Database File", 2.5).
 */
function refuseHardLinks(dbPath: string): void {
  const stat = fs.statSync(dbPath);
  // (a directory's links are its own entries: it was said to have hard links, with advice to find them)
  refuseDirectory(dbPath, stat);
  const links = stat.nlink;
  if (links > 1)
    throw new StoreAccessError(
      `the store ${dbPath} has ${links} hard links (other names for the same file): it is not opened, since the ` +
        'lock and SQLite journal of one name do not cover the others. Nothing was changed: remove the other ' +
        'names (find / -samefile <store>), or copy the store (cp) instead of linking it.',
      dbPath,
    );
}

/**
 * Removes the temporary files of a `create` that was killed (`<store>.creating-<pid>-<uuid>`, and its -journal): with
 * the lock held, no other process is making this store, so every such file is left over (before, they stayed).
 */
function removeLeftovers(dbPath: string): void {
  const dir = path.dirname(dbPath);
  const prefix = `${path.basename(dbPath)}.creating-`;
  let names: string[];
  try {
    names = fs.readdirSync(dir);
  } catch {
    return;
  }
  for (const name of names) if (name.startsWith(prefix)) fs.rmSync(path.join(dir, name), { force: true });
}

/** Builds the store in a temporary file and renames it into place, so a store file is never half made. */
function create(dbPath: string): void {
  const temporary = `${dbPath}.creating-${process.pid}-${randomUUID()}`;
  try {
    // made 0600 before SQLite opens it: SQLite gives the -wal and -shm files the mode of the store file
    fs.closeSync(fs.openSync(temporary, 'wx', 0o600));
    const db = new (sqliteDriver())(temporary);
    try {
      db.pragma(`application_id = ${SQLITE_STORE_APPLICATION_ID}`);
      db.pragma(`user_version = ${SQLITE_STORE_VERSION}`);
      db.exec(SCHEMA);
      db.prepare('INSERT INTO scalems_meta (name, value) VALUES (?, ?)').run('format', 'scalems-store');
      db.prepare('INSERT INTO scalems_meta (name, value) VALUES (?, ?)').run('created', new Date().toISOString());
      db.pragma('journal_mode = WAL');
    } finally {
      db.close();
    }
    // A -wal/-shm left from a deleted store file would be replayed onto the new one: they are orphans.
    for (const suffix of ['-wal', '-shm']) fs.rmSync(dbPath + suffix, { force: true });
    fs.renameSync(temporary, dbPath);
  } catch (error) {
    throw writeFailure(error, dbPath) ?? accessFailure(error, dbPath, 'create');
  } finally {
    fs.rmSync(temporary, { force: true });
  }
}

/** Checks the header with plain reads first, so that a foreign or newer file is never opened by SQLite. */
function inspectHeader(dbPath: string): void {
  const header = Buffer.alloc(100);
  let size: number;
  const fd = fs.openSync(dbPath, 'r');
  try {
    size = fs.fstatSync(fd).size;
    fs.readSync(fd, header, 0, 100, 0);
  } finally {
    fs.closeSync(fd);
  }
  const notAStore = `delete or move it to start a new store there, or open the intended store file`;
  if (size < 100 || header.toString('latin1', 0, 16) !== 'SQLite format 3\0') {
    throw new StoreCorruptError(
      `${dbPath} is not a scalems store: ${size === 0 ? 'the file is empty' : 'it is not an SQLite database'}. ` +
        `It was left untouched; ${notAStore}.`,
    );
  }
  const applicationId = header.readUInt32BE(68);
  if (applicationId !== SQLITE_STORE_APPLICATION_ID) {
    throw new StoreCorruptError(
      `${dbPath} is an SQLite database but not a scalems store (application_id 0x${applicationId.toString(16)}). ` +
        `It was left untouched; ${notAStore}.`,
    );
  }
  checkVersion(dbPath, header.readInt32BE(60));
}

function checkVersion(dbPath: string, found: number): void {
  if (found >= OLDEST_READABLE_VERSION && found <= SQLITE_STORE_VERSION) return;
  throw new StoreVersionError(
    versionProblem(dbPath, found, SQLITE_STORE_VERSION, 'start a new store at another path'),
    found,
    SQLITE_STORE_VERSION,
  );
}

/** What a path that is not a regular file is, for the message that refuses it. */
function kindOf(stat: fs.Stats): string {
  if (stat.isDirectory()) return 'a directory';
  if (stat.isFIFO()) return 'a named pipe (FIFO)';
  if (stat.isSocket()) return 'a socket';
  if (stat.isCharacterDevice() || stat.isBlockDevice()) return 'a device';
  return 'not a regular file';
}

function openVerified(dbPath: string, readonly: boolean, quickCheck: boolean): Database.Database {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dbPath);
  } catch (error) {
    throw accessFailure(error, dbPath, 'open');
  }
  // checked before anything opens it: opening a named pipe would wait for a writer forever
  if (!stat.isFile())
    throw new StoreCorruptError(
      `${dbPath} is ${kindOf(stat)}, not a store file. It was left untouched; open the intended store file, or ` +
        'move it away to start a new store there.',
    );
  try {
    inspectHeader(dbPath);
  } catch (error) {
    throw accessFailure(error, dbPath, 'read');
  }
  let db: Database.Database;
  try {
    db = readonly ? openReadonly(dbPath) : new (sqliteDriver())(dbPath, { fileMustExist: true });
  } catch (error) {
    throw translate(error, dbPath);
  }
  try {
    // The header said yes; now ask SQLite, which also sees changes still in the write-ahead log.
    checkVersion(dbPath, db.pragma('user_version', { simple: true }) as number);
    const format = db.prepare("SELECT value FROM scalems_meta WHERE name = 'format'").pluck().get() as
      string | undefined;
    if (format !== 'scalems-store') throw new StoreCorruptError(`${dbPath} is not a scalems store (no format marker).`);
    checkSchema(db, dbPath, db.pragma('user_version', { simple: true }) as number);
    if (quickCheck) {
      const problems = (db.pragma('quick_check') as Array<{ quick_check: string }>).map((row) => row.quick_check);
      if (problems.join() !== 'ok') {
        const lines = problems
          .join('\n')
          .split('\n')
          .filter((line) => !line.startsWith('***'));
        throw corrupt(
          dbPath,
          `quick_check: ${lines.slice(0, 2).join('; ')}${lines.length > 2 ? `; and ${lines.length - 2} more` : ''}`,
        );
      }
    }
    return db;
  } catch (error) {
    db.close();
    throw translate(error, dbPath);
  }
}

/** The tables and columns the store reads and writes: a table dropped or changed by another tool is damage. */
function checkSchema(db: Database.Database, dbPath: string, version: number): void {
  const tables: Record<string, string[]> = { scalems_meta: ['name', 'value'], scalems_kv: ['key', 'value'] };
  if (version >= 3) tables.scalems_log = ['seq', 'key', 'value'];
  for (const [table, expected] of Object.entries(tables)) {
    const columns = (db.pragma(`table_info(${table})`) as Array<{ name: string }>).map((c) => c.name);
    if (columns.length === 0) throw corrupt(dbPath, `its table ${table} is missing`);
    if (expected.some((c) => !columns.includes(c)))
      throw corrupt(dbPath, `its table ${table} has the columns ${columns.join(', ')}, not ${expected.join(', ')}`);
  }
}

function wrap(db: Database.Database, dbPath: string, lock: FileLock | undefined): Store {
  const description = `sqlite:${dbPath}`;
  createCurrentView(db);
  const getOne = db.prepare('SELECT value FROM temp.scalems_current WHERE key = ?').pluck();
  const allKeys = db.prepare('SELECT key FROM temp.scalems_current ORDER BY key').pluck();
  const allEntries = db.prepare('SELECT key, value FROM temp.scalems_current ORDER BY key').raw();
  // Writes go to a thread with its own connection; this connection only reads (WAL lets both run).
  const writer = lock === undefined ? undefined : new SqliteWriter(dbPath, (error) => translate(error, dbPath));
  writer?.warm(); // so that the first batch is not delayed by the thread's start
  let closed = false;
  /** the file written (SQLite goes on writing it when it is deleted or moved: see `close`) */
  const opened = writer === undefined ? undefined : fs.statSync(dbPath);

  const parse = (key: string, text: string): unknown => {
    let value: unknown;
    try {
      value = isEncodedRecord(text) ? decodeRecord(key, text) : JSON.parse(text);
    } catch {
      throw corrupt(dbPath, `the value of ${JSON.stringify(key)} is not JSON`);
    }
    if (value === undefined) throw corrupt(dbPath, `the value of ${JSON.stringify(key)} is not a task record`);
    return value;
  };
  const open = (): void => {
    if (closed) throw new StoreClosedError(`${description}: the store is closed; open it again to use it.`);
  };
  const writable = (): SqliteWriter => {
    open();
    if (writer === undefined) throw new Error(`${description} is open read-only; it cannot be written.`);
    return writer;
  };
  /** Reads, after every write made before it: the writer thread commits in order. */
  async function read<T>(operation: () => T): Promise<T> {
    open();
    await writer?.idle();
    open();
    try {
      return operation();
    } catch (error) {
      throw translate(error, dbPath);
    }
  }

  const store: Store = {
    description,
    assertStorable,
    async get<V>(key: string) {
      return read(() => {
        const json = getOne.get(key) as string | undefined;
        return (json === undefined ? undefined : parse(key, json)) as V | undefined;
      });
    },
    async set(key, value) {
      const w = writable();
      await w.write([key, toStorableJson(key, value)]);
    },
    async setMany(entries) {
      const w = writable();
      // every value is checked and turned into JSON before the batch is handed over: all or nothing
      const rows: string[] = [];
      for (const [key, value] of entries) rows.push(key, toStorableJson(key, value));
      if (rows.length > 0) await w.write(rows);
    },
    async del(key) {
      await writable().del(key);
    },
    async keys() {
      return read(() => allKeys.all() as string[]);
    },
    async entries<V>() {
      return read(() =>
        (allEntries.all() as Array<[string, string]>).map(([key, json]) => [key, parse(key, json) as V] as [string, V]),
      );
    },
    async close() {
      if (closed) return;
      closed = true;
      // the reading connection first: the last connection to close checkpoints the log into the file and removes it
      // (about 2 ms per 1 000 records written), and that is then the writer's thread, not the engine's
      try {
        db.close();
      } finally {
        try {
          await writer?.close();
        } finally {
          lock?.release();
        }
      }
      // written all along to a file that is no longer at its path: said, rather than a close that looks like success
      const now = opened === undefined ? undefined : fs.statSync(dbPath, { throwIfNoEntry: false });
      if (opened !== undefined && (now === undefined || now.dev !== opened.dev || now.ino !== opened.ino))
        throw new StoreWriteError(
          `the store ${dbPath} was deleted, moved or replaced while this process had it open: what it wrote went ` +
            'to the file it had opened, which is not at that path now (a moved store holds it where it went). ' +
            'A resume from this path runs that work again.',
          dbPath,
          'the store file is gone from its path',
        );
    },
  };
  // values the workflow has checked, and its records in their compact form (`record-codec.ts`)
  return withInternalWrites(store, {
    async setManyChecked(entries) {
      const w = writable();
      const rows: string[] = [];
      for (const [key, value] of entries) rows.push(key, JSON.stringify(value));
      if (rows.length > 0) await w.write(rows);
    },
    // Not an async function: one would hold `rows` (every record's fields) until the writer has committed them, long
    // enough for the young generation's collector to copy them twice and promote them to the old one (a tenth more
    // of its work per task). Posted, they are the writer's copy.
    setRecords(entries) {
      try {
        const w = writable();
        if (entries.length === 0) return Promise.resolve();
        const rows: Array<string | unknown[]> = [];
        for (const [key, record] of entries) rows.push(key, recordFields(key, record));
        try {
          return w.append(rows);
        } catch (error) {
          // a value that cannot be cloned to the writer thread (a Proxy in a task's arguments: JSON reads it, a
          // structured clone refuses it): the batch goes as text, made here
          // (by name: a DOMException of Node's realm is no Error of a vm context's, as under jest)
          if ((error as { name?: unknown } | null)?.name !== 'DataCloneError') throw error;
          for (let i = 1; i < rows.length; i += 2) rows[i] = JSON.stringify(rows[i]);
          return w.append(rows);
        }
      } catch (error) {
        return Promise.reject(error);
      }
    },
  });
}
