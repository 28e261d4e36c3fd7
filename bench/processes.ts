// 200 `true` executables through processes() against a plain child_process.spawn loop with the same
// concurrency, run in a small process of its own (spawn-loop.ts). Each round's executor runs one program per core
// before the clock starts: its one-time start (its spawners, the sweep of a dead run's leftovers) is not a per-task
// cost, and the loop has none.
// Run: npx tsx bench/processes.ts
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
import { processes } from 'scalems/node';
import { spawnLoop } from './spawn-loop';
import { alternate, cpuMicros, fmtRatio, idleSince, machineTicks, median, perSecond, spread } from './stats';

export interface ProcessesBenchFigures {
  readonly tasks: number;
  readonly concurrency: number;
  readonly rounds: number;
  /**
   * executables per second through scalems (workflow + processes() backend: working directory, stdout/stderr files,
   * process group); median of the rounds
   */
  readonly scalemsPerSecond: number;
  /** plain `spawn('true')` per second, same concurrency, stdio ignored, from a small process; median of the rounds */
  readonly spawnPerSecond: number;
  /** median of the rounds' spawn loop time / scalems time (goal ≥ 0.9) */
  readonly ratio: number;
  /** the lowest and highest of the rounds' ratios */
  readonly ratioSpread: readonly [min: number, max: number];
}

/**
 * CPU time of this process (every thread; not the programs') per task of each timed side: what a side costs
 * whatever else runs on the machine.
 */
const cpuPerTask = {
  scalems: [] as number[],
  spawner: [] as number[],
  spawn: [] as number[],
  spawnWithFiles: [] as number[],
  /** processes() with its spawners forking with Node (SCALEMS_FORKER=node): driver, spawners */
  nodeFork: [] as number[],
  nodeForkSpawner: [] as number[],
};

/**
 * CPU time (µs) of this process's spawners (`scalems-spawner`, which make the working directories and fork the
 * programs) and of their forkers (`scalems-forker`, which start them where it was built): part of what scalems costs
 * per task, in other processes. 0 where there is no /proc.
 */
function spawnerMicros(): number {
  let names: string[] = [];
  try {
    names = readdirSync('/proc');
  } catch {
    return 0;
  }
  const all: Array<{ pid: number; ppid: number; ticks: number; cmdline: string }> = [];
  for (const name of names) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const stat = readFileSync(`/proc/${name}/stat`, 'latin1');
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const cmdline = readFileSync(`/proc/${name}/cmdline`, 'latin1');
      const ticks = Number(f[11]) + Number(f[12]); // utime, stime
      all.push({ pid: Number(name), ppid: Number(f[1]), ticks, cmdline });
    } catch {
      // gone
    }
  }
  const spawners = new Set(
    all.filter((p) => p.ppid === process.pid && p.cmdline.includes('scalems-spawner')).map((p) => p.pid),
  );
  const forkers = all.filter((p) => spawners.has(p.ppid) && p.cmdline.includes('scalems-forker'));
  const ticks = [...all.filter((p) => spawners.has(p.pid)), ...forkers].reduce((sum, p) => sum + p.ticks, 0);
  return (ticks * 1e6) / CLOCK_TICKS;
}

/** Makes the spawners fork with Node (src/runtime/executable/forker.ts). */
const FORKER_VARIABLE = 'SCALEMS_FORKER';

/** Whether the package's native forker was built (`npm ci` builds it with cc). */
function forkerBuilt(): boolean {
  return existsSync(join(dirname(require.resolve('scalems/package.json')), 'native', 'scalems-forker'));
}

/** USER_HZ: the unit of times in /proc/<pid>/stat (100 on Linux everywhere but a few exotic builds). */
const CLOCK_TICKS = 100;

/** The machine's idle percentage while each side ran, per round. */
const idle = { scalems: [] as number[], spawn: [] as number[] };

/**
 * Milliseconds for `n` executables through scalems (its root is kept until `removeRoots`); `nodeFork`: its spawners
 * fork with Node (`SCALEMS_FORKER=node`), as where the native forker was not built.
 */
