// Figures over the rounds of a benchmark: the median, and the spread printed as `median [min–max]`.
// These machines are shared and noisy: each benchmark alternates its baseline and scalems rounds, so
// that noise hits both, and reports the median of the rounds with their spread rather than one figure.
import { readFileSync } from 'node:fs';

export const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

export const perSecond = (n: number, ms: number): number => (n / ms) * 1000;

/** a rate, rounded, with thousands separators */
export const fmt = (x: number): string => Math.round(x).toLocaleString('en');

/** a ratio, to three places */
export const fmtRatio = (x: number): string => x.toFixed(3);

/** `median [min–max]` */
export const spread = (xs: readonly number[], f: (x: number) => string = fmt): string =>
  `${f(median(xs))} [${f(Math.min(...xs))}–${f(Math.max(...xs))}]`;

/** Runs `baseline` and `scalems` once each, the baseline first in even rounds: returns [baseline, scalems]. */
export async function alternate(
  round: number,
  baseline: () => Promise<number>,
  scalems: () => Promise<number>,
): Promise<[baseline: number, scalems: number]> {
  if (round % 2 === 0) {
    const b = await baseline();
    return [b, await scalems()];
  }
  const s = await scalems();
  return [await baseline(), s];
}

/** Milliseconds for `n` runs of `one`, `concurrency` at a time (each lane starts the next when its run ends). */
export async function lanes(n: number, concurrency: number, one: () => Promise<void>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        next++;
        await one();
      }
    }),
  );
  return performance.now() - t0;
}

/** Microseconds of CPU (user + system, every thread of this process) since `start` (a `process.cpuUsage()`). */
export function cpuMicros(start: NodeJS.CpuUsage): number {
  const u = process.cpuUsage(start);
  return u.user + u.system;
}

/**
 * The machine's idle and busy ticks so far (all cores, from /proc/stat; undefined where there is none). Whether a side
 * used the whole machine says what limits it: one that leaves cores idle waits on something (the loop: its one thread
 * forking), one that does not is limited by the CPU it needs per task, wherever that is spent.
 */
export function machineTicks(): { idle: number; total: number } | undefined {
  try {
    const f = readFileSync('/proc/stat', 'latin1').split('\n', 1)[0]!.trim().split(/\s+/).slice(1).map(Number);
    const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
    return { idle: f[3]! + f[4]!, total }; // idle, iowait
  } catch {
    return undefined;
  }
}

/** The percentage of the machine left idle since `t0` (NaN without /proc/stat). */
export function idleSince(t0: ReturnType<typeof machineTicks>): number {
  const t1 = machineTicks();
  if (t0 === undefined || t1 === undefined || t1.total === t0.total) return NaN;
  return (100 * (t1.idle - t0.idle)) / (t1.total - t0.total);
}
