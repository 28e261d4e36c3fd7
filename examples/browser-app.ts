// A small app for the browser: an ensemble of members, each chained to an analysis on a second executor, with
// the core's operators, on inProcess(); its state in IndexedDB where there is one (idbStore), else in memory. It
// is what `npm run bench` bundles (bench/bundle.ts) to weigh the package in a browser app, against the same app
// bundled from the sources. It runs in Node too:
//
//   npx tsx examples/browser-app.ts
import { from, lastValueFrom, map, toArray } from 'rxjs';
import {
  call,
  executor,
  idbStore,
  inProcess,
  labelled,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  withRequirements,
  type Settled,
} from 'scalems';

/** A stand-in for a simulation: a short random walk seeded by the member index. */
const simulate = async (member: number): Promise<{ member: number; final: number }> => {
  let x = 0;
  let seed = (member + 1) * 2654435761;
  for (let i = 0; i < 1000; i++) {
    seed ^= seed << 13; // xorshift32
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    x += (seed >>> 0) / 2 ** 32 - 0.5;
  }
  return { member, final: x };
};

const analyse = async (t: { member: number; final: number }): Promise<number> => Math.abs(t.final);

export async function main(members = 6): Promise<string[]> {
  const store = typeof indexedDB === 'undefined' ? memoryStore() : idbStore('scalems-browser-app');
  const workflow = await openWorkflow({ name: 'browser-app', store });
  const runtime = launch(workflow, inProcess());
  const md = executor(runtime, { worker: { cores: 2 } });
  const an = executor(runtime, { worker: { cores: 1 } });
  const settled: Array<Settled<number>> = await lastValueFrom(
    from(Array.from({ length: members }, (_, i) => i)).pipe(
      map((i) => call(simulate, i)),
      withRequirements({ walltime: 60 }),
      labelled((s) => `member-${String(s.args[0])}`),
      submitOn(md, { ordered: true }),
      submitOn(an, analyse, { ordered: true, settle: true }),
      toArray(),
    ),
  );
  const lines = settled.map((s, i) =>
    s.status === 'fulfilled' ? `member ${i}: distance ${s.value.toFixed(3)}` : `member ${i}: failed`,
  );
  lines.push(`tasks by state: succeeded ${workflow.state.counts.succeeded}`);
  await runtime.shutdown();
  await workflow.close();
  return lines;
}

void main().then((lines) => {
  if (typeof document === 'undefined') console.log(lines.join('\n'));
  else document.body.textContent = lines.join('\n');
});
