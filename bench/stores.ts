// Persisted throughput: the same no-op tasks with sqliteStore vs memoryStore, and time to reopen a store.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openWorkflow } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { best, rate, timeScalems } from './core';

export async function benchStores(n = 100_000): Promise<Record<string, number>> {
  const dir = mkdtempSync(join(tmpdir(), 'scalems-bench-'));
  try {
    const memory = await best(1, () => timeScalems(n));
    const file = join(dir, 'state.sqlite');
    const sqlite = await timeScalems(n, sqliteStore(file));
    const t0 = performance.now();
    const wf = await openWorkflow({ store: sqliteStore(file), name: `bench-${n}` });
    const reopenMs = performance.now() - t0;
    const restored = wf.state.counts.succeeded;
    await wf.close();
    console.log(`stores: ${n.toLocaleString('en')} no-op tasks`);
    console.log(
      `  sqliteStore ${rate(n, sqlite)}  |  memoryStore ${rate(n, memory)}  |  ratio ${(memory / sqlite).toFixed(3)}`,
    );
    console.log(`  reopen a ${restored.toLocaleString('en')}-task SQLite store: ${reopenMs.toFixed(0)} ms`);
    return { memory, sqlite, reopenMs };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) void benchStores();
