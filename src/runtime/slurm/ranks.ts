/**
 * How the ranks of an MPI executable start (`ranks > 1`) and how their output becomes the task's: mpirun inside a
 * one-node step, mpirun on this host whose daemons are a step over several nodes, or srun's own PMIx launch; and
 * the per-rank output files, concatenated in rank order. Used by `plans.ts`.
 */
import { createReadStream, createWriteStream, existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { pipeline } from 'node:stream/promises';
import type { Workdir } from '../executable/workdir';
import { ranksPerNode, type Placement } from './placement';

/**
 * How the ranks of an executable start (`ranks > 1`):
 * - `'mpirun'`: mpirun inside a step of one task on one node, which holds ranks × coresPerRank CPUs;
 * - `'mpirun-spanning'`: mpirun on this host, its daemons one step over the nodes of the placement;
 * - `'srun'`: a step of `ranks` tasks, started by srun through PMIx.
 */
export type RankLauncher = 'mpirun' | 'mpirun-spanning' | 'srun' | 'none';

/**
 * mpirun's options inside a one-node step: its ranks all start where it runs. Without `--mca ras ^slurm` it reads
 * the job's node list from the environment, and where the node's name is not this host's name (on the test
 * cluster, where every node is this machine) it would start a daemon there through srun: a second step, waiting
 * for the CPUs its own step holds.
 */
export const IN_STEP_MPIRUN_ARGS: readonly string[] = ['--oversubscribe', '--mca', 'ras', '^slurm'];

/** The command line of an executable task inside its step. */
export function stepCommand(
  argv: readonly string[],
  ranks: number,
  ctx: { readonly launcher: 'mpirun' | 'srun'; readonly mpirunArgs: readonly string[] },
): { command: string[]; launcher: 'mpirun' | 'srun' | 'none' } {
  if (ranks <= 1) return { command: [...argv], launcher: 'none' };
  if (ctx.launcher === 'srun') return { command: [...argv], launcher: 'srun' };
  // One task of ranks × coresPerRank CPUs: mpirun sees one slot (the step's task), so it may oversubscribe it.
  return {
    command: ['mpirun', '-np', String(ranks), ...IN_STEP_MPIRUN_ARGS, ...ctx.mpirunArgs, ...argv],
    launcher: 'mpirun',
  };
}

/**
 * `mpirun` on this host for a task over several nodes: `--host <node>:<ranks per node>,...` and its daemons
 * started by srun (plm/slurm) as one step of the allocation, `--exact` with the task's CPUs on each node, named
 * so that it can be found and cancelled, `--verbose` so that its id and Slurm's notices reach mpirun's stderr
 * (`--leave-session-attached`: otherwise mpirun sends its srun's output to /dev/null). Each rank's output goes to
 * its own files (`--output-filename <dir>:nocopy`), so mpirun's stderr holds only mpirun's and Slurm's messages.
 */
export function spanningMpirun(
  argv: readonly string[],
  ranks: number,
  coresPerRank: number,
  placement: Placement,
  step: { jobId: string; name: string; outputDir: string; stepOptions: readonly string[] },
  mpirunArgs: readonly string[],
): string[] {
  const perNode = ranksPerNode(placement, ranks);
  const srunArgs = [
    `--jobid=${step.jobId}`,
    '--exact',
    '--verbose',
    `--job-name=${step.name}`,
    `--cpus-per-task=${perNode * coresPerRank}`,
    ...step.stepOptions,
  ];
  // mpirun splits plm_slurm_args at spaces
  const spaced = srunArgs.find((a) => /\s/.test(a));
  if (spaced !== undefined) throw new Error(`internal: srun argument "${spaced}" for mpirun has a space`);
  return [
    'mpirun',
    '-np',
    String(ranks),
    '--host',
    placement.nodes.map((n) => `${n}:${perNode}`).join(','),
    '--mca',
    'ras',
    '^slurm',
    '--mca',
    'plm',
    'slurm',
    '--mca',
    'plm_slurm_args',
    srunArgs.join(' '),
    '--leave-session-attached',
    '--output-filename',
    `${step.outputDir}:nocopy`,
    ...mpirunArgs,
    ...argv,
  ];
}

/** Files of the ranks, in rank order: `<base>.<rank>` (srun's %t) or mpirun's `<dir>/<job>/rank.<n>/<stream>`. */
export async function rankFiles(
  wd: Workdir,
  ranks: number,
  launcher: RankLauncher,
  stream: 'stdout' | 'stderr',
): Promise<string[]> {
  const base = stream === 'stdout' ? wd.stdout : wd.stderr;
  if (launcher === 'srun') return Array.from({ length: ranks }, (_, r) => `${base}.${r}`);
  const dir = join(wd.path, RANK_OUTPUT_DIR);
  const jobs = existsSync(dir) ? await readdir(dir) : [];
  return Array.from({ length: ranks }, (_, r) => jobs.map((j) => join(dir, j, `rank.${r}`, stream))).flat();
}

/** Where mpirun (spanning nodes) writes each rank's output, in the attempt's working directory. */
export const RANK_OUTPUT_DIR = '.ranks';

/**
 * Concatenates the ranks' output files into the task's stdout and stderr, rank after rank: nothing a rank wrote is
 * lost, as it would be with one file that each node's slurmstepd opens (and truncates) on its own.
 */
export async function mergeRanks(wd: Workdir, ranks: number, launcher: RankLauncher): Promise<void> {
  for (const stream of ['stdout', 'stderr'] as const) {
    const out = createWriteStream(stream === 'stdout' ? wd.stdout : wd.stderr);
    const done = new Promise<void>((resolve, reject) => {
      out.once('close', resolve);
      out.once('error', reject);
    });
    for (const file of await rankFiles(wd, ranks, launcher, stream)) {
      if (!existsSync(file)) continue;
      await pipeline(createReadStream(file), out, { end: false });
    }
    out.end();
    await done;
  }
}
