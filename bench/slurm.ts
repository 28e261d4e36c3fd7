// 32 short executables (`true`) through slurm(), as job steps of one allocation, against a plain loop of
// `srun --jobid <the same allocation> --exact -n1 true` with the same concurrency (the allocation's
// cores), measured in the same run. Needs the Slurm cluster (bash scripts/start-services.sh).
// Run: npx tsx bench/slurm.ts [tasks]
import { spawn } from 'node:child_process';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { executable, executor, launch, memoryStore, openWorkflow, type Executor } from 'scalems';
import { slurm } from 'scalems/node';

export interface SlurmBenchFigures {
  readonly tasks: number;
  readonly concurrency: number;
  /** tasks per second through slurm() (best of the rounds) */
  readonly scalemsPerSecond: number;
  /** `srun --exact -n1 true` per second in the same allocation (best of the rounds) */
  readonly srunPerSecond: number;
  /** scalemsPerSecond / srunPerSecond: the goal is >= 0.9 */
  readonly ratio: number;
}

function srunTrue(jobId: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const p = spawn('srun', ['--jobid', jobId, '--exact', '-n1', 'true'], { stdio: 'ignore' });
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`srun exited with ${String(code)}`))));
  });
}

/** Milliseconds for `n` plain srun steps, `concurrency` at a time. */
async function timeSrun(jobId: string, n: number, concurrency: number): Promise<number> {
  const t0 = performance.now();
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < n) {
      next++;
      await srunTrue(jobId);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
  return performance.now() - t0;
}

/** Milliseconds for `n` `true` tasks through the executor (all submitted at once; it runs `cores` at a time). */
async function timeScalems(ex: Executor, n: number, round: number): Promise<number> {
  const t0 = performance.now();
  await Promise.all(Array.from({ length: n }, (_, i) => ex.submit(executable(['true'], { key: `r${round}-${i}` }))));
  return performance.now() - t0;
}

export async function benchSlurm(tasks = 32, rounds = 5): Promise<SlurmBenchFigures> {
  const concurrency = 2;
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-slurm-'));
  const wf = await openWorkflow({ store: memoryStore(), name: 'bench-slurm' });
  const rt = launch(wf, slurm({ root }));
  try {
    const ex = executor(rt, { worker: { cores: concurrency } });
    await ex.submit(executable(['true'], { key: 'warm-up' })); // the allocation is granted
    const jobId = execFileSync('squeue', ['-h', '-n', `scalems-${ex.id}-${process.pid}`, '-o', '%i'], {
      encoding: 'utf8',
    }).trim();
    await timeSrun(jobId, 4, concurrency);
    let scalemsMs = Infinity;
    let srunMs = Infinity;
    for (let r = 0; r < rounds; r++) {
      srunMs = Math.min(srunMs, await timeSrun(jobId, tasks, concurrency));
      scalemsMs = Math.min(scalemsMs, await timeScalems(ex, tasks, r));
    }
    const figures: SlurmBenchFigures = {
      tasks,
      concurrency,
      scalemsPerSecond: (tasks / scalemsMs) * 1000,
      srunPerSecond: (tasks / srunMs) * 1000,
      ratio: srunMs / scalemsMs,
    };
    console.log(
      `slurm: ${tasks} x true, ${concurrency} at a time in one allocation (${jobId}): ` +
        `slurm() ${figures.scalemsPerSecond.toFixed(1)} tasks/s, ` +
        `plain srun --exact ${figures.srunPerSecond.toFixed(1)} steps/s, ratio ${figures.ratio.toFixed(2)} (goal ` +
        `>= 0.9)`,
    );
    return figures;
  } finally {
    await rt.shutdown();
    rmSync(root, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchSlurm(Number(process.argv[2] ?? 32)).catch((err: unknown) => {
    console.error(err);
    process.exit(1);
  });
}
