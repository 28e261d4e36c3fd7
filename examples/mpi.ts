// An MPI program as a task: compile examples/mpi/hello.c with mpicc (itself a task), then run it on
// 2 ranks: `ranks > 1` launches `mpirun -np <ranks>`. Needs Open MPI (Debian: openmpi-bin, libopenmpi-dev).
// Run: npx tsx examples/mpi.ts
import { join } from 'node:path';
import { executable, executor, file, launch, memoryStore, openWorkflow, outputOf } from 'scalems';
import { processes, readText } from 'scalems/node';

async function main(): Promise<void> {
  const workflow = await openWorkflow({ name: 'mpi-example', store: memoryStore() });
  await using runtime = launch(workflow, processes());
  await using ex = executor(runtime, { task: { walltime: 120 } });

  const compile = ex.submit(
    executable(['mpicc', '-O2', '-o', 'hello', 'hello.c'], {
      inputs: { 'hello.c': file(join(__dirname, 'mpi', 'hello.c')) },
      outputs: ['hello'],
    }),
  );
  // The compiled program is staged into the MPI task's working directory; mpirun runs ./hello there.
  const hello = ex.submit(
    executable(['./hello'], {
      inputs: { hello: outputOf(compile, 'hello') },
      requirements: { ranks: 2 },
    }),
  );
  const result = await hello;
  console.log(`launched: ${result.command.join(' ')}`);
  const lines = (await readText(result.stdout)).trim().split('\n').sort();
  for (const line of lines) console.log(line);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
