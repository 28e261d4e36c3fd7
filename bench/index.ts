// npm run bench: every benchmark, each printing ratios against a baseline measured in the same run.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { benchCore } from './core';
import { benchStores } from './stores';

type Bench = () => Promise<unknown>;

/** Benchmarks of other capabilities, run when their module is present. */
const optional: Array<[file: string, exportName: string]> = [
  ['threads.ts', 'benchThreads'],
  ['processes.ts', 'benchProcesses'],
  ['slurm.ts', 'benchSlurm'],
];

async function main(): Promise<void> {
  await benchCore();
  await benchStores();
  for (const [file, name] of optional) {
    const path = join(__dirname, file);
    if (!existsSync(path)) continue;
    // require, not import(): the TypeScript loader here is tsx's CommonJS hook
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
