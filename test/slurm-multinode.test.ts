// slurm() with tasks whose ranks span the nodes of the test cluster (scripts/start-services.sh: n1 and n2,
// 2 CPUs each): every rank's output is in the task's stdout, with either launcher, and each rank's node
// shows that both nodes ran some. Each kind of task runs several times: a lost line is never a fluke.
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ExecutableFailedError,
  TaskCancelledError,
  executable,
  executor,
  file,
  launch,
  memoryStore,
  openWorkflow,
  outputOf,
  type Executor,
  type Runtime,
  type Task,
} from 'scalems';
import { readText, slurm } from 'scalems/node';
import { describeWithService, slurmNodes } from './support/services';

const SOURCE = join(__dirname, 'fixtures', 'slurm', 'ranks.c');
/** How often each kind of task runs (SCALEMS_REPEATS=25 to hunt a flake). */
const REPEATS = Number(process.env.SCALEMS_REPEATS ?? 5);

/** The rank lines of a task's stdout, in order, without pids: `rank R of N on NODE sum S`. */
async function rankLines(stdout: Parameters<typeof readText>[0]): Promise<string[]> {
  return (await readText(stdout))
    .trim()
    .split('\n')
    .map((l) => l.replace(/ pid \d+$/, ''));
}

/** `rank r of n on <node> sum n(n+1)/2` for each rank, the nodes as the ranks reported them. */
function expected(lines: readonly string[], n: number): string[] {
  return Array.from({ length: n }, (_, r) => {
    const node = /^rank \d+ of \d+ on (\S+)/.exec(lines[r] ?? '')?.[1] ?? '?';
    return `rank ${r} of ${n} on ${node} sum ${(n * (n + 1)) / 2}`;
  });
}

const nodesOf = (lines: readonly string[]): string[] =>
  [...new Set(lines.map((l) => /on (\S+)/.exec(l)?.[1] ?? '?'))].sort();

