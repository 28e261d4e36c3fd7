// MPI executables through mpirun (Open MPI): needs the real 'mpi' service (mpirun + mpicc).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TaskCancelledError, executable, type FileRef } from 'scalems';
import { readText } from 'scalems/node';
import { physicalCores } from '../src/runtime/executable/mpi';
import { describeWithService } from './support/services';
import { alive, removeRoots, runExample, setup, waitFor } from './support/processes';

const PROGRAM = `
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
int main(int argc, char **argv) {
  int rank, size;
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  const char *env = getenv("SCALEMS_MPI_T");
  printf("rank %d size %d env %s pid %d\\n", rank, size, env ? env : "-", (int)getpid());
  fflush(stdout);
  if (argc > 1 && strcmp(argv[1], "sleep") == 0) sleep(100);
  MPI_Finalize();
  return 0;
}
`;

let dir: string;
let program: string;

describeWithService('mpi', 'processes(): MPI executables through mpirun', () => {
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-mpi-'));
    writeFileSync(join(dir, 'rank.c'), PROGRAM);
    program = join(dir, 'rank');
    const cc = spawnSync('mpicc', ['-o', program, join(dir, 'rank.c')], { encoding: 'utf8' });
    if (cc.status !== 0) throw new Error(`mpicc failed: ${cc.stderr}`);
  });
  afterAll(() => {
    rmSync(dir, { recursive: true, force: true });
    removeRoots();
  });

  const lines = async (ref: FileRef): Promise<string[]> => (await readText(ref)).trim().split('\n').sort();

  it('ranks 2: mpirun -np 2 runs both ranks in a communicator of size 2; the env requirement reaches every rank', async () => {
    const { rt, ex } = await setup({}, { worker: { cores: 2 } });
    const r = await ex.submit(
      executable([program], { requirements: { ranks: 2, env: { SCALEMS_MPI_T: 'from-requirement' } } }),
    );
    // as root (CI containers), OMPI_ALLOW_RUN_AS_ROOT* are added by the backend: this test does not set them
    expect(r.command).toEqual([
      'mpirun',
      '-np',
      '2',
      ...(physicalCores() < 2 ? ['--oversubscribe'] : []),
      '--bind-to',
      'none',
      program,
    ]);
    expect((await lines(r.stdout)).map((l) => l.replace(/ pid \d+$/, ''))).toEqual([
      'rank 0 size 2 env from-requirement',
      'rank 1 size 2 env from-requirement',
    ]);
    await rt.shutdown();
  });

  it('adds --oversubscribe only when there are more ranks than mpirun has slots', async () => {
    const { rt, ex } = await setup({ mpi: { slots: 2 } }, { worker: { cores: 3 } });
    const r = await ex.submit(executable([program], { requirements: { ranks: 3 } }));
    expect(r.command.slice(0, 4)).toEqual(['mpirun', '-np', '3', '--oversubscribe']);
    expect((await lines(r.stdout)).map((l) => l.split(' env')[0])).toEqual([
      'rank 0 size 3',
      'rank 1 size 3',
      'rank 2 size 3',
    ]);
    await rt.shutdown();
  });

  it('ranks × coresPerRank beyond the executor fails at once, naming both figures', async () => {
    const { rt, ex } = await setup({}, { worker: { cores: 2 } });
    await expect(ex.submit(executable([program], { requirements: { ranks: 2, coresPerRank: 2 } }))).rejects.toThrow(
      /needs 4 cores \(ranks 2 × coresPerRank 2\) but the executor has 2/,
    );
    await rt.shutdown();
  });

  it('cancelling an MPI task ends mpirun and every rank', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 1 }, { worker: { cores: 2 } });
    const t = ex.submit(executable([program, 'sleep'], { requirements: { ranks: 2 } }));
    const stdout = join(root, 'wf', 'tasks', t.id, 'attempt-1', 'stdout');
    const ranks = await waitFor(() => {
      let text = '';
      try {
        text = readFileSync(stdout, 'utf8');
      } catch {
        return undefined;
      }
      const pids = [...text.matchAll(/pid (\d+)/g)].map((m) => Number(m[1]));
      return pids.length === 2 ? pids : undefined;
    }, 'both ranks to start');
    const mpirun = ranks.map((pid) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ')[1]));
    const pids = [...new Set([...ranks, ...mpirun])];
    expect(alive(pids)).toEqual(pids);
    t.cancel();
    await expect(t).rejects.toThrow(TaskCancelledError);
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
  });

  it('examples/mpi.ts compiles hello.c and runs it on 2 ranks', async () => {
    const { root } = await setup();
    const out = runExample('mpi.ts', root);
    expect(out.stderr).toBe('');
    expect(out.status).toBe(0);
    expect(out.stdout).toMatch(/launched: mpirun -np 2 .*\.\/hello/);
    expect(out.stdout).toMatch(/rank 0 of 2\nrank 1 of 2\nsum of 1..2 = 3/);
  });
});
