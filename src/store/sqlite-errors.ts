/** What a failure of SQLite or of the file system under a store means to its user, as a typed error. */
import { StoreAccessError, StoreCorruptError, StoreWriteError } from '../errors';

export function corrupt(dbPath: string, detail: string): StoreCorruptError {
  return new StoreCorruptError(
    `${dbPath} is damaged (${detail}). It was left untouched: restore it from a backup, or move it away ` +
      'to start a new store (the recorded workflow state is then lost).',
  );
}

const KEPT =
  'Nothing of the failed batch was written; a workflow keeps those records and writes them again on its next ' +
  'write, flushed() or close()';

/** A failed write (SQLite's code, or a Node error code) as `StoreWriteError`, or undefined if it is not one. */
export function writeFailure(error: unknown, file: string): StoreWriteError | undefined {
  const code = (error as { code?: unknown } | null)?.code;
  if (typeof code !== 'string') return undefined;
  const detail = error instanceof Error ? error.message : String(error);
  if (code === 'SQLITE_FULL' || code === 'ENOSPC' || code === 'EDQUOT')
    return new StoreWriteError(
      `${file}: the disk is full (${code === 'EDQUOT' ? 'quota exceeded' : detail}). ${KEPT}: free space on ` +
        'that file system (or move the store to another one) and they land.',
      file,
      'disk full',
      { cause: error },
    );
  if (code.startsWith('SQLITE_READONLY') || code === 'EROFS')
    return new StoreWriteError(
      `${file} cannot be written: ${detail}. ${KEPT}: give this user write permission on the store file, its ` +
        '-wal and -shm files and its directory (or remount the file system read-write).',
      file,
      'read-only',
      { cause: error },
    );
  if (code.startsWith('SQLITE_IOERR') || code === 'EIO')
    return new StoreWriteError(
      `${file}: the file system failed a write (${code}: ${detail}). ${KEPT}: check the disk and its logs.`,
      file,
      'i/o error',
      { cause: error },
    );
  return undefined;
}

/** A Node file-system error while finding or making the store's path as `StoreAccessError` (or a write error). */
export function accessFailure(error: unknown, file: string, doing: string): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const written = writeFailure(error, file);
  if (written !== undefined) return written;
  const why: Record<string, string> = {
    EEXIST: 'a part of that path is a file, not a directory',
    ENOTDIR: 'a part of that path is a file, not a directory',
    EACCES: 'permission denied',
    EPERM: 'operation not permitted',
    ELOOP: 'too many symbolic links',
    ENOENT: 'a directory of that path is not there, and could not be made (a dangling symbolic link?)',
    ENAMETOOLONG: 'the path is too long',
    EISDIR: 'a directory is in the way (of the store, or of its lock file <store>.lock)',
  };
  if (code === undefined || why[code] === undefined) return error;
  return new StoreAccessError(
    `cannot ${doing} the store ${file}: ${why[code]} (${(error as Error).message}). Nothing was changed: ` +
      (code === 'EACCES' || code === 'EPERM'
        ? 'give this user the permission, or choose a store path it may write.'
        : 'choose another store path, or move what is in the way.'),
    file,
    { cause: error },
  );
}

/**
 * The SQLite result code of a better-sqlite3 error (`SQLITE_CANTOPEN`...), else undefined. Not `instanceof`: the
 * native addon keeps the `SqliteError` class of the first copy of better-sqlite3 loaded in the process, and a module
 * registry of its own (jest's, per test file) has another.
 */
export function sqliteCode(error: unknown): string | undefined {
  if (typeof error !== 'object' || error === null || (error as { name?: unknown }).name !== 'SqliteError')
    return undefined;
  const code = (error as { code?: unknown }).code;
  return typeof code === 'string' && code.startsWith('SQLITE_') ? code : undefined;
}

/** SQLite's "damaged file" errors become StoreCorruptError, failed writes StoreWriteError; others pass through. */
export function translate(error: unknown, dbPath: string): unknown {
  const code = sqliteCode(error);
  if (code === undefined) return error;
  const message = String((error as { message?: unknown }).message);
  if (/^SQLITE_(CORRUPT|NOTADB)/.test(code)) return corrupt(dbPath, message);
  if (/no such table/.test(message)) return new StoreCorruptError(`${dbPath} is not a scalems store (${message}).`);
  return writeFailure(error, dbPath) ?? error;
}
