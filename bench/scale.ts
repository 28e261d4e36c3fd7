// Scale: a million no-op tasks in one workflow (time against 100 000, heap held per task), and the shapes
// ensembles have (fan-out, fan-in, chain) at 100 000, each against 100 000 independent tasks measured in the
// same run. Everything is a ratio against a baseline of this run: these machines are noisy.
import { from, lastValueFrom, count } from 'rxjs';
import { executor, inProcess, launch, memoryStore, openWorkflow, submitOn, type Executor, type Task } from 'scalems';
import { rate } from './core';
import { cpuMicros, fmtRatio, median, spread } from './stats';

// Module-level functions: an inline arrow per submit would be a distinct function (a numbered identity) each time.
const noop = async (n: number): Promise<number> => n;
const one = async (): Promise<number> => 1;
const scale = async (base: number, k: number): Promise<number> => base * k;
const sum = async (xs: readonly number[]): Promise<number> => xs.reduce((a, b) => a + b, 0);
const next = async (x: number, _step: number): Promise<number> => x + 1;

const gc = (globalThis as { gc?: () => void }).gc;

interface Run {
  readonly ms: number;
  /**
   * CPU time of this process (every thread, the collector's included) over the same span: unlike `ms`, it does not
   * change with what else runs on the machine, so its ratio shows the engine's scaling where the time's is noise.
   */
  readonly cpuMs: number;
  /** heap held by the settled workflow, per task (NaN without --expose-gc) */
  readonly heapPerTask: number;
}

/** `n` no-op tasks through submitOn(executor) on inProcess(), memory store: time, and heap held once all settled. */
export async function noopRun(n: number): Promise<Run> {
  gc?.();
  const before = process.memoryUsage().heapUsed;
  const wf = await openWorkflow({ store: memoryStore(), name: `scale-${n}` });
  const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  const done = await lastValueFrom(from(Array.from({ length: n }, (_, i) => i)).pipe(submitOn(ex, noop), count()));
  await wf.flushed();
  const ms = performance.now() - t0;
  const cpuMs = cpuMicros(u0) / 1000;
  if (done !== n || wf.state.counts.succeeded !== n) throw new Error(`expected ${n} results, got ${done}`);
  let heapPerTask = NaN;
  if (gc !== undefined) {
    gc();
    heapPerTask = (process.memoryUsage().heapUsed - before) / n;
  }
  await wf.close();
  return { ms, cpuMs, heapPerTask };
}

type Shape = (ex: Executor, n: number) => Promise<number>;

/** n tasks, no edges: the baseline of the shapes. */
const independent: Shape = async (ex, n) => {
  const tasks: Array<Task<number>> = [];
  for (let i = 0; i < n; i++) tasks.push(ex.submit(noop, i));
  const results = await Promise.all(tasks);
  if (results[n - 1] !== n - 1) throw new Error('independent: wrong result');
  return n;
};

/** one task, n dependents of it */
const fanOut: Shape = async (ex, n) => {
  const root = ex.submit(one);
  const tasks: Array<Task<number>> = [];
  for (let i = 0; i < n; i++) tasks.push(ex.submit(scale, root, i));
  const results = await Promise.all(tasks);
  if (results[n - 1] !== n - 1) throw new Error('fan-out: wrong result');
  return n + 1;
};

/** n tasks, one task taking all their results as one array argument */
const fanIn: Shape = async (ex, n) => {
  const members: Array<Task<number>> = [];
  for (let i = 0; i < n; i++) members.push(ex.submit(noop, i));
  const total = await ex.submit(sum, members);
  if (total !== (n * (n - 1)) / 2) throw new Error('fan-in: wrong result');
  return n + 1;
};

/** n tasks, each the input of the next */
const chain: Shape = async (ex, n) => {
  let last: Task<number> = ex.submit(one);
  for (let i = 1; i < n; i++) last = ex.submit(next, last, i);
  if ((await last) !== n) throw new Error('chain: wrong result');
  return n;
};

