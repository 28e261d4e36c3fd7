// An ensemble on bullmq(): the driver puts task attempts into Redis, and `scalems worker` processes
// (on this machine or any other that reaches the Redis and shares the filesystem) run them. The
// ensemble members are defineTask functions of examples/tasks/cluster-tasks.ts, which every worker
// loads; the analysis asks for 2 cores, so only a worker that offers 2 takes it; the last task is a
// program, run as a child process of a worker in a working directory under ./.scalems.
//
// `bash scripts/cluster-example.sh [members]` starts two workers (2 cores and 1 core), runs this
// driver and stops them. By hand, with Redis on 127.0.0.1:6379 (SCALEMS_REDIS_URL for another):
//
//   npx tsx src/cli/main.ts worker --prefix demo --modules examples/tasks/cluster-tasks.ts --cores 2 &
//   npx tsx examples/cluster.ts 8 --prefix demo
import { join, relative } from 'node:path';
import { parseArgs } from 'node:util';
import { from, lastValueFrom, map, toArray } from 'rxjs';
import {
  call,
  executable,
  executor,
  labelled,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  withRequirements,
} from 'scalems';
import { bullmq, readText } from 'scalems/node';
import { analyse, simulate } from './tasks/cluster-tasks';

async function main(): Promise<void> {
  const { values, positionals } = parseArgs({
    options: { prefix: { type: 'string', default: 'scalems' } },
    allowPositionals: true,
  });
  const members = Number(positionals[0] ?? 8);
  // the workers are started with the same URL (--redis, or this variable: no password on a command line)
  const redis = process.env.SCALEMS_REDIS_URL ?? 'redis://127.0.0.1:6379';
  // A memory store: every run starts afresh. With the default (.scalems/cluster-example/state.sqlite), a
  // driver killed and started again would serve what succeeded from it and follow the jobs still in Redis.
  const workflow = await openWorkflow({ store: memoryStore(), name: 'cluster-example' });
  await using runtime = launch(
    workflow,
    bullmq({
      connection: redis,
      prefix: values.prefix, // the workers' --prefix
      modules: [join(__dirname, 'tasks', 'cluster-tasks.ts')], // the workers' --modules: names checked at submit
      unavailableAfter: 30, // seconds without Redis before the waiting tasks fail (default 60)
    }),
  );
  // Tasks in flight at most: 3 cores' worth, what the two workers of scripts/cluster-example.sh offer.
  // Without `worker: { cores }`, every ready task goes into Redis at once and waits there for a worker.
  await using ex = executor(runtime, { worker: { cores: 3 } });
  console.log(`driver: bullmq() at ${redis.replace(/\/\/[^@/]*@/, '//')}, prefix "${values.prefix}"`);

  const ensemble = await lastValueFrom(
    from(Array.from({ length: members }, (_, i) => i)).pipe(
      map((member) => call(simulate, member, 5_000_000)),
      withRequirements({ walltime: 120, retries: 1 }), // walltime: counted on the worker, from the task's start
      labelled((spec) => `member-${String(spec.args[0])}`),
      submitOn(ex, { ordered: true }),
      toArray(),
    ),
  );
  for (const r of ensemble) console.log(`member ${r.member}: final ${r.final.toFixed(3)} (worker ${r.worker})`);
  const workers = new Set(ensemble.map((r) => r.worker)).size;
  console.log(`ensemble: ${ensemble.length} members on ${workers} worker${workers === 1 ? '' : 's'}`);

  // 2 cores for one task: its queue is tasks.c2.g0.m0, which only a worker with --cores 2 or more serves
  const finals = ensemble.map((r) => r.final);
  const stats = await ex.submit({ ...call(analyse, finals), requirements: { coresPerRank: 2 }, label: 'analysis' });
  console.log(
    `analysis on 2 cores: mean distance ${stats.mean.toFixed(3)} over ${stats.members} members, ` +
      `farthest member ${stats.farthest} (worker ${stats.worker})`,
  );

  // A program: no shell of ours (argv), run by a worker in <root>/<workflow>/tasks/<id>/attempt-<n>/. Its
  // parent ($PPID) is the native forker of the worker's spawner (or the spawner itself, where the forker was not
  // built), and the spawner a child of the worker process: the spawner's parent (the 4th field of its /proc stat)
  // names the worker the way the functions above do.
  const whose =
    'p=$PPID; read -r c < /proc/$p/comm; [ "$c" = scalems-forker ] && read -r _ _ _ p _ < /proc/$p/stat; ' +
    'read -r _ _ _ w _ < /proc/$p/stat; echo "$(uname -n)-$w"';
  const sorted = await ex.submit(
    executable(['sh', '-c', `sort -g | tail -n 1; ${whose}`], {
      stdin: finals.map((f) => `${Math.abs(f)}\n`).join(''),
      label: 'largest',
    }),
  );
  const [largest, by] = (await readText(sorted.stdout)).trim().split('\n');
  console.log(
    `executable: largest distance ${Number(largest).toFixed(3)} (worker ${by}, ` +
      `in ${relative(process.cwd(), sorted.workdir)})`,
  );

  await runtime.shutdown();
  const counts = Object.entries(workflow.state.counts).filter(([, n]) => n > 0);
  console.log(`tasks by state: ${counts.map(([s, n]) => `${s} ${n}`).join(', ')}`);
}

main().catch((err: unknown) => {
  console.error(err);
  process.exit(1);
});
