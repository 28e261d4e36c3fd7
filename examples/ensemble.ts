// The quick-start job: an ensemble of simulated members, each chained to an analysis step on a second
// executor with other requirements. State is kept in .scalems/ensemble/state.sqlite: run it again and
// the finished members are served from the store instead of running again.
//
//   npx tsx examples/ensemble.ts [members]
import { from, lastValueFrom, map, toArray } from 'rxjs';
import {
  call,
  currentTask,
  defineTask,
  executor,
  inProcess,
  labelled,
  launch,
  openWorkflow,
  submitOn,
  withRequirements,
} from 'scalems';

/** A stand-in for a simulation: a noisy random walk whose seed is the member index. */
export const simulate = defineTask('ensemble.simulate', async (member: number, steps: number) => {
  let x = 0;
  let seed = (member + 1) * 2654435761;
  for (let i = 0; i < steps; i++) {
    seed ^= seed << 13; // xorshift32
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    x += (seed >>> 0) / 2 ** 32 - 0.5;
    if (i % 10_000 === 0) {
      currentTask().signal.throwIfAborted();
      await new Promise((r) => setImmediate(r));
    }
  }
  return { member, final: x };
});

/** Analysis of one member's trajectory. */
export const analyse = defineTask('ensemble.analyse', async (trajectory: { member: number; final: number }) => ({
  member: trajectory.member,
  distance: Math.abs(trajectory.final),
}));

async function main(): Promise<void> {
  const members = Number(process.argv[2] ?? 8);
  const workflow = await openWorkflow({ name: 'ensemble' });
  const runtime = launch(workflow, inProcess());
  const before = workflow.state.counts.succeeded;
  {
    await using md = executor(runtime, { worker: { cores: 2 }, task: { coresPerRank: 1 } });
    await using an = executor(runtime, { worker: { cores: 1 }, task: { memoryMB: 512 } });

    const results = await lastValueFrom(
      from(Array.from({ length: members }, (_, i) => i)).pipe(
        map((m) => call(simulate, m, 200_000)),
        withRequirements({ walltime: 60 }),
        labelled((spec) => `member-${String(spec.args[0])}`),
        submitOn(md, { settle: true }),
        submitOn(an, analyse, { ordered: true }),
        toArray(),
      ),
    );
    for (const r of results) console.log(`member ${r.member}: distance ${r.distance.toFixed(3)}`);
    const mean = results.reduce((s, r) => s + r.distance, 0) / results.length;
    console.log(`mean distance over ${results.length} members: ${mean.toFixed(3)}`);
  }
  await runtime.shutdown();
  const counts = workflow.state.counts;
  console.log(
    `tasks by state: ${Object.entries(counts)
      .filter(([, n]) => n > 0)
      .map(([s, n]) => `${s} ${n}`)
      .join(', ')}`,
  );
  console.log(`finished by earlier runs, served from the store: ${before}`);
  console.log(`state kept in ${workflow.store.description}`);
  await workflow.close();
}

main().catch((err: unknown) => {
  console.error(err);
  process.exitCode = 1;
});
