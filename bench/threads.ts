// 20 000 trivial tasks through submitOn(executor) on threads(), against the same 20 000 on piscina
// directly (same thread count, same function, same module loader). Run: npx tsx bench/threads.ts
import { availableParallelism } from 'node:os';
import { extname, join } from 'node:path';
import Piscina from 'piscina';
import { count, from, lastValueFrom, map } from 'rxjs';
import { call, executor, launch, memoryStore, openWorkflow, submitOn, type Job } from 'scalems';
import { threads } from 'scalems/node';
import { inc } from './threads-tasks';

const MODULE = join(__dirname, `threads-tasks${extname(__filename)}`);

export interface ThreadsBenchFigures {
  readonly tasks: number;
  readonly threads: number;
  /** tasks per second through submitOn(executor) on threads() */
  readonly scalemsPerSecond: number;
  /** tasks per second with piscina.run directly */
  readonly piscinaPerSecond: number;
  /** scalems / piscina (goal ≥ 0.8) */
  readonly ratio: number;
  /**
   * For diagnosis: the threads() backend alone (jobs handed to it directly, no workflow), against
   * piscina.run, both with as many tasks in flight as there are threads (as an executor admits them).
   */
  readonly backendAlonePerSecond: number;
  readonly piscinaWindowedPerSecond: number;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);

async function timePiscina(pool: Piscina<number, number>, n: number): Promise<number> {
  const t0 = performance.now();
  const results = await Promise.all(range(n).map((i) => pool.run(i)));
  const ms = performance.now() - t0;
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
  // start the threads and load the module before timing (piscina's pool is warmed up the same way)
  await Promise.all(range(nThreads).map((i) => ex.submit({ ...call(inc, -1 - i), key: `warm-${round}` })));
  const t0 = performance.now();
  const done = await lastValueFrom(
    from(range(n)).pipe(
      map((i) => call(inc, i)),
      submitOn(ex),
      count(),
    ),
  );
  const ms = performance.now() - t0;
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
  const rounds = options.rounds ?? 3;
  // the same loader as threads() gives its workers: none when compiled, tsx for TypeScript
  const execArgv = MODULE.endsWith('.ts') ? ['--require', require.resolve('tsx/cjs')] : [];
  const pool = new Piscina<number, number>({ filename: MODULE, minThreads: nThreads, maxThreads: nThreads, execArgv });
  await Promise.all(range(nThreads * 4).map((i) => pool.run(i)));
  let piscinaMs = Infinity;
  let scalemsMs = Infinity;
  let aloneMs = Infinity;
  let windowedMs = Infinity;
  // alternate, best of `rounds` each: this machine is shared and noisy
  for (let r = 0; r < rounds; r++) {
    piscinaMs = Math.min(piscinaMs, await timePiscina(pool, n));
    const s = await timeScalems(n, nThreads, r);
    scalemsMs = Math.min(scalemsMs, s.ms);
    await s.close();
    windowedMs = Math.min(windowedMs, await timeWindowed(n, nThreads, (i) => pool.run(i)));
    const alone = await timeBackendAlone(n, nThreads);
    aloneMs = Math.min(aloneMs, alone.ms);
    await alone.close();
  }
  await pool.destroy();
  const figures: ThreadsBenchFigures = {
    tasks: n,
    threads: nThreads,
    scalemsPerSecond: Math.round((n / scalemsMs) * 1000),
    piscinaPerSecond: Math.round((n / piscinaMs) * 1000),
    ratio: piscinaMs / scalemsMs,
    backendAlonePerSecond: Math.round((n / aloneMs) * 1000),
    piscinaWindowedPerSecond: Math.round((n / windowedMs) * 1000),
  };
  console.log(
    `threads: ${n.toLocaleString('en')} trivial tasks on ${nThreads} threads (memory store, best of ${rounds})`,
  );
  console.log(`  scalems submitOn(executor) on threads(): ${figures.scalemsPerSecond.toLocaleString('en')} tasks/s`);
  console.log(`  piscina.run directly:                    ${figures.piscinaPerSecond.toLocaleString('en')} tasks/s`);
  console.log(`  ratio ${figures.ratio.toFixed(3)} (goal ≥ 0.8)`);
  console.log(`  diagnosis, ${nThreads} in flight at a time (as an executor admits them), no workflow:`);
  console.log(
    `    threads() backend alone ${figures.backendAlonePerSecond.toLocaleString('en')} tasks/s | ` +
      `piscina.run ${figures.piscinaWindowedPerSecond.toLocaleString('en')} tasks/s | ` +
      `ratio ${(figures.backendAlonePerSecond / figures.piscinaWindowedPerSecond).toFixed(3)}`,
  );
  return figures;
}

if (require.main === module) void benchThreads();
