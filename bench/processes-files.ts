// A diagnosis, not a goal: how much of processes()'s gap to a plain spawn loop is the files each attempt is made of
// (the task's and the attempt's directories, stdout, stderr), and how much is scalems's own work (the workflow, the
// spawners, the pipes between them). It runs, in alternating order, processes() as it is and processes() whose
// spawners make no files: their program text is patched so that each program runs in the temporary directory with
// stdout and stderr on /dev/null. Nothing else changes: the same driver, pool, gates and messages. Each round's
// ratios are against the same plain spawn loop (spawn-loop.ts, in a process of its own), timed just before.
// The spawners fork with Node (SCALEMS_FORKER=node): the patch is of that path, the one this diagnosis was made for
// (the native forker opens the files itself).
// Run, built: node build/bench/bench/processes-files.js [rounds]
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { removeRoots, viaScalems } from './processes';
import { spawnLoop } from './spawn-loop';
import { fmtRatio, spread } from './stats';

/** The module of the spawner's program in the build that 'scalems' loads (the one to patch). */
const program = require(join(dirname(require.resolve('scalems/node')), '../runtime/executable/spawner-program.js')) as {
  SPAWNER_PROGRAM: string;
};

const asItIs = program.SPAWNER_PROGRAM;

/** The spawner's program with the directory and the two files replaced by nothing and /dev/null. */
function withoutFiles(text: string): string {
  let out = text;
  for (const [from, to] of [
    ['if (!m[4]) makeDir(cwd);', ''],
    [`p.fds.push(fs.openSync(m[5], 'w'));`, `p.fds.push(fs.openSync('/dev/null', 'w'));`],
    [`p.fds.push(fs.openSync(m[6], 'w'));`, `p.fds.push(fs.openSync('/dev/null', 'w'));`],
    ['cwd: p.cwd, env', `cwd: ${JSON.stringify(tmpdir())}, env`],
  ] as const) {
    if (!out.includes(from)) throw new Error(`the spawner's program has changed: "${from}" is not in it; update me`);
    out = out.replace(from, to);
  }
  return out;
}

let current = asItIs;
Object.defineProperty(program, 'SPAWNER_PROGRAM', { get: () => current });

/** `viaScalems` (processes.ts) with spawners that run `text`: each executor starts its own. */
function viaScalemsRunning(n: number, cores: number, text: string): Promise<number> {
  current = text;
  return viaScalems(n, cores, true);
}

async function main(rounds: number, tasks = 200): Promise<void> {
  const cores = availableParallelism();
  const noFiles = withoutFiles(asItIs);
  const ratios = { asItIs: [] as number[], noFiles: [] as number[] };
  try {
    await spawnLoop(20, cores);
    await viaScalemsRunning(20, cores, asItIs);
    await viaScalemsRunning(20, cores, noFiles);
    for (let r = 0; r < rounds; r++) {
      const { ms: loop } = await spawnLoop(tasks, cores);
      const first = r % 2 === 0 ? asItIs : noFiles;
      const a = await viaScalemsRunning(tasks, cores, first);
      const b = await viaScalemsRunning(tasks, cores, first === asItIs ? noFiles : asItIs);
      const [withMs, withoutMs] = first === asItIs ? [a, b] : [b, a];
      ratios.asItIs.push(loop / withMs);
      ratios.noFiles.push(loop / withoutMs);
    }
  } finally {
    removeRoots(); // kept until now: see processes.ts on deleting inodes between rounds
  }
  console.log(`processes(), ${tasks} x true, concurrency ${cores}: spawn loop time / scalems time, ${rounds} rounds`);
  console.log(`  as it is:                   ${spread(ratios.asItIs, fmtRatio)}`);
  console.log(`  its spawners make no files: ${spread(ratios.noFiles, fmtRatio)}`);
}

void main(Number(process.argv[2] ?? 7));
