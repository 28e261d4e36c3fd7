/** The lock file that gives one process at a time a store. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { StoreAccessError, StoreLockedError, StoreWriteError } from '../errors';
import { bootId, startTimeOf } from './process-identity';

/**
 * An exclusive, advisory lock on a resource (a store file), held through a lock file beside it.
 *
 * Protocol:
 * - Acquire: write `{ pid, host, since, token, start, boot }` (`start`: the process's start time, field 22 of
 *   `/proc/<pid>/stat`; `boot`: the kernel's boot id) into a temporary file of its own (mode 0600), then
 *   hard-link it to `<lockPath>`: the link is atomic and fails if the lock exists, so exactly one creator wins,
 *   and the lock file is never seen empty or half written (a full disk fails the temporary file, and leaves
 *   no lock).
 * - If it exists, read the holder. The holder is *stale* when it is on this host and its process is gone:
 *   its pid is not alive (`kill(pid, 0)` → ESRCH), or is alive but started at another time than the lock
 *   says (the pid was reused), or the host has rebooted since; or when it names this very process but this
 *   process does not hold it (a previous process with the same pid, as happens in containers). A lock file
 *   that is empty or not a lock (left by a process that died while writing it, as versions before the atomic
 *   write could) is stale once it is {@link STALE_INVALID_MS} old; until then it is waited for.
 * - A stale lock is taken over under a guard file `<lockPath>.takeover` (created exclusively; one taker at a
 *   time): checked to still be the one judged stale, deleted, and the acquisition retried.
 * - Otherwise (alive on this host, this process already holding it, or another host whose processes we
 *   cannot see) acquisition fails with {@link StoreLockedError} naming the holder and what to do.
 * - Release (on `close()`, and on process exit for locks still held) deletes the file, but only if it
 *   still holds our token. A process killed by a signal leaves its lock file; the next opener on the
 *   same host finds the process gone and takes it over.
 */
export interface LockHolder {
  pid: number;
  host: string;
  since: string;
}

export interface FileLock {
  readonly path: string;
  readonly holder: LockHolder;
  /** Deletes the lock file if it is still ours. Idempotent. */
  release(): void;
}

interface LockContent extends LockHolder {
  token: string;
  /** the holder's start time (clock ticks since boot), where /proc tells it */
  start?: number;
  /** the boot id of the holder's host, where /proc tells it */
  boot?: string;
}

/** A lock file that is empty or not a lock is stale once this old (by its modification time). */
export const STALE_INVALID_MS = 3000;
/** A takeover guard older than this was left by a process that died taking over (a takeover takes microseconds). */
const STALE_GUARD_MS = 2000;

/** Locks held by this process, shared by every copy of this module (jest sandboxes load it again). */
const held: Map<string, string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('scalems.store.heldLocks')] ??=
  new Map<string, string>()) as Map<string, string>;
let exitHookInstalled = false;

export function acquireFileLock(lockPath: string, resource: string): FileLock {
  const deadline = Date.now() + STALE_INVALID_MS + 5000;
  for (let attempt = 0; attempt < 200 || Date.now() < deadline; attempt++) {
    const start = startTimeOf(process.pid);
    const boot = bootId();
    const mine: LockContent = {
      pid: process.pid,
      host: os.hostname(),
      since: new Date().toISOString(),
      token: randomUUID(),
      ...(start === undefined ? {} : { start }),
      ...(boot === undefined ? {} : { boot }),
    };
    const text = JSON.stringify(mine);
    if (tryCreate(lockPath, text, resource)) {
      held.set(lockPath, text);
      installExitHook();
      return {
        path: lockPath,
        holder: { pid: mine.pid, host: mine.host, since: mine.since },
        release: () => release(lockPath, text),
      };
    }
    const existing = readExisting(lockPath);
    if (existing === undefined) continue; // released meanwhile: try again
    const holder = parseHolder(existing.text);
    if (holder === undefined) {
      const age = Date.now() - existing.mtimeMs;
      if (age >= STALE_INVALID_MS) takeOver(lockPath, existing.text);
      else sleepSync(Math.min(100, STALE_INVALID_MS - age)); // its writer may still be at it
      continue;
    }
    if (isStale(lockPath, holder)) {
      takeOver(lockPath, existing.text);
      continue;
    }
    throw new StoreLockedError(lockedMessage(resource, lockPath, holder), {
      pid: holder.pid,
      host: holder.host,
      since: holder.since,
    });
  }
  throw new StoreLockedError(`${resource}: could not acquire ${lockPath}: it keeps changing hands; try again.`, {
    pid: 0,
    host: 'unknown',
  });
}