describeWithService(['slurm', 'mpi'], 'slurm(): MPI tasks whose ranks span nodes', () => {
  let root: string;
  let runtimes: Runtime[] = [];

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'scalems-slurm-nodes-'));
    // the test cluster: the figures below (2 ranks a node) rely on it
    expect(slurmNodes().map((n) => `${n.name}:${n.cpus}`)).toEqual(['n1:2', 'n2:2']);
  });
  // each test's allocation takes what the others need: release it at once
  afterEach(async () => {
    await Promise.all(runtimes.map((rt) => rt.shutdown()));
    runtimes = [];
  });
  afterAll(() => rmSync(root, { recursive: true, force: true }));

  async function open(launcher: 'mpirun' | 'srun', cores: number): Promise<{ ex: Executor; program: Task<unknown> }> {
    const wf = await openWorkflow({ store: memoryStore(), name: `nodes-${launcher}-${cores}` });
    const rt = launch(wf, slurm({ launcher, root, gracePeriod: 0.5 }));
    runtimes.push(rt);
    const ex = executor(rt, { worker: { cores, nodes: 2 }, task: { walltime: 120 } });
    const program = ex.submit(
      executable(['mpicc', '-o', 'ranks', 'ranks.c'], { inputs: { 'ranks.c': file(SOURCE) }, outputs: ['ranks'] }),
    );
    return { ex, program };
  }

  const ranksTask = (ex: Executor, program: Task<unknown>, ranks: number, key: string, args: string[] = []) =>
    ex.submit(
      executable(['./ranks', ...args], {
        inputs: { ranks: outputOf(program as Task<never>, 'ranks') },
        requirements: { ranks },
        key,
        label: key,
      }),
    );

  it(`mpirun launcher: 4 ranks over both nodes (mpirun on this host, its daemons one step), ${REPEATS} times`, async () => {
    const { ex, program } = await open('mpirun', 4);
    for (let i = 0; i < REPEATS; i++) {
      const result = await ranksTask(ex, program, 4, `mpirun-4-${i}`);
      expect(result.command.slice(0, 5)).toEqual(['mpirun', '-np', '4', '--host', 'n1:2,n2:2']);
      const lines = await rankLines(result.stdout);
      expect(lines).toEqual(expected(lines, 4));
      expect(nodesOf(lines)).toEqual(['n1', 'n2']);
      expect((await readText(result.stderr)).trim().split('\n')).toEqual([0, 1, 2, 3].map((r) => `rank ${r} stderr`));
    }
  }, 300_000);

  it(`mpirun launcher: 2 ranks in an allocation of one CPU on each node, ${REPEATS} times`, async () => {
    const { ex, program } = await open('mpirun', 2);
    for (let i = 0; i < REPEATS; i++) {
      const result = await ranksTask(ex, program, 2, `mpirun-2-${i}`);
      expect(result.command.slice(0, 5)).toEqual(['mpirun', '-np', '2', '--host', 'n1:1,n2:1']);
      const lines = await rankLines(result.stdout);
      expect(lines).toEqual(expected(lines, 2));
      expect(nodesOf(lines)).toEqual(['n1', 'n2']);
    }
  }, 300_000);

  it(`srun launcher: 2 ranks on two nodes keep both ranks' output, ${REPEATS} times`, async () => {
    const { ex, program } = await open('srun', 2);
    for (let i = 0; i < REPEATS; i++) {
      const result = await ranksTask(ex, program, 2, `srun-2-${i}`);
      expect(result.command).toEqual(['srun', '--mpi=pmix', '-n', '2', './ranks']);
      const lines = await rankLines(result.stdout);
      expect(lines).toEqual(expected(lines, 2));
      expect(nodesOf(lines)).toEqual(['n1', 'n2']);
      expect((await readText(result.stderr)).trim().split('\n')).toEqual(['rank 0 stderr', 'rank 1 stderr']);
    }
  }, 300_000);

  it(`srun launcher: 4 ranks over both nodes, ${REPEATS} times`, async () => {
    const { ex, program } = await open('srun', 4);
    for (let i = 0; i < REPEATS; i++) {
      const lines = await rankLines((await ranksTask(ex, program, 4, `srun-4-${i}`)).stdout);
      expect(lines).toEqual(expected(lines, 4));
      expect(nodesOf(lines)).toEqual(['n1', 'n2']);
    }
  }, 300_000);

  it.each(['mpirun', 'srun'] as const)(
    '%s launcher: a rank that fails fails the task spanning nodes with its exit code, the others ended',
    async (launcher) => {
      const { ex } = await open(launcher, 4);
      const rank = launcher === 'mpirun' ? 'OMPI_COMM_WORLD_RANK' : 'SLURM_PROCID';
      const t = ex.submit(
        executable(['sh', '-c', `if [ "$${rank}" = 2 ]; then echo rank 2 fails >&2; exit 3; fi; exec sleep 303`], {
          requirements: { ranks: 4 },
        }),
      );
      const err = await t.then(
        () => undefined,
        (e: unknown) => e as Error,
      );
      expect(err).toBeInstanceOf(ExecutableFailedError);
      expect(err).toMatchObject({ exitCode: 3 });
      expect(err?.message).toMatch(/rank 2 fails/);
      const left = (): boolean => execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes('sleep 303');
      while (left()) await new Promise((r) => setTimeout(r, 100));
    },
    120_000,
  );

  it('mpirun launcher: a program that is not there, over both nodes, fails saying so', async () => {
    const { ex } = await open('mpirun', 4);
    const t = ex.submit(executable(['./no-such-program-xyz'], { requirements: { ranks: 4 } }));
    const err = await t.then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(err).toBeInstanceOf(ExecutableFailedError);
    expect(err?.message).toMatch(/no-such-program-xyz/);
    expect(err?.message).toMatch(/mpirun said:[^]*(not find|unable to launch|could not access or execute)/i);
  }, 120_000);

  it('cancelling a task that spans nodes (mpirun launcher) ends mpirun, every rank and the step', async () => {
    const { ex, program } = await open('mpirun', 4);
    await program;
    const t = ranksTask(ex, program, 4, 'cancel-me', ['sleep']);
    const sleeping = (): number[] =>
      execFileSync('ps', ['-eo', 'pid,args'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => /\.\/ranks sleep$/.test(l.trim()) && !/mpirun/.test(l))
        .map((l) => Number(l.trim().split(' ')[0]));
    while (sleeping().length < 4) await new Promise((r) => setTimeout(r, 100));
    t.cancel();
    await expect(t).rejects.toBeInstanceOf(TaskCancelledError);
    // every rank, and the step, end (the test's timeout bounds the wait)
    while (sleeping().length > 0) await new Promise((r) => setTimeout(r, 100));
    const listed = (): boolean =>
      execFileSync('squeue', ['-h', '-s', '-o', '%j'], { encoding: 'utf8' }).split('\n').includes('cancel-me');
    while (listed()) await new Promise((r) => setTimeout(r, 100));
  }, 120_000);
});