export async function viaScalems(n: number, cores: number, nodeFork = false): Promise<number> {
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-'));
  if (nodeFork) process.env[FORKER_VARIABLE] = 'node';
  try {
    const wf = await openWorkflow({ store: memoryStore(), name: 'bench' });
    const rt = launch(wf, processes({ root, cores }));
    const ex = executor(rt);
    // untimed, as the spawn loop has nothing like it: what a processes() executor does once, before its first
    // programs (start its spawners, one per core up to 4, and end what a dead run of the workflow left running)
    await Promise.all(Array.from({ length: cores }, (_, i) => ex.submit(executable(['true'], { key: `warm-${i}` }))));
    const s0 = spawnerMicros();
    const u0 = process.cpuUsage();
    const m0 = machineTicks();
    const t0 = performance.now();
    await Promise.all(Array.from({ length: n }, (_, i) => ex.submit(executable(['true'], { key: String(i) }))));
    const ms = performance.now() - t0;
    if (!nodeFork) idle.scalems.push(idleSince(m0));
    (nodeFork ? cpuPerTask.nodeFork : cpuPerTask.scalems).push(cpuMicros(u0) / n);
    (nodeFork ? cpuPerTask.nodeForkSpawner : cpuPerTask.spawner).push((spawnerMicros() - s0) / n);
    await rt.shutdown();
    return ms;
  } finally {
    delete process.env[FORKER_VARIABLE];
    roots.push(root);
  }
}

/**
 * The rounds' roots, removed once all rounds are done: on a file system without a journal (ext4 here), making an
 * inode skips those deleted in the last minute or so, each a read of the inode table, so removing a round's 800
 * inodes right away made the next rounds pay for it.
 */
const roots: string[] = [];

/** Removes the roots of the rounds so far. */
export function removeRoots(): void {
  for (const root of roots.splice(0)) rmSync(root, { recursive: true, force: true });
}

/**
 * CPU (µs) of this process per inode made under the temporary directory: `n` directories, a file in each, as an
 * attempt's are. What the file system alone costs the spawner per task (4 inodes: the task's and the attempt's
 * directories, stdout, stderr; the spawn loop makes none). On an ext4 without a journal, as here, it grows with the
 * inodes deleted there in the last minutes (by anyone: another run of this benchmark, other programs' temporary
 * files), which making an inode skips one by one. What it makes is removed with the roots.
 */
function inodeMicros(n = 100): number {
  const dir = mkdtempSync(join(tmpdir(), 'scalems-bench-inodes-'));
  roots.push(dir);
  const u0 = process.cpuUsage();
  for (let i = 0; i < n; i++) {
    const d = join(dir, String(i));
    mkdirSync(d);
    closeSync(openSync(join(d, 'stdout'), 'w'));
  }
  return cpuMicros(u0) / (2 * n);
}

/** Milliseconds for `n` plain spawns (stdio ignored), from a process of their own (`spawn-loop.ts`). */
async function viaSpawn(n: number, concurrency: number): Promise<number> {
  const m0 = machineTicks();
  const { ms, cpuMicros } = await spawnLoop(n, concurrency);
  idle.spawn.push(idleSince(m0)); // the loop's process starts and ends within: a few ms of that more
  cpuPerTask.spawn.push(cpuMicros / n);
  return ms;
}

/**
 * Milliseconds for `n` spawns that each do what an attempt needs of the file system and the kernel, as the spawner
 * does, but nothing else: the task's and the attempt's directories, stdout and stderr files as the program's, a
 * session of its own. A diagnosis (no goal): the part of the gap to the plain loop that is the attempt's files.
 */
async function viaSpawnWithFiles(n: number, concurrency: number): Promise<number> {
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-files-'));
  roots.push(root);
  const { ms, cpuMicros } = await spawnLoop(n, concurrency, root);
  cpuPerTask.spawnWithFiles.push(cpuMicros / n);
  return ms;
}

