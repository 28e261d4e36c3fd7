/** Opening a store for reading only, also where this user may not write beside it (another user's store). */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type Database from 'better-sqlite3';
import { StoreAccessError } from '../errors';
import { sqliteCode } from './sqlite-errors';
import { sqliteDriver } from './sqlite-driver';

/**
 * Opens `dbPath` read-only. SQLite reads a WAL-mode file through its `-shm` index, which it must create
 * (in the store's directory) when no connection has the store open: a user who may read the store but not
 * write its directory (another user's store, a read-only file system) is refused that. When the store has
 * no write-ahead log to read (no `-wal` file, or an empty one: everything is in the store file), the file
 * is read into memory and opened there instead, which writes nothing. When it has one, the missing
 * permission is named (`StoreAccessError`).
 */
export function openReadonly(dbPath: string): Database.Database {
  let db: Database.Database | undefined;
  try {
    db = new (sqliteDriver())(dbPath, { readonly: true, fileMustExist: true });
    db.pragma('schema_version'); // SQLite opens lazily: this reads the file (and, in WAL mode, the -shm index)
    return db;
  } catch (error) {
    db?.close();
    if (!/^SQLITE_(READONLY|CANTOPEN|PERM|AUTH)/.test(sqliteCode(error) ?? '')) throw error;
    const wal = fs.statSync(`${dbPath}-wal`, { throwIfNoEntry: false });
    if (wal === undefined || wal.size === 0) return inMemory(dbPath);
    throw new StoreAccessError(
      `cannot read the store ${dbPath}: its write-ahead log (${dbPath}-wal) holds changes, and reading them needs ` +
        `write permission on ${dbPath}-shm (or on ${path.dirname(dbPath)} to create it), which this user ` +
        `lacks (${String((error as { message?: unknown }).message)}). Nothing was changed: run this as the ` +
        "store's owner, or once the workflow using it has closed it (that folds the log into the store file), " +
        'read it again.',
      dbPath,
      { cause: error },
    );
  }
}

/** The store file, read into memory: a copy no other connection sees, so nothing is written beside it. */
function inMemory(dbPath: string): Database.Database {
  const bytes = fs.readFileSync(dbPath);
  // bytes 18 and 19 say "WAL mode" (2); a copy in memory has no log, and needs none: there is none to read
  if (bytes.length >= 100) bytes[18] = bytes[19] = 1;
  return new (sqliteDriver())(bytes, { readonly: true });
}
