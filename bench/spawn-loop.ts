// The baseline of processes() and of the Slurm agents' programs: a plain child_process.spawn loop, run in a fresh
// Node process of its own. Run from the benchmark's process, whose heap the benchmarks before it have grown (a
// million tasks), each fork copied that process's page tables: in `npm run bench` at 1ca761a the loop ran at 361
// programs a second for 1.72 ms of CPU each, against 850–1200 for 0.5–0.8 ms in a process of its own, and flattered
// scalems, whose spawners fork from small processes of their own. A small process is what a plain loop is.
import { execFile } from 'node:child_process';

/** What the loop's process runs (`node -e`; argv: programs, concurrency, root or ''): it prints `{ ms, cpu }`. */
const LOOP = `'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const path = require('path');
const [n, concurrency] = process.argv.slice(1, 3).map(Number);
const root = process.argv[3];
let made = 0;
// with a root: what an attempt needs of the file system (the task's and the attempt's directories, stdout and stderr
// as the program's files, a session of its own), and nothing else
const start = () => {
  if (root === '') return spawn('true', [], { stdio: 'ignore' });
  const task = path.join(root, String(made++));
  fs.mkdirSync(task);
  const cwd = path.join(task, 'attempt-1');
  fs.mkdirSync(cwd);
  const out = fs.openSync(path.join(cwd, 'stdout'), 'w');
  const err = fs.openSync(path.join(cwd, 'stderr'), 'w');
  try {
    return spawn('true', [], { cwd, stdio: ['ignore', out, err], detached: true });
  } finally {
    fs.closeSync(out);
    fs.closeSync(err);
  }
};
const one = () => new Promise((resolve, reject) => {
  const child = start();
  child.once('error', reject);
  child.once('exit', () => resolve());
});
const run = async (count) => {
  let next = 0;
  await Promise.all(Array.from({ length: concurrency }, async () => { while (next < count) { next++; await one(); } }));
};
(async () => {
  await run(2 * concurrency); // untimed: the page cache of \`true\`, the JIT
  const u0 = process.cpuUsage();
  const t0 = performance.now();
  await run(n);
  const ms = performance.now() - t0;
  const u = process.cpuUsage(u0);
  process.stdout.write(JSON.stringify({ ms, cpu: u.user + u.system }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

/**
 * Runs `n` `true` programs, `concurrency` at a time, from a fresh Node process (with `root`: each with the files an
 * attempt has, made under it). Returns the milliseconds they took and the loop's CPU (µs, its process's only).
 */
export function spawnLoop(n: number, concurrency: number, root = ''): Promise<{ ms: number; cpuMicros: number }> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, ['-e', LOOP, String(n), String(concurrency), root], (err, stdout, stderr) => {
      if (err !== null) return reject(new Error(`the spawn loop failed: ${err.message}\n${stderr}`));
      const { ms, cpu } = JSON.parse(stdout) as { ms: number; cpu: number };
      resolve({ ms, cpuMicros: cpu });
    });
  });
}
