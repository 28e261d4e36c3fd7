/** What tells a process apart from a later one that got the same pid: its start time, and the host's boot. */
import * as fs from 'node:fs';

/**
 * The start time of process `pid` in clock ticks since boot (field 22 of `/proc/<pid>/stat`), or undefined
 * where there is no /proc or no such process. Two processes that had the same pid differ in it.
 */
export function startTimeOf(pid: number): number | undefined {
  let stat: string;
  try {
    stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses, so count from the last ')'
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const start = Number(fields[22 - 3]);
  return Number.isSafeInteger(start) ? start : undefined;
}

let boot: string | undefined | null = null;

/** The kernel's boot id (it changes at each boot), or undefined where /proc does not tell it. */
export function bootId(): string | undefined {
  if (boot === null) {
    try {
      boot = fs.readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim() || undefined;
    } catch {
      boot = undefined;
    }
  }
  return boot;
}
