// An ensemble of MPI programs on ONE Slurm allocation, in the per-step mode: the executor scope obtains the
// allocation (the pilot, here 2 cores), and every task is a job step inside it (mode: 'steps'; by default the
// allocation's agents run them instead: see examples/slurm-ensemble.ts).
// The program (examples/mpi/hello.c) is compiled by a first task (mpicc, in a step), then each
// ensemble member runs it on 2 ranks: a step of 2 CPUs in which mpirun starts the ranks.
//
// Needs a Slurm cluster and Open MPI (here: bash scripts/start-services.sh).
// Run: npx tsx examples/slurm-mpi.ts [members]
import { join } from 'node:path';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { executable, executor, file, labelled, launch, memoryStore, openWorkflow, outputOf, submitOn } from 'scalems';
import { readText, slurm } from 'scalems/node';

const members = Number(process.argv[2] ?? 3);

async function main(): Promise<void> {
  const workflow = await openWorkflow({ name: 'slurm-mpi-example', store: memoryStore() });
  await using runtime = launch(workflow, slurm({ walltime: 600, mode: 'steps' }));
  // One allocation for this scope: `salloc --ntasks 2 --time 10`. It is released when the scope ends.
  await using ex = executor(runtime, { worker: { cores: 2 }, task: { walltime: 120 } });

  const compile = ex.submit(
    executable(['mpicc', '-O2', '-o', 'hello', 'hello.c'], {
      inputs: { 'hello.c': file(join(__dirname, 'mpi', 'hello.c')) },
      outputs: ['hello'],
      label: 'compile',
    }),
  );

  const results = await lastValueFrom(
    from(Array.from({ length: members }, (_, i) => i)).pipe(
      // Replicas of the same command: `key` makes each a task of its own.
      map((i) =>
        executable(['./hello'], {
          inputs: { hello: outputOf(compile, 'hello') },
          requirements: { ranks: 2 },
          key: `member-${i}`,
        }),
      ),
      labelled((_, i) => `member-${i}`),
      submitOn(ex, { ordered: true }),
      toArray(),
    ),
  );

  console.log(`launched in each job step: ${results[0]?.command.join(' ')}`);
  for (const [i, result] of results.entries()) {
    const lines = (await readText(result.stdout)).trim().split('\n');
    const ranks = lines.filter((l) => l.startsWith('rank ')).length;
    const sum = lines.find((l) => l.startsWith('sum '));
    console.log(`member ${i}: ${ranks} ranks, ${sum ?? 'no sum'}`);
  }
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
