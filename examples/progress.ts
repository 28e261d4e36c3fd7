// A small ensemble with a progress display, leaving its state in .scalems/progress-demo/ for
// `scalems status` and `scalems graph`. Run: npx tsx examples/progress.ts
import { executor, inProcess, launch, openWorkflow } from 'scalems';
import { progress } from 'scalems/node';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** One replica of a simulation; a few of them do not converge. */
async function simulate(replica: number): Promise<number> {
  await sleep(10 + ((replica * 37) % 40));
  if (replica % 13 === 7) throw new Error(`replica ${replica} did not converge\n(energy drift above tolerance)`);
  return replica * replica;
}

async function average(...values: number[]): Promise<number> {
  return values.reduce((a, b) => a + b, 0) / values.length;
}

async function main(): Promise<void> {
  const wf = await openWorkflow({ name: 'progress-demo' }); // on Node: .scalems/progress-demo/state.sqlite
  progress(wf); // a bar on a terminal, plain lines otherwise; stops when the workflow closes
  const rt = launch(wf, inProcess());
  const ex = executor(rt, { worker: { cores: 4 } });

  const replicas = Array.from({ length: 40 }, (_, i) => ex.submit(simulate, i));
  replicas.forEach((task, i) => {
    task.label ??= `replica-${i}`; // a resumed workflow keeps the labels it had
  });
  const analysis = ex.submit(average, replicas[0]!, replicas[1]!, replicas[2]!);
  analysis.label ??= 'analysis';

  const settled = await Promise.allSettled([...replicas, analysis]);
  await rt.shutdown();
  await wf.close();

  const failed = settled.filter((s) => s.status === 'rejected').length;
  console.log(
    `${settled.length - failed} tasks succeeded, ${failed} failed; analysis ` +
      `= ${await analysis.then(String, () => 'failed')}`,
  );
  console.log('Inspect the run with:  npx scalems status .scalems/progress-demo');
  console.log('                       npx scalems graph .scalems/progress-demo');
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
