// A mixed ensemble on ONE Slurm allocation of two nodes, run by the allocation's agents (one per node, started
// once): members are programs, each scored by a function task on an agent's threads, and one MPI program whose
// 4 ranks need both nodes runs as a job step across them. No job step per member.
//
// Needs a Slurm cluster of 2 nodes with 2 CPUs each, and Open MPI (here: bash scripts/start-services.sh).
// Run: npx tsx examples/slurm-ensemble.ts [members]
import { join } from 'node:path';
import { executable, executor, file, launch, memoryStore, openWorkflow, outputOf } from 'scalems';
import { readText, slurm } from 'scalems/node';
import { score } from './tasks/slurm-tasks';

const members = Number(process.argv[2] ?? 8);

async function main(): Promise<void> {
  const workflow = await openWorkflow({ name: 'slurm-ensemble', store: memoryStore() });
  await using runtime = launch(
    workflow,
    slurm({ nodes: 2, walltime: 600, modules: [join(__dirname, 'tasks', 'slurm-tasks.ts')] }),
  );
  // One allocation of 4 cores on 2 nodes for this scope; an agent on each node runs the tasks placed there.
  await using ex = executor(runtime, { worker: { cores: 4, nodes: 2 }, task: { walltime: 120 } });

  const runs = Array.from({ length: members }, (_, i) =>
    ex.submit(executable(['sh', '-c', `echo ${i + 1} $SLURMD_NODENAME`], { key: `member-${i}`, label: `member-${i}` })),
  );
  const scores = runs.map((run) => ex.submit(score, run));

  const compile = ex.submit(
    executable(['mpicc', '-O2', '-o', 'hello', 'hello.c'], {
      inputs: { 'hello.c': file(join(__dirname, 'mpi', 'hello.c')) },
      outputs: ['hello'],
      label: 'compile',
    }),
  );
  const wide = ex.submit(
    executable(['./hello'], {
      inputs: { hello: outputOf(compile, 'hello') },
      requirements: { ranks: 4 },
      label: 'mpi-4',
    }),
  );

  const nodes = new Map<string, number>();
  for (const [i, run] of runs.entries()) {
    const [, node] = (await readText((await run).stdout)).trim().split(' ');
    nodes.set(node!, (nodes.get(node!) ?? 0) + 1);
    const s = await scores[i]!;
    if (s.value !== (i + 1) ** 2) throw new Error(`member ${i}: scored ${s.value}`);
  }
  console.log(
    `members by node: ${[...nodes]
      .sort()
      .map(([n, c]) => `${n} ${c}`)
      .join(', ')}`,
  );
  console.log(`scores: ${(await Promise.all(scores)).map((s) => s.value).join(' ')}`);
  const out = (await readText((await wide).stdout)).trim().split('\n');
  console.log(
    `mpi-4: ${out.filter((l) => l.startsWith('rank ')).length} ranks, ${out.find((l) => l.startsWith('sum '))}`,
  );
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
