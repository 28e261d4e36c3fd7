// 200 `true` executables through processes() against a plain child_process.spawn loop with the same
// concurrency. Run: npx tsx bench/processes.ts
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
import { processes } from 'scalems/node';

export interface ProcessesBenchFigures {
  readonly tasks: number;
  readonly concurrency: number;
  /**
   * executables per second through scalems (workflow + processes() backend: working directory, stdout/stderr files,
   * process group)
   */
  readonly scalemsPerSecond: number;
  /** plain `spawn('true')` per second, same concurrency, stdio ignored */
  readonly spawnPerSecond: number;
  /** spawnPerSecond / scalemsPerSecond: how many times faster the bare loop is */
  readonly ratio: number;
}

async function viaScalems(n: number, cores: number): Promise<number> {
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-'));
  try {
    const wf = await openWorkflow({ store: memoryStore(), name: 'bench' });
    const rt = launch(wf, processes({ root, cores }));
    const ex = executor(rt);
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, i) => ex.submit(executable(['true'], { key: String(i) }))));
    const ms = performance.now() - t0;
    await rt.shutdown();
    return (n * 1000) / ms;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

async function viaSpawn(n: number, concurrency: number): Promise<number> {
  const one = (): Promise<void> =>
    new Promise((resolve, reject) => {
      const child = spawn('true', [], { stdio: 'ignore' });
      child.once('error', reject);
      child.once('exit', () => resolve());
    });
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
  return (n * 1000) / (performance.now() - t0);
}

/** Measures, prints (unless `quiet`) and returns the figures. */
export async function benchProcesses(
  options: { tasks?: number; concurrency?: number; quiet?: boolean } = {},
): Promise<ProcessesBenchFigures> {
  const tasks = options.tasks ?? 200;
  const concurrency = options.concurrency ?? availableParallelism();
  await viaSpawn(20, concurrency); // warm up
  const spawnPerSecond = await viaSpawn(tasks, concurrency);
  const scalemsPerSecond = await viaScalems(tasks, concurrency);
  const f = { tasks, concurrency, scalemsPerSecond, spawnPerSecond, ratio: spawnPerSecond / scalemsPerSecond };
  if (options.quiet !== true) {
    console.log(`processes(): ${f.tasks} x true, concurrency ${f.concurrency}`);
    console.log(`  scalems processes(): ${f.scalemsPerSecond.toFixed(0)} tasks/s`);
    console.log(`  plain spawn loop:    ${f.spawnPerSecond.toFixed(0)} tasks/s`);
    console.log(`  ratio (spawn / scalems): ${f.ratio.toFixed(2)}`);
  }
  return f;
}

if (require.main === module) {
  benchProcesses().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