/** Milliseconds per task of a shape, in a workflow of its own (memory store, inProcess()). */
async function timeShape(shape: Shape, n: number): Promise<number> {
  const wf = await openWorkflow({ store: memoryStore(), name: `shape-${n}` });
  const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
  const t0 = performance.now();
  const tasks = await shape(ex, n);
  await wf.flushed();
  const ms = performance.now() - t0;
  await wf.close();
  return ms / tasks;
}

export async function benchScale(): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};
  await noopRun(10_000); // warm up the JIT
  // 1. one million no-op tasks in one workflow, against 100 000 (the median of three runs, one before the
  // million and two after, so that the machine's state during the long run is sampled on both sides)
  const small: Run[] = [await noopRun(100_000)];
  const large = await noopRun(1_000_000);
  small.push(await noopRun(100_000), await noopRun(100_000));
  const ms100k = median(small.map((r) => r.ms));
  const heap100k = median(small.map((r) => r.heapPerTask));
  const bytes = (b: number): string => (Number.isNaN(b) ? 'n/a (run node with --expose-gc)' : `${Math.round(b)} bytes`);
  console.log('scale: no-op tasks through submitOn(executor) on inProcess(), memory store, one workflow');
  console.log(
    `  100 000: ${rate(100_000, ms100k)} (${spread(small.map((r) => r.ms))} ms)  |  ` +
      `1 000 000: ${rate(1_000_000, large.ms)} (${Math.round(large.ms).toLocaleString('en')} ms)`,
  );
  console.log(`  time 1M / 100k: ${(large.ms / ms100k).toFixed(2)} (10 = linear; goal <= 11)`);
  const cpu100k = median(small.map((r) => r.cpuMs));
  console.log(
    `  diagnosis, CPU of this process 1M / 100k: ${(large.cpuMs / cpu100k).toFixed(2)} ` +
      `(${Math.round(large.cpuMs).toLocaleString('en')} ms / ${Math.round(cpu100k).toLocaleString('en')} ms)`,
  );
  console.log(
    `  heap held per settled task: ${bytes(heap100k)} at 100k  |  ${bytes(large.heapPerTask)} at 1M (goal <= 600)`,
  );
  Object.assign(figures, { ms100k, ms1M: large.ms, scaling: large.ms / ms100k });
  Object.assign(figures, { heap100k, heap1M: large.heapPerTask });

  // 2. the shapes, each against independent tasks of the same round (three rounds: median [min–max])
  const n = 100_000;
  const rounds = 3;
  const shapes: Array<[string, Shape]> = [
    ['fan-out (1 -> 100 000)', fanOut],
    ['fan-in (100 000 -> 1)  ', fanIn],
    ['chain of 100 000       ', chain],
  ];
  await timeShape(fanOut, 5_000); // warm up
  await timeShape(fanIn, 5_000);
  await timeShape(chain, 5_000);
  const base: number[] = [];
  const perTask: number[][] = shapes.map(() => []);
  for (let round = 0; round < rounds; round++) {
    base.push(await timeShape(independent, n));
    for (const [i, [, shape]] of shapes.entries()) perTask[i]!.push(await timeShape(shape, n));
  }
  const us = (ms: number): string => (ms * 1000).toFixed(1);
  console.log(
    `scale: shapes of ${n.toLocaleString('en')} tasks (ex.submit, inProcess(), memory store), ` +
      `${rounds} rounds, median [min–max]`,
  );
  console.log(`  independent            ${spread(base, us)} µs/task`);
  for (const [i, [name]] of shapes.entries()) {
    const ratios = perTask[i]!.map((ms, round) => ms / base[round]!);
    console.log(`  ${name} ${spread(perTask[i]!, us)} µs/task  |  ratio ${spread(ratios, fmtRatio)} (goal <= 2)`);
    figures[name.trim()] = median(ratios);
  }
  return figures;
}

if (require.main === module) void benchScale();
