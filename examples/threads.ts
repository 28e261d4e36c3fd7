// An ensemble of CPU-bound members on worker threads, then one task that runs on 4 threads at once
// and combines partial results with allreduce. The task functions live in a module of their own
// (examples/tasks/thread-tasks.ts), which every worker thread loads; TypeScript modules just work.
//
//   npx tsx examples/threads.ts [members]
import { join } from 'node:path';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import { call, executor, labelled, launch, memoryStore, openWorkflow, submitOn, withRequirements } from 'scalems';
import { threads } from 'scalems/node';
import { simulate, sumOfSquares } from './tasks/thread-tasks';

async function main(): Promise<void> {
  const members = Number(process.argv[2] ?? 8);
  const workflow = await openWorkflow({ store: memoryStore(), name: 'threads-example' });
  await using runtime = launch(
    workflow,
    threads({ modules: [join(__dirname, 'tasks', 'thread-tasks.ts')], maxThreads: 4 }),
  );
  const ex = executor(runtime);
  console.log(`executor: ${ex.capacity.cores} cores (one worker thread each)`);

  const ensemble = await lastValueFrom(
    from(Array.from({ length: members }, (_, i) => i)).pipe(
      map((member) => call(simulate, member, 2_000_000)),
      labelled((spec) => `member-${String(spec.args[0])}`),
      submitOn(ex, { ordered: true }),
      toArray(),
    ),
  );
  for (const r of ensemble) console.log(`member ${r.member}: final ${r.final.toFixed(3)} (thread ${r.thread})`);
  console.log(`ensemble: ${ensemble.length} members on ${new Set(ensemble.map((r) => r.thread)).size} threads`);

  const n = 100_000; // the sum stays below 2^53, so the float arithmetic is exact
  const [reduction] = await lastValueFrom(
    from([call(sumOfSquares, n)]).pipe(withRequirements({ ranks: 4 }), submitOn(ex), toArray()),
  );
  const expected = (n * (n + 1) * (2 * n + 1)) / 6;
  const verdict = reduction!.total === expected ? 'ok' : 'MISMATCH';
  console.log(
    `sum of squares 1..${n} on ${reduction!.ranks} ranks: ${reduction!.total} (expected ${expected}: ${verdict})`,
  );
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
