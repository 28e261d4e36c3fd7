/**
 * The task events of a small ensemble, as they happen: `workflow.events$` (see README, "Seeing a workflow run").
 * Three members, one of which fails once and is retried, one that fails for good (and takes its analysis with it),
 * each member followed by an analysis. Run: `npx tsx examples/events.ts`.
 */
import { call, executor, inProcess, launch, memoryStore, openWorkflow } from 'scalems';

const simulate = async (member: number): Promise<number> => {
  await new Promise((r) => setTimeout(r, 5 * member));
  if (member === 2 && ++tries.count === 1) throw new Error(`member ${member}: the integrator diverged`);
  if (member === 3) throw new RangeError(`member ${member}: temperature out of range`);
  return member * 10;
};
const analyse = async (x: number): Promise<number> => x + 1;
const tries = { count: 0 };

async function main(): Promise<void> {
  const wf = await openWorkflow({ name: 'events-demo', store: memoryStore() });
  const t0 = wf.now();
  wf.events$.subscribe((e) => {
    const who = `${(e.label ?? e.id).padEnd(10)} ${e.name.padEnd(8)}`;
    const extra =
      e.type === 'failed' || e.type === 'retrying' || e.type === 'cancelled'
        ? `  ${e.error.name}: ${e.error.message}`
        : e.type === 'succeeded'
          ? `  in ${e.duration} ms`
          : '';
    console.log(`+${String(e.time - t0).padStart(4)} ms  ${e.type.padEnd(9)} ${who} attempt ${e.attempt}${extra}`);
  });
  const rt = launch(wf, inProcess());
  const md = executor(rt, { task: { retries: 1 } });
  const members = [1, 2, 3].map((m) => md.submit({ ...call(simulate, m), label: `sim-${m}` }));
  const analyses = members.map((m, i) => md.submit({ ...call(analyse, m), label: `ana-${i + 1}` }));
  const outcomes = await Promise.allSettled(analyses);
  console.log(outcomes.map((o) => (o.status === 'fulfilled' ? String(o.value) : 'failed')).join(', '));
  await rt.shutdown();
  await wf.close();
}

void main();
