// Resume and retry, as the identity rules make them safe: members whose input deck changed run again,
// the others are served from the store; a member that fails is run again in the same process by
// RxJS retry() around the pipeline (only the failed one: the others are served).
//
//   npx tsx examples/retry.ts <deck temperature>
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { lastValueFrom, from, map, retry, toArray } from 'rxjs';
import { executable, executor, launch, openWorkflow, submitOn, type ExecutableResult } from 'scalems';
import { processes } from 'scalems/node';

async function main(): Promise<void> {
  const temperature = process.argv[2] ?? '300';
  // member 0's deck takes the temperature given; the others' decks never change
  mkdirSync('decks', { recursive: true });
  for (let i = 0; i < 3; i++)
    writeFileSync(`decks/member-${i}.txt`, `temperature ${i === 0 ? temperature : 300 + i}\n`);
  // a program that fails the first time it sees member 2's deck (it leaves a mark)
  const flaky = `if [ "$(cat deck)" = "temperature 302" ] && [ ! -e ../../../../../flaked ]; then
    touch ../../../../../flaked; exit 3; fi; echo "$(cat deck) -> done"`;

  const wf = await openWorkflow({ name: 'retry' });
  const rt = launch(wf, processes());
  const before = wf.state.counts.succeeded;
  await using md = executor(rt, { worker: { cores: 2 } });
  const outputs = await lastValueFrom(
    from([0, 1, 2]).pipe(
      map((i) => executable(['sh', '-c', flaky], { inputs: { deck: `decks/member-${i}.txt` } })),
      submitOn(md, { ordered: true }),
      map((r: ExecutableResult) => readFileSync(r.stdout.$file, 'utf8').trim()),
      toArray(),
      retry(1), // a failed member runs again; those that succeeded are served
    ),
  );
  for (const line of outputs) console.log(line);
  const attempts = [...wf.state.tasks.values()].reduce((n, t) => n + t.attempts, 0);
  console.log(
    `served from the store (earlier runs): ${before}; tasks by state: succeeded ${wf.state.counts.succeeded}`,
  );
  console.log(`attempts, all runs: ${attempts}`);
  await rt.shutdown();
  await wf.close();
}

void main();
