// npm run bench: every benchmark, each printing ratios against a baseline measured in the same run.
// It runs compiled (npm run bench builds the package and this folder): `scalems` is then the package
// as users get it, dist/ through its exports, not the TypeScript sources through a loader.
import { existsSync } from 'node:fs';
import { extname, join } from 'node:path';
import { benchCore } from './core';
import { benchStores } from './stores';
import { benchScale } from './scale';
import { benchBundle } from './bundle';

type Bench = () => Promise<unknown>;

/** Benchmarks of other capabilities, run when their module is present. */
const optional: Array<[file: string, exportName: string]> = [
  ['threads', 'benchThreads'],
  ['processes', 'benchProcesses'],
  ['slurm', 'benchSlurm'],
  ['slurm-agents', 'benchSlurmAgents'],
  ['bullmq', 'benchBullmq'],
  ['dashboard', 'benchDashboard'],
];

async function main(): Promise<void> {
  await benchCore();
  await benchStores();
  await benchScale();
  await benchBundle();
  for (const [file, name] of optional) {
    const path = join(__dirname, file + extname(__filename));
    if (!existsSync(path)) continue;
    // require, not import(): this is CommonJS (compiled, or through tsx's CommonJS hook)
    const mod = require(path) as Record<string, Bench | undefined>;
    const fn = mod[name];
    if (fn === undefined) continue;
    try {
      await fn();
    } catch (err) {
      console.log(`${name}: skipped (${err instanceof Error ? err.message : String(err)})`);
    }
  }
}

void main();
