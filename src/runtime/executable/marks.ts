/**
 * Attempt marks: every program an attempt starts gets `SCALEMS_ATTEMPT=<token>` in its environment, which every
 * process it starts inherits, also one that leaves its session and process group (`setsid`, a double fork: a
 * daemon). Scanning `/proc/<pid>/environ` for the token finds them all (Linux). A program that clears its environment
 * (`env -i`) and leaves its session escapes it.
 *
 * A token is `<owner>-<backend>-<executor>-<attempt>-<place>`: `owner` the driving process (`<pid>.<start time>`),
 * `backend` and `executor` counters in it, `place` a digest of the workflow directory. So a backend ends what its
 * attempts left (a prefix), and a later run of the same workflow finds what a dead run left (the place, and an owner
 * that is not alive any more). A program started by a task of another scalems run keeps that run's tokens too: the
 * variable holds them all, separated by `:`.
 */
import { createHash } from 'node:crypto';
import { closeSync, openSync, readSync } from 'node:fs';

export const MARK_VARIABLE = 'SCALEMS_ATTEMPT';

/** Tells the tokens that are wanted. */
export type MarkTest = (token: string) => boolean;

/** `env` with `token` added to its `SCALEMS_ATTEMPT`. */
export function withMark(env: NodeJS.ProcessEnv, token: string): NodeJS.ProcessEnv {
  const inherited = env[MARK_VARIABLE];
  return { ...env, [MARK_VARIABLE]: inherited !== undefined && inherited !== '' ? `${inherited}:${token}` : token };
}

/** One buffer for reading environments (most are a few KiB; a longer one is read on in steps). */
let buffer = Buffer.alloc(64 * 1024);

/** The tokens of a process (none if it has no mark, is gone, or its environment cannot be read). */
export function marksOf(pid: number): readonly string[] {
  let fd: number | undefined;
  let length = 0;
  try {
    fd = openSync(`/proc/${pid}/environ`, 'r');
    for (;;) {
      const n = readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
      if (length === buffer.length) {
        const bigger = Buffer.alloc(buffer.length * 2);
        buffer.copy(bigger);
        buffer = bigger;
      }
    }
  } catch {
    return [];
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  const key = Buffer.from(`${MARK_VARIABLE}=`, 'latin1');
  for (let at = 0; at < length;) {
    let end = buffer.indexOf(0, at);
    if (end < 0 || end > length) end = length;
    if (end - at >= key.length && buffer.compare(key, 0, key.length, at, at + key.length) === 0)
      return buffer.toString('latin1', at + key.length, end).split(':');
    at = end + 1;
  }
  return [];
}

/** True if a token of the process passes `test`. */
export function hasMark(pid: number, test: MarkTest): boolean {
  return marksOf(pid).some(test);
}

/** The owner part of this process's tokens: its pid and start time (which tell it from a later one with its pid). */
export function ownerOf(pid: number, start: string | undefined): string {
  return `${pid}.${start ?? '0'}`;
}

/** The place part of tokens: a digest of the workflow directory. */
export function placeOf(workflowDir: string): string {
  return createHash('sha256').update(workflowDir).digest('hex').slice(0, 12);
}

/** The fields of a token of this format, or undefined. */
export function parseToken(token: string): { readonly owner: string; readonly place: string } | undefined {
  const m = /^(\d+\.\d+)-\d+-\d+-\d+-([0-9a-f]{12})$/.exec(token);
  return m === null ? undefined : { owner: m[1]!, place: m[2]! };
}
