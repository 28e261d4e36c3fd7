// Throughput of the core: no-op tasks through submitOn(executor) on inProcess(), against the same work
// as a plain RxJS pipeline measured in the same run (these machines are noisy: compare ratios).
import { from, lastValueFrom, mergeMap, count } from 'rxjs';
import { executor, inProcess, launch, memoryStore, openWorkflow, submitOn, type Store } from 'scalems';

const noop = async (n: number): Promise<number> => n;

export async function timeScalems(n: number, store: Store = memoryStore()): Promise<number> {
  const wf = await openWorkflow({ store, name: `bench-${n}` });
  const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
  const t0 = performance.now();
  const done = await lastValueFrom(from(Array.from({ length: n }, (_, i) => i)).pipe(submitOn(ex, noop), count()));
  await wf.flushed();
  const ms = performance.now() - t0;
  if (done !== n) throw new Error(`expected ${n} results, got ${done}`);
  await wf.close();
  return ms;
}

export async function timeBaseline(n: number): Promise<number> {
  const t0 = performance.now();
  const done = await lastValueFrom(from(Array.from({ length: n }, (_, i) => i)).pipe(mergeMap(noop, 64), count()));
  if (done !== n) throw new Error('baseline lost results');
  return performance.now() - t0;
}

/** Best of `repeat` runs: the least disturbed one. */
export async function best(repeat: number, fn: () => Promise<number>): Promise<number> {
  let min = Infinity;
  for (let i = 0; i < repeat; i++) min = Math.min(min, await fn());
  return min;
}

export const rate = (n: number, ms: number): string => `${Math.round((n / ms) * 1000).toLocaleString('en')} tasks/s`;

/** Heap held by a workflow of `n` settled tasks (records, handles, indexes), in bytes per task. */
export async function heapPerTask(n: number): Promise<number> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc === undefined) return NaN;
  gc();
  const before = process.memoryUsage().heapUsed;
  const wf = await openWorkflow({ store: memoryStore(), name: 'heap' });
  const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
  await lastValueFrom(from(Array.from({ length: n }, (_, i) => i)).pipe(submitOn(ex, noop), count()));
  await wf.flushed();
  gc();
  const perTask = (process.memoryUsage().heapUsed - before) / n;
  if (wf.state.counts.succeeded !== n) throw new Error('lost tasks');
  return perTask;
}

export async function benchCore(): Promise<Record<string, number>> {
  await timeScalems(2_000); // warm up the JIT
  await timeBaseline(2_000);
  const s10k = await best(3, () => timeScalems(10_000));
  const b10k = await best(3, () => timeBaseline(10_000));
  const s100k = await best(2, () => timeScalems(100_000));
  const b100k = await best(2, () => timeBaseline(100_000));
  console.log('core: no-op tasks through submitOn(executor) on inProcess(), memory store');
  console.log(
    `  10 000:  scalems ${rate(10_000, s10k)}  |  rxjs mergeMap ${rate(10_000, b10k)}  |  ` +
      `ratio ${(b10k / s10k).toFixed(3)}`,
  );
  console.log(
    `  100 000: scalems ${rate(100_000, s100k)}  |  rxjs mergeMap ${rate(100_000, b100k)}  |  ` +
      `ratio ${(b100k / s100k).toFixed(3)}`,
  );
  console.log(
    `  time 100k / 10k: scalems ${(s100k / s10k).toFixed(2)} (10 = linear)  |  rxjs ${(b100k / b10k).toFixed(2)}`,
  );
  const heap = await heapPerTask(100_000);
  console.log(
    `  heap held per settled task (100 000 in one ` +
      `workflow): ${Number.isNaN(heap) ? 'n/a (run node with --expose-gc)' : `${Math.round(heap)} bytes`}`,
  );
  return { s10k, b10k, s100k, b100k, scaling: s100k / s10k, heap };
}

if (require.main === module) void benchCore();
