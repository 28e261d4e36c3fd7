// MPI programs as job steps: examples/slurm-mpi.ts run as a user would, and the srun (PMIx) launcher.
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TaskCancelledError, executable, executor, file, launch, memoryStore, openWorkflow, outputOf } from 'scalems';
import { readText, slurm } from 'scalems/node';
import { describeWithService } from './support/services';

const run = promisify(execFile);

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
const root = join(__dirname, '..');

describeWithService(['slurm', 'mpi'], 'slurm(): MPI executables in job steps', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'scalems-slurm-mpi-'));
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('examples/slurm-mpi.ts: an ensemble of 2-rank MPI programs on one allocation', async () => {
    const { stdout } = await run(
      join(root, 'node_modules', '.bin', 'tsx'),
      ['--tsconfig', join(root, 'tsconfig.json'), join(root, 'examples', 'slurm-mpi.ts'), '3'],
      { cwd, timeout: 90_000 },
    );
    expect(stdout).toContain(
      'launched in each job step: mpirun -np 2 --oversubscribe --mca ras ^slurm --bind-to none ./hello',
    );
    for (const i of [0, 1, 2]) expect(stdout).toContain(`member ${i}: 2 ranks, sum of 1..2 = 3`);
    expect(stdout).toContain('tasks by state: succeeded 4');
    // the example has exited: no allocation of a process that is gone is left (other test files' are theirs)
    const jobs = execFileSync('squeue', ['-h', '-o', '%j'], { encoding: 'utf8' }).split('\n');
    const owners = jobs
      .map((j) => /^scalems-executor-\d+-(\d+)$/.exec(j.trim())?.[1])
      .filter((pid) => pid !== undefined);
    expect(owners.filter((pid) => !isAlive(Number(pid)))).toEqual([]);
  }, 90_000);

  it('starts the ranks with srun --mpi=pmix with launcher: "srun", and cancels all of them with the step', async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'slurm-pmix' });
    const rt = launch(wf, slurm({ launcher: 'srun', root: cwd, gracePeriod: 0.5 }));
    try {
      const ex = executor(rt, { worker: { cores: 2 }, task: { walltime: 60 } });
      const compile = ex.submit(
        executable(['mpicc', '-o', 'hello', 'hello.c'], {
          inputs: { 'hello.c': file(join(root, 'examples', 'mpi', 'hello.c')) },
          outputs: ['hello'],
        }),
      );
      const result = await ex.submit(
        executable(['./hello'], { inputs: { hello: outputOf(compile, 'hello') }, requirements: { ranks: 2 } }),
      );
      expect(result.command).toEqual(['srun', '--mpi=pmix', '-n', '2', './hello']);
      const lines = (await readText(result.stdout)).trim().split('\n').sort();
      expect(lines).toEqual(['rank 0 of 2', 'rank 1 of 2', 'sum of 1..2 = 3']);

      const long = ex.submit(executable(['sleep', '305'], { requirements: { ranks: 2 } }));
      for (;;) {
        if (
          execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
            .split('\n')
            .filter((l) => /(^|\/)sleep 305$/.test(l)).length === 2
        )
          break; // srun runs it as /usr/bin/sleep
        await new Promise((r) => setTimeout(r, 50));
      }
      long.cancel();
      await expect(long).rejects.toBeInstanceOf(TaskCancelledError);
      for (;;) {
        if (!execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes('sleep 305')) break;
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      await rt.shutdown();
    }
  }, 60_000);
});
