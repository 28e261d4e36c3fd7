// slurm() on its agents, on the test cluster (bash scripts/start-services.sh: 2 nodes of 2 CPUs on this machine):
//   1. no-op function tasks through the agents (both nodes), against the same through one job step per task
//      (mode: 'steps') and a plain loop of `srun --exact -n1 true` in the same allocation, 4 at a time;
//   2. `true` executables through the agent of one node, against a plain spawn loop here with the same concurrency:
//      on an agent started without modules (programs only: its cores held in its spawners), and, after each round,
//      on one started with modules (its cores shared with functions in its gate), against that round's loop.
// Each figure is the median of the rounds with their spread; the rounds alternate baseline and scalems.
// Run: npm run bench (or, built: node build/bench/bench/slurm-agents.js [functions] [programs] [rounds])
import { execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { executable, executor, launch, memoryStore, openWorkflow, type Executor, type Runtime } from 'scalems';
import { slurm } from 'scalems/node';
import { alternate, fmtRatio, idleSince, lanes, machineTicks, median, perSecond, spread } from './stats';
import { spawnLoop } from './spawn-loop';
import { inc } from './threads-tasks';

const MODULE = join(__dirname, `threads-tasks${extname(__filename)}`);

/**
 * An executor of `cores` cores on `nodes` nodes, its allocation granted and its agents up; with `modules: false`, its
 * agents run programs only (and hold their cores in their spawners).
 */
async function open(
  mode: 'agents' | 'steps',
  cores: number,
  nodes: number,
  modules = true,
): Promise<{ ex: Executor; rt: Runtime; jobId: string; root: string }> {
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-agents-'));
  const wf = await openWorkflow({ store: memoryStore(), name: `bench-${mode}` });
  const rt = launch(wf, slurm({ root, modules: modules ? [MODULE] : [], mode, nodes, address: '127.0.0.1' }));
  const ex = executor(rt, { worker: { cores, nodes } });
  await (modules ? ex.submit(inc, -1) : ex.submit(executable(['true'], { key: 'warm' }))); // granted, started
  const jobId = execFileSync('squeue', ['-h', '-n', `scalems-${ex.id}-${process.pid}`, '-o', '%i'], {
    encoding: 'utf8',
  }).trim();
  return { ex, rt, jobId, root };
}

const run = (cmd: string, args: string[]) => (): Promise<void> =>
  new Promise((resolve, reject) => {
    const p = spawn(cmd, args, { stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${cmd} exited with ${String(code)}`))));
  });

let batch = 0;
async function timed(ex: Executor, n: number, submit: (i: number, b: number) => PromiseLike<unknown>): Promise<number> {
  const b = ++batch;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => submit(i, b)));
  return performance.now() - t0;
}

export interface SlurmAgentsFigures {
  readonly agentsPerSecond: number;
  readonly stepsPerSecond: number;
  readonly srunPerSecond: number;
  /** agents / plain srun loop: the goal is >= 50 */
  readonly agentsOverSrun: number;
  /** `true` programs per second on one node's agent, started without modules (programs only) */
  readonly programsPerSecond: number;
  readonly spawnPerSecond: number;
  /** spawn loop time / agents time for `true` programs on one node's agent without modules: the goal is >= 0.8 */
  readonly programsOverSpawn: number;
  /** the same on an agent started with modules, whose cores its functions share (in the agent's gate) */
  readonly programsWithModulesOverSpawn: number;
}

export async function benchSlurmAgents(functions = 2000, programs = 500, rounds = 5): Promise<SlurmAgentsFigures> {
  const cores = 4;
  const agents: number[] = [];
  const srun: number[] = [];
  const steps: number[] = [];
  const overSrun: number[] = [];
  // 1. functions over both nodes
  const a = await open('agents', cores, 2);
  try {
    const srunTrue = run('srun', ['--jobid', a.jobId, '--exact', '-n1', 'true']);
    for (let r = 0; r < rounds; r++) {
      const srunN = 40;
      const [srunMs, agentsMs] = await alternate(
        r,
        () => lanes(srunN, cores, srunTrue),
        () => timed(a.ex, functions, (i, b) => a.ex.submit(inc, b * 1_000_000 + i)),
      );
      srun.push(perSecond(srunN, srunMs));
      agents.push(perSecond(functions, agentsMs));
      overSrun.push(perSecond(functions, agentsMs) / perSecond(srunN, srunMs));
    }
  } finally {
    await a.rt.shutdown();
    rmSync(a.root, { recursive: true, force: true });
  }
  const s = await open('steps', cores, 2);
  try {
    for (let r = 0; r < Math.min(rounds, 3); r++) {
      const n = 16; // each step starts Node with the task's module: about 0.5 s of CPU
      steps.push(perSecond(n, await timed(s.ex, n, (i, b) => s.ex.submit(inc, -(b * 1_000_000 + i)))));
    }
  } finally {
    await s.rt.shutdown();
    rmSync(s.root, { recursive: true, force: true });
  }
  // 2. programs on one node: on an agent that runs programs only (no modules), and on one that runs functions too
  const progs: number[] = [];
  const progsWithModules: number[] = [];
  const overSpawnWithModules: number[] = [];
  const spawned: number[] = [];
  const overSpawn: number[] = [];
  // the machine left idle while each side ran: one that leaves cores idle waits on something, one that does not is
  // limited by the CPU it spends per program
  const idle = { agents: [] as number[], spawn: [] as number[], withModules: [] as number[] };
  const idleOf = async (into: number[], side: () => Promise<number>): Promise<number> => {
    const m0 = machineTicks();
    const ms = await side();
    into.push(idleSince(m0));
    return ms;
  };
  const trues = (ex: Executor) => (): Promise<number> =>
    timed(ex, programs, (i, b) => ex.submit(executable(['true'], { key: `t${b}-${i}` })));
  const p = await open('agents', 2, 1, false);
  const q = await open('agents', 2, 1);
  try {
    for (let r = 0; r < rounds; r++) {
      const [spawnMs, agentsMs] = await alternate(
        r,
        () => idleOf(idle.spawn, async () => (await spawnLoop(programs, 2)).ms),
        () => idleOf(idle.agents, trues(p.ex)),
      );
      spawned.push(perSecond(programs, spawnMs));
      progs.push(perSecond(programs, agentsMs));
      overSpawn.push(spawnMs / agentsMs);
      const withModulesMs = await idleOf(idle.withModules, trues(q.ex));
      progsWithModules.push(perSecond(programs, withModulesMs));
      overSpawnWithModules.push(spawnMs / withModulesMs);
    }
  } finally {
    await Promise.all([p.rt.shutdown(), q.rt.shutdown()]);
    for (const root of [p.root, q.root]) rmSync(root, { recursive: true, force: true });
  }
  const figures: SlurmAgentsFigures = {
    agentsPerSecond: median(agents),
    stepsPerSecond: median(steps),
    srunPerSecond: median(srun),
    agentsOverSrun: median(overSrun),
    programsPerSecond: median(progs),
    spawnPerSecond: median(spawned),
    programsOverSpawn: median(overSpawn),
    programsWithModulesOverSpawn: median(overSpawnWithModules),
  };
  console.log(`slurm() agents (${cpus().length} cores here; 2 nodes of 2 CPUs; median [min–max] of ${rounds} rounds):`);
  console.log(`  ${functions} no-op functions on the agents: ${spread(agents)} tasks/s`);
  console.log(`  the same, one job step each (mode 'steps'): ${spread(steps, (x) => x.toFixed(1))} tasks/s`);
  console.log(`  plain srun --exact -n1 true loop, ${cores} at a time: ${spread(srun, (x) => x.toFixed(1))} steps/s`);
  console.log(`  agents / srun loop ${spread(overSrun, (x) => x.toFixed(0))} (goal ≥ 50)`);
  console.log(
    `  ${programs} x true on one node's agent started without modules (programs only): ${spread(progs)} tasks/s; ` +
      `plain spawn loop ${spread(spawned)}`,
  );
  console.log(`  ratio spawn loop time / agents time ${spread(overSpawn, fmtRatio)} (goal ≥ 0.8)`);
  console.log(
    `  the same on an agent with modules (its cores shared with functions, in its gate): ` +
      `${spread(progsWithModules)} tasks/s, ratio ${spread(overSpawnWithModules, fmtRatio)}`,
  );
  const pct = (x: number): string => `${x.toFixed(0)}%`;
  console.log(
    `  diagnosis, the machine left idle (all ${cpus().length} cores): agents without modules ` +
      `${spread(idle.agents, pct)}, with modules ${spread(idle.withModules, pct)}, ` +
      `spawn loop ${spread(idle.spawn, pct)}`,
  );
  return figures;
}

if (require.main === module) {
  const [f, p, r] = process.argv.slice(2).map(Number);
  benchSlurmAgents(f || undefined, p || undefined, r || undefined).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
