// Persisted throughput: the same no-op tasks with sqliteStore vs memoryStore, and time to reopen a store.
// Rounds alternate the two stores (see stats.ts); each round's ratio is sqlite's rate over memory's.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWorkflow } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { timeScalems } from './core';
import { alternate, cpuMicros, fmtRatio, median, perSecond, spread } from './stats';

/**
 * Closing a store that `n` no-op tasks were just written to: how long it takes, and the longest the event loop was
 * held meanwhile (the last connection to close copies the write-ahead log into the file).
 */
async function closing(file: string, n: number): Promise<{ ms: number; heldMs: number }> {
  const store = sqliteStore(file);
  const close = store.close.bind(store);
  const figures = { ms: 0, heldMs: 0 };
  store.close = async () => {
    let last = performance.now();
    const tick = setInterval(() => {
      const now = performance.now();
      figures.heldMs = Math.max(figures.heldMs, now - last);
      last = now;
    }, 1);
    const t0 = performance.now();
    try {
      await close();
    } finally {
      figures.ms = performance.now() - t0;
      figures.heldMs = Math.max(figures.heldMs, performance.now() - last);
      clearInterval(tick);
    }
  };
  await timeScalems(n, store); // closes the workflow, and with it the store
  return figures;
}

export async function benchStores(n = 100_000, rounds = 5): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'scalems-bench-'));
  try {
    let file = '';
    await timeScalems(5_000); // warm up the JIT
    await timeScalems(5_000, sqliteStore(join(dir, 'warm.sqlite')));
    const memory: number[] = [];
    const sqlite: number[] = [];
    // CPU of this process per task (every thread: the engine's, the SQLite writer's, the collector's), which what
    // else runs on the machine changes far less than the time
    const memoryCpu: number[] = [];
    const sqliteCpu: number[] = [];
    const withCpu = async (cpu: number[], run: () => Promise<number>): Promise<number> => {
      const u0 = process.cpuUsage();
      const ms = await run();
      cpu.push(cpuMicros(u0) / n);
      return ms;
    };
    for (let round = 0; round < rounds; round++) {
      file = join(dir, `state-${round}.sqlite`);
      const [m, s] = await alternate(
        round,
        () => withCpu(memoryCpu, () => timeScalems(n)),
        () => withCpu(sqliteCpu, () => timeScalems(n, sqliteStore(file))),
      );
      memory.push(m);
      sqlite.push(s);
    }
    const t0 = performance.now();
    const wf = await openWorkflow({ store: sqliteStore(file), name: `bench-${n}` });
    const reopenMs = performance.now() - t0;
    const restored = wf.state.counts.succeeded;
    await wf.close();
    const closed = await closing(join(dir, 'closing.sqlite'), n);
    const ratios = memory.map((m, i) => m / sqlite[i]!);
    console.log(`stores: ${n.toLocaleString('en')} no-op tasks, ${rounds} rounds, median [min–max]`);
    console.log(
      `  sqliteStore ${spread(sqlite.map((ms) => perSecond(n, ms)))} tasks/s  |  ` +
        `memoryStore ${spread(memory.map((ms) => perSecond(n, ms)))} tasks/s  |  ` +
        `ratio ${spread(ratios, fmtRatio)} (goal >= 0.8)`,
    );
    const us = (x: number): string => x.toFixed(1);
    const cpuRatios = memoryCpu.map((m, i) => m / sqliteCpu[i]!);
    console.log(
      `  diagnosis, CPU of this process per task: sqliteStore ${spread(sqliteCpu, us)} µs  |  ` +
        `memoryStore ${spread(memoryCpu, us)} µs  |  ratio ${spread(cpuRatios, fmtRatio)}`,
    );
    console.log(`  reopen a ${restored.toLocaleString('en')}-task SQLite store: ${reopenMs.toFixed(0)} ms`);
    console.log(
      `  close a store just written with ${n.toLocaleString('en')} tasks: ${closed.ms.toFixed(0)} ms, the event loop ` +
        `held at most ${closed.heldMs.toFixed(0)} ms of it`,
    );
    return {
      memory: median(memory),
      sqlite: median(sqlite),
      ratio: median(ratios),
      cpuRatio: median(cpuRatios),
      reopenMs,
    };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) void benchStores();