/** Creates the lock with its whole content at once; false if it exists. */
function tryCreate(lockPath: string, text: string, resource: string): boolean {
  const temporary = `${lockPath}.${process.pid}-${randomUUID()}.tmp`;
  try {
    const fd = fs.openSync(temporary, 'wx', 0o600);
    try {
      fs.writeSync(fd, text);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    try {
      fs.linkSync(temporary, lockPath);
      return true;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return false;
      if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'ENOSYS' && code !== 'EOPNOTSUPP') throw error;
    }
    // a file system without hard links: an exclusive rename is not to be had, create in place (the old way)
    return createInPlace(lockPath, text);
  } catch (error) {
    throw lockFailure(error, lockPath, resource);
  } finally {
    fs.rmSync(temporary, { force: true });
  }
}

function createInPlace(lockPath: string, text: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, 'wx', 0o600);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } catch (error) {
    fs.rmSync(lockPath, { force: true }); // never leave an empty lock
    throw error;
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** Why the lock could not be written, as a typed error. */
function lockFailure(error: unknown, lockPath: string, resource: string): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  const detail = (error as Error).message;
  if (code === 'ENOSPC' || code === 'EDQUOT')
    return new StoreWriteError(
      `${resource} cannot be locked: the disk is full (${detail}). Nothing was changed and no lock file was ` +
        'left: free space on that file system and open it again.',
      lockPath,
      'disk full',
      { cause: error },
    );
  if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS')
    return new StoreAccessError(
      `${resource} cannot be locked: this user may not create files in ${path.dirname(lockPath)} (${detail}). ` +
        'Nothing was changed: give this user write permission there, or open the store read-only ' +
        '({ readonly: true }, as `scalems status` does).',
      lockPath,
      { cause: error },
    );
  return error;
}

/** The lock file's text and age, waiting briefly while a writer of an older version is still writing it. */
function readExisting(lockPath: string): { text: string; mtimeMs: number } | undefined {
  let text = '';
  let mtimeMs = 0;
  for (let i = 0; i < 5; i++) {
    try {
      text = fs.readFileSync(lockPath, 'utf8');
      mtimeMs = fs.statSync(lockPath).mtimeMs;
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (parseHolder(text) !== undefined) break;
    sleepSync(10);
  }
  return { text, mtimeMs };
}

function parseHolder(text: string): LockContent | undefined {
  try {
    const value = JSON.parse(text) as Partial<LockContent> | null;
    if (value && Number.isInteger(value.pid) && typeof value.host === 'string' && typeof value.since === 'string') {
      return value as LockContent;
    }
  } catch {
    // fall through
  }
  return undefined;
}

function isStale(lockPath: string, holder: LockContent): boolean {
  if (holder.host !== os.hostname()) return false; // cannot see processes on another host
  if (holder.pid === process.pid) return !held.has(lockPath);
  const boot = bootId();
  if (holder.boot !== undefined && boot !== undefined && holder.boot !== boot) return true; // rebooted since
  if (!isAlive(holder.pid)) return true;
  if (holder.start === undefined) return false;
  const start = startTimeOf(holder.pid);
  return start !== undefined && start !== holder.start; // the pid now names another process
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/** Removes a stale lock file, but only if it is still the one we judged stale; one taker at a time. */
function takeOver(lockPath: string, staleText: string): void {
  const guard = `${lockPath}.takeover`;
  try {
    fs.closeSync(fs.openSync(guard, 'wx', 0o600));
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    const age = Date.now() - (fs.statSync(guard, { throwIfNoEntry: false })?.mtimeMs ?? Date.now());
    if (age > STALE_GUARD_MS) fs.rmSync(guard, { force: true });
    else sleepSync(2); // another opener is taking it over: then look again
    return;
  }
  try {
    // Only a taker holding the guard deletes a lock that is not its own, and the holder of a stale lock is
    // gone: the lock read now cannot be replaced before it is deleted.
    let current: string;
    try {
      current = fs.readFileSync(lockPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
      throw error;
    }
    if (current === staleText) fs.rmSync(lockPath, { force: true });
  } finally {
    fs.rmSync(guard, { force: true });
  }
}

function release(lockPath: string, text: string): void {
  if (held.get(lockPath) !== text) return;
  held.delete(lockPath);
  try {
    if (fs.readFileSync(lockPath, 'utf8') === text) fs.unlinkSync(lockPath);
  } catch {
    // already gone: nothing to release
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const [lockPath, text] of [...held]) release(lockPath, text);
  });
}

function lockedMessage(resource: string, lockPath: string, holder: LockHolder): string {
  const who = `process ${holder.pid} on host ${holder.host} (since ${holder.since})`;
  if (holder.pid === process.pid && holder.host === os.hostname()) {
    return (
      `${resource} is already open in this process (pid ${holder.pid}, since ${holder.since}). Close the ` +
      `other store first, or share it.`
    );
  }
  const advice =
    holder.host === os.hostname()
      ? 'wait for that process to finish, or stop it (the lock of a process that died is taken over automatically)'
      : `wait for that process to finish, or stop it; it runs on another host, so this host cannot tell whether ` +
        `it is still alive: if it is not, delete ${lockPath}`;
  return (
    `${resource} is in use by ${who}. Only one process may open a store at a time: ${advice}. Lock ` +
    `file: ${lockPath}.`
  );
}

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}
