// 20 000 trivial tasks through submitOn(executor) on threads(), against the same 20 000 on piscina
// directly (same thread count, same function, same module loader). Run: npx tsx bench/threads.ts
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import Piscina from 'piscina';
import { count, from, lastValueFrom, map } from 'rxjs';
import { call, executor, launch, memoryStore, openWorkflow, submitOn, type Job } from 'scalems';
import { threads } from 'scalems/node';
import { alternate, cpuMicros, fmtRatio, median, perSecond, spread } from './stats';
import { inc } from './threads-tasks';

const MODULE = join(__dirname, `threads-tasks${extname(__filename)}`);

export interface ThreadsBenchFigures {
  readonly tasks: number;
  readonly threads: number;
  readonly rounds: number;
  /** tasks per second through submitOn(executor) on threads() (median of the rounds) */
  readonly scalemsPerSecond: number;
  /** tasks per second with piscina.run directly (median of the rounds) */
  readonly piscinaPerSecond: number;
  /** median of the rounds' piscina time / scalems time (goal ≥ 0.8) */
  readonly ratio: number;
  /** the lowest and highest of the rounds' ratios */
  readonly ratioSpread: readonly [min: number, max: number];
  /**
   * For diagnosis: the threads() backend alone (jobs handed to it directly, no workflow), against
   * piscina.run, both with as many tasks in flight as there are threads (as an executor admits them). Medians.
   */
  readonly backendAlonePerSecond: number;
  readonly piscinaWindowedPerSecond: number;
}

/** tasks each round's fresh threads() pool runs before it is timed */
const WARM_TASKS = 1000;

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

/**
 * CPU time of this process (every thread: the main one, the workers, libuv's) per task of the last timed section of
 * each side: what a side costs whatever else runs on the machine (time is shared with it; this is not).
 */
const cpuPerTask = { piscina: [] as number[], scalems: [] as number[] };

async function timePiscina(pool: Piscina<number, number>, n: number): Promise<number> {
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const results = await Promise.all(range(n).map((i) => pool.run(i)));
  const ms = performance.now() - t0;
  cpuPerTask.piscina.push(cpuMicros(u0) / n);
  if (results.length !== n || results[n - 1] !== n) throw new Error('piscina lost results');
  return ms;
}

async function timeScalems(
  n: number,
  nThreads: number,
  round: number,
): Promise<{ ms: number; close: () => Promise<void> }> {
  const wf = await openWorkflow({ store: memoryStore(), name: `bench-threads-${round}` });
  const rt = launch(wf, threads({ modules: [MODULE], maxThreads: nThreads }));
  const ex = executor(rt);
  // Start the threads, load the module and let the workers' code get hot before timing: piscina's pool is one
  // pool, warmed up once and by every round, while each round here has threads of its own (2 tasks, as before,
  // left the workers' side of the first timed tasks to the interpreter).
  await lastValueFrom(
    from(range(WARM_TASKS)).pipe(
      map((i) => ({ ...call(inc, -1 - i), key: `warm-${round}` })),
      submitOn(ex),
      count(),
    ),
  );
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const done = await lastValueFrom(
    from(range(n)).pipe(
      map((i) => call(inc, i)),
      submitOn(ex),
      count(),
    ),
  );
  const ms = performance.now() - t0;
  cpuPerTask.scalems.push(cpuMicros(u0) / n);
  if (done !== n) throw new Error(`expected ${n} results, got ${done}`);
  return { ms, close: () => rt.shutdown() };
}

/** `n` tasks, at most `window` in flight at once. */
async function timeWindowed(n: number, window: number, run: (i: number) => Promise<unknown>): Promise<number> {
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    range(window).map(async () => {
      while (next < n) await run(next++);
    }),
  );
  return performance.now() - t0;
}

async function timeBackendAlone(n: number, nThreads: number): Promise<{ ms: number; close: () => Promise<void> }> {
  const wf = await openWorkflow({ store: memoryStore(), name: 'bench-threads-backend' });
  const backend = threads({ modules: [MODULE], maxThreads: nThreads });
  const scope = backend.open({}, { workflow: wf, executorId: 'bench' });
  const signal = new AbortController().signal;
  const job = (i: number): Job => ({
    id: `job-${i}`,
    label: undefined,
    kind: 'function',
    name: inc.taskName,
    version: undefined,
    args: [i],
    requirements: {},
    attempt: 1,
    signal,
    workflow: wf,
    invoke: () => undefined,
  });
  await Promise.all(range(nThreads * 4).map((i) => lastValueFrom(scope.run(job(i)))));
  const ms = await timeWindowed(n, nThreads, (i) => lastValueFrom(scope.run(job(i))));
  return { ms, close: () => scope.close() };
}