/** Measures, prints (unless `quiet`) and returns the figures. */
export async function benchProcesses(
  options: { tasks?: number; concurrency?: number; rounds?: number; quiet?: boolean } = {},
): Promise<ProcessesBenchFigures> {
  const tasks = options.tasks ?? 200;
  const concurrency = options.concurrency ?? availableParallelism();
  const rounds = options.rounds ?? 5;
  // warm up both sides (the JIT, the page cache of `true`)
  await viaSpawn(20, concurrency);
  await viaScalems(20, concurrency);
  cpuPerTask.scalems.length = 0;
  cpuPerTask.spawner.length = 0;
  cpuPerTask.spawn.length = 0;
  cpuPerTask.nodeFork.length = 0;
  cpuPerTask.nodeForkSpawner.length = 0;
  idle.scalems.length = 0;
  idle.spawn.length = 0;
  await viaSpawnWithFiles(20, concurrency);
  cpuPerTask.spawnWithFiles.length = 0;
  const inodesBefore = inodeMicros();
  const spawned: number[] = [];
  const scalems: number[] = [];
  const ratios: number[] = [];
  const withFiles: number[] = [];
  const withFilesRatios: number[] = [];
  const nodeForked: number[] = [];
  const nodeForkRatios: number[] = [];
  const forker = forkerBuilt();
  // alternating rounds, each side first in every other one, so that the machine's noise hits both
  for (let r = 0; r < rounds; r++) {
    const [spawnMs, scalemsMs] = await alternate(
      r,
      () => viaSpawn(tasks, concurrency),
      () => viaScalems(tasks, concurrency),
    );
    spawned.push(perSecond(tasks, spawnMs));
    scalems.push(perSecond(tasks, scalemsMs));
    ratios.push(spawnMs / scalemsMs);
    const withFilesMs = await viaSpawnWithFiles(tasks, concurrency);
    withFiles.push(perSecond(tasks, withFilesMs));
    withFilesRatios.push(withFilesMs / scalemsMs);
    if (forker) {
      const nodeForkMs = await viaScalems(tasks, concurrency, true);
      nodeForked.push(perSecond(tasks, nodeForkMs));
      nodeForkRatios.push(spawnMs / nodeForkMs);
    }
  }
  const f: ProcessesBenchFigures = {
    tasks,
    concurrency,
    rounds,
    scalemsPerSecond: median(scalems),
    spawnPerSecond: median(spawned),
    ratio: median(ratios),
    ratioSpread: [Math.min(...ratios), Math.max(...ratios)],
  };
  const inodesAfter = inodeMicros();
  removeRoots();
  if (options.quiet !== true) {
    console.log(
      `processes(): ${f.tasks} x true, concurrency ${f.concurrency} (median [min–max] of ${rounds} alternating rounds)`,
    );
    console.log(`  scalems processes(): ${spread(scalems)} tasks/s`);
    console.log(`  plain spawn loop:    ${spread(spawned)} tasks/s`);
    console.log(`  ratio spawn loop time / scalems time ${spread(ratios, fmtRatio)} (goal ≥ 0.9)`);
    const ms = (us: number): string => (us / 1000).toFixed(2);
    console.log(
      forker
        ? `  the spawners started the programs through the native forker (native/scalems-forker); forking with Node ` +
            `instead (SCALEMS_FORKER=node, as where it was not built), timed after each round: ` +
            `${spread(nodeForked)} tasks/s, ratio ${spread(nodeForkRatios, fmtRatio)}, CPU per task ` +
            `${spread(cpuPerTask.nodeFork, ms)} ms (+ spawners ${spread(cpuPerTask.nodeForkSpawner, ms)} ms)`
        : '  the native forker is not built (node native/build.cjs): the spawners forked with Node',
    );
    console.log(
      `  diagnosis, CPU of this process (all threads) per task: scalems ${spread(cpuPerTask.scalems, ms)} ms ` +
        `(+ its spawner processes ${spread(cpuPerTask.spawner, ms)} ms), spawn loop (its own process) ` +
        `${spread(cpuPerTask.spawn, ms)} ms`,
    );
    console.log(
      `  diagnosis, a spawn loop that also makes each attempt's 2 directories and 2 files (detached, no other ` +
        `bookkeeping): ${spread(withFiles)} tasks/s, CPU ${spread(cpuPerTask.spawnWithFiles, ms)} ms per task; ` +
        `its time / scalems time ${spread(withFilesRatios, fmtRatio)}`,
    );
    const pct = (x: number): string => `${x.toFixed(0)}%`;
    console.log(
      `  diagnosis, the machine left idle (all ${availableParallelism()} cores): ` +
        `scalems ${spread(idle.scalems, pct)}, spawn loop ${spread(idle.spawn, pct)}`,
    );
    console.log(
      `  the file system under ${tmpdir()}: ${inodesBefore.toFixed(0)} µs (before the rounds), ` +
        `${inodesAfter.toFixed(0)} µs (after) of CPU per inode made; the spawner makes 4 per task`,
    );
  }
  return f;
}

if (require.main === module) {
  benchProcesses().catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
