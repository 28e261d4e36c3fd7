// Command-line programs as tasks: a two-step pipeline (a file passed from one program to the next),
// and an ensemble mapped through an RxJS pipeline. Run: npx tsx examples/executables.ts
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { executable, executor, launch, memoryStore, openWorkflow, outputOf, submitOn } from 'scalems';
import { processes, readText } from 'scalems/node';

async function main(): Promise<void> {
  const workflow = await openWorkflow({ name: 'executables-example', store: memoryStore() });
  // Working directories go to ./.scalems/executables-example/tasks/<task id>/attempt-<n>/
  await using runtime = launch(workflow, processes());
  await using ex = executor(runtime, { task: { walltime: 60 } });

  // 1. A pipeline: `write` leaves words.txt in its working directory; `count` gets a copy of it as
  //    input.txt. outputOf(...) records the edge: `count` starts when `write` has succeeded.
  const write = ex.submit(executable(['bash', '-c', 'echo the quick fox > words.txt'], { outputs: ['words.txt'] }));
  const count = ex.submit(
    executable(['wc', '-w', 'input.txt'], { inputs: { 'input.txt': outputOf(write, 'words.txt') } }),
  );
  const counted = await count;
  console.log(
    `pipeline: ${(await readText(counted.stdout)).split(' ')[0]} words (stdout kept in ${counted.stdout.$file})`,
  );

  // 2. An ensemble: one task per value, at most as many at once as the executor has cores.
  const squares = await lastValueFrom(
    from([1, 2, 3, 4]).pipe(
      map((n) => executable(['bash', '-c', 'echo $(( $1 * $1 ))', 'square', String(n)])),
      submitOn(ex, { ordered: true }),
      toArray(),
    ),
  );
  const values = await Promise.all(squares.map(async (r) => Number(await readText(r.stdout))));
  console.log(`ensemble: ${values.join(',')}`);
  console.log(workflow.state.counts);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
