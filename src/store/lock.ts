/** The lock file that gives one process at a time a store. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import { randomUUID } from 'node:crypto';
import { StoreLockedError } from '../errors';

/**
 * An exclusive, advisory lock on a resource (a store file), held through a lock file beside it.
 *
 * Protocol:
 * - Acquire: create `<lockPath>` with `O_CREAT | O_EXCL` (atomic: exactly one creator wins) and write
 *   `{ pid, host, since, token }` into it at once.
 * - If it exists, read the holder. The holder is *stale* when it is on this host and its pid is not
 *   alive (`kill(pid, 0)` → ESRCH), or when it names this very process but this process does not hold
 *   it (a previous process that had the same pid, as happens in containers). A stale lock is taken over:
 *   renamed away atomically, checked to still be the one we read, deleted, and the acquisition retried.
 * - Otherwise (alive on this host, this process already holding it, or another host whose processes we
 *   cannot see) acquisition fails with {@link StoreLockedError} naming the holder and what to do.
 * - Release (on `close()`, and on process exit for locks still held) deletes the file, but only if it
 *   still holds our token. A process killed by a signal leaves its lock file; the next opener on the
 *   same host finds the pid dead and takes it over.
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
}

/** Locks held by this process, shared by every copy of this module (jest sandboxes load it again). */
const held: Map<string, string> = ((globalThis as Record<symbol, unknown>)[Symbol.for('scalems.store.heldLocks')] ??=
  new Map<string, string>()) as Map<string, string>;
let exitHookInstalled = false;

export function acquireFileLock(lockPath: string, resource: string): FileLock {
  for (let attempt = 0; attempt < 20; attempt++) {
    const mine: LockContent = {
      pid: process.pid,
      host: os.hostname(),
      since: new Date().toISOString(),
      token: randomUUID(),
    };
    const text = JSON.stringify(mine);
    if (tryCreate(lockPath, text)) {
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
    const holder = parseHolder(existing);
    if (holder === undefined) {
      throw new StoreLockedError(
        `${resource} is locked by ${lockPath}, whose content is not a valid lock ` +
          `(${JSON.stringify(existing.slice(0, 80))}). ` +
          'If no scalems process is using this store, delete the lock file and try again.',
        { pid: 0, host: 'unknown' },
      );
    }
    if (isStale(lockPath, holder)) {
      takeOver(lockPath, existing);
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

function tryCreate(lockPath: string, text: string): boolean {
  let fd: number;
  try {
    fd = fs.openSync(lockPath, 'wx', 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw error;
  }
  try {
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  return true;
}

/** The lock file's text, waiting briefly while its creator is still writing it; undefined if it is gone. */
function readExisting(lockPath: string): string | undefined {
  let text = '';
  for (let i = 0; i < 20; i++) {
    try {
      text = fs.readFileSync(lockPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw error;
    }
    if (parseHolder(text) !== undefined) return text;
    sleepSync(10); // the creator writes right after O_EXCL creation
  }
  return text;
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

function isStale(lockPath: string, holder: LockHolder): boolean {
  if (holder.host !== os.hostname()) return false; // cannot see processes on another host
  if (holder.pid === process.pid) return !held.has(lockPath);
  return !isAlive(holder.pid);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // exists, owned by another user
  }
}

/** Removes a stale lock file, but only if it is still the one we judged stale. */
function takeOver(lockPath: string, staleText: string): void {
  const aside = `${lockPath}.stale-${process.pid}-${randomUUID()}`;
  try {
    fs.renameSync(lockPath, aside);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return; // someone else removed it
    throw error;
  }
  const moved = fs.readFileSync(aside, 'utf8');
  if (moved === staleText) {
    fs.unlinkSync(aside);
    return;
  }
  // A live process took the lock between our read and our rename: give it back.
  try {
    fs.linkSync(aside, lockPath);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error; // a third opener won; it holds it now
  } finally {
    fs.unlinkSync(aside);
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
