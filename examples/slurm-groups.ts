// An ensemble on ONE executor of two worker groups, as the seed's worker_requirements=[...]: "members" and
// "analysis", each its own Slurm allocation (requested side by side) with its own agent. Each member is a program of
// 2 ranks (mpirun on its node) and goes to the only group it fits or is pinned to; each member's score is a function
// task pinned to "analysis", so scoring never takes a core from the members.
//
// Needs a Slurm cluster of 2 nodes with 2 CPUs each, and Open MPI (here: bash scripts/start-services.sh).
// Run: npx tsx examples/slurm-groups.ts [members]
import { join } from 'node:path';
import { call, executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
import { readText, slurm } from 'scalems/node';
import { score } from './tasks/slurm-tasks';

const members = Number(process.argv[2] ?? 6);

async function main(): Promise<void> {
  const workflow = await openWorkflow({ name: 'slurm-groups', store: memoryStore() });
  await using runtime = launch(
    workflow,
    slurm({ walltime: 600, modules: [join(__dirname, 'tasks', 'slurm-tasks.ts')] }),
  );
  // two allocations of one node each; on a real cluster, say { name: 'members', nodes: 2, cores: 8 }
  await using ex = executor(runtime, {
    worker: [
      { name: 'members', nodes: 1, cores: 2 },
      { name: 'analysis', nodes: 1, cores: 2 },
    ],
    task: { walltime: 120 },
  });
  console.log(`groups: ${ex.groups.map((g) => `${g.name} (${g.capacity.cores} cores)`).join(', ')}`);

  const runs = Array.from({ length: members }, (_, i) =>
    ex.submit(
      // rank 0 prints the member's number and its node; mpirun starts both ranks on the member's node
      executable(['sh', '-c', `[ "$OMPI_COMM_WORLD_RANK" = 0 ] && echo ${i + 1} $SLURMD_NODENAME || true`], {
        key: `member-${i}`,
        label: `member-${i}`,
        requirements: { ranks: 2, group: 'members' },
      }),
    ),
  );
  const scores = runs.map((run, i) =>
    ex.submit({ ...call(score, run), label: `score-${i}`, requirements: { group: 'analysis' } }),
  );

  const where = (label: string): string => {
    const rec = [...workflow.state.tasks.values()].find((r) => r.label === label);
    return rec?.group ?? '?';
  };
  const memberNodes = new Set<string>();
  const scoreNodes = new Set<string>();
  for (const [i, run] of runs.entries()) {
    const [, node] = (await readText((await run).stdout)).trim().split(' ');
    memberNodes.add(`${node!} (group ${where(`member-${i}`)})`);
    const s = await scores[i]!;
    if (s.value !== (i + 1) ** 2) throw new Error(`member ${i}: scored ${s.value}`);
    scoreNodes.add(`${s.node} (group ${where(`score-${i}`)})`);
  }
  console.log(`members ran on: ${[...memberNodes].join(', ')}`);
  console.log(`scores ran on: ${[...scoreNodes].join(', ')}`);
  console.log(`scores: ${(await Promise.all(scores)).map((s) => s.value).join(' ')}`);
  console.log(
    `tasks by state: ${Object.entries(workflow.state.counts)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s} ${n}`)
      .join(', ')}`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