export async function benchThreads(
  options: { tasks?: number; threads?: number; rounds?: number } = {},
): Promise<ThreadsBenchFigures> {
  const n = options.tasks ?? 20_000;
  const nThreads = options.threads ?? availableParallelism();
  const rounds = options.rounds ?? 5;
  // the same loader as threads() gives its workers: none when compiled, tsx for TypeScript
  const execArgv = MODULE.endsWith('.ts') ? ['--require', require.resolve('tsx/cjs')] : [];
  const pool = new Piscina<number, number>({ filename: MODULE, minThreads: nThreads, maxThreads: nThreads, execArgv });
  await Promise.all(range(nThreads * 4).map((i) => pool.run(i)));
  // one round of each, untimed, so that neither side's first timed round pays for the JIT
  await timePiscina(pool, n);
  await (await timeScalems(n, nThreads, -1)).close();
  cpuPerTask.piscina.length = 0;
  cpuPerTask.scalems.length = 0;
  const piscina: number[] = [];
  const scalems: number[] = [];
  const ratios: number[] = [];
  const alone: number[] = [];
  const windowed: number[] = [];
  const aloneRatios: number[] = [];
  const scalemsRound = async (r: number): Promise<number> => {
    const s = await timeScalems(n, nThreads, r);
    await s.close();
    return s.ms;
  };
  const aloneRound = async (): Promise<number> => {
    const a = await timeBackendAlone(n, nThreads);
    await a.close();
    return a.ms;
  };
  const windowedRound = (): Promise<number> => timeWindowed(n, nThreads, (i) => pool.run(i));
  // alternating rounds, each side first in every other one, so that the machine's noise hits both
  for (let r = 0; r < rounds; r++) {
    const [pMs, s] = await alternate(
      r,
      () => timePiscina(pool, n),
      () => scalemsRound(r),
    );
    const [wMs, a] = await alternate(r, windowedRound, aloneRound);
    piscina.push(perSecond(n, pMs));
    scalems.push(perSecond(n, s));
    ratios.push(pMs / s);
    windowed.push(perSecond(n, wMs));
    alone.push(perSecond(n, a));
    aloneRatios.push(wMs / a);
  }
  await pool.destroy();
  const figures: ThreadsBenchFigures = {
    tasks: n,
    threads: nThreads,
    rounds,
    scalemsPerSecond: Math.round(median(scalems)),
    piscinaPerSecond: Math.round(median(piscina)),
    ratio: median(ratios),
    ratioSpread: [Math.min(...ratios), Math.max(...ratios)],
    backendAlonePerSecond: Math.round(median(alone)),
    piscinaWindowedPerSecond: Math.round(median(windowed)),
  };
  console.log(
    `threads: ${n.toLocaleString('en')} trivial tasks on ${nThreads} threads ` +
      `(memory store; median [min–max] of ${rounds} alternating rounds)`,
  );
  console.log(`  scalems submitOn(executor) on threads(): ${spread(scalems)} tasks/s`);
  console.log(`  piscina.run directly:                    ${spread(piscina)} tasks/s`);
  console.log(`  ratio piscina time / scalems time ${spread(ratios, fmtRatio)} (goal ≥ 0.8)`);
  const us = (x: number): string => x.toFixed(1);
  console.log(
    `  diagnosis, CPU of this process (all threads) per task: scalems ${spread(cpuPerTask.scalems, us)} µs, ` +
      `piscina ${spread(cpuPerTask.piscina, us)} µs`,
  );
  console.log(`  diagnosis, ${nThreads} in flight at a time (as an executor admits them), no workflow:`);
  console.log(`    threads() backend alone ${spread(alone)} tasks/s`);
  console.log(`    piscina.run             ${spread(windowed)} tasks/s`);
  console.log(`    ratio ${spread(aloneRatios, fmtRatio)}`);
  return figures;
}

if (require.main === module) void benchThreads();
