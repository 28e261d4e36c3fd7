// Cancellation and walltime reach the whole process tree: no process of a task is left behind.
import { spawn } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { TaskCancelledError, WalltimeExceededError, executable } from 'scalems';
import { alive, pidsIn, removeRoots, setup, waitFor } from './support/processes';

afterAll(removeRoots);

/**
 * A tree that reports its pids (one per line, on stdout), with TERM ignored everywhere (so only SIGKILL
 * ends it) and one member in a session of its own (so that a process-group kill alone would miss it).
 */
const STUBBORN = ['bash', '-c', 'trap "" TERM; sleep 100 & echo $!; setsid sleep 100 & echo $!; echo $$; wait'];

describe('processes(): ending process trees', () => {
  it('cancel: SIGTERM, then SIGKILL after the grace period, reaches every process of the tree', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 0.3 });
    const t = ex.submit(executable(STUBBORN));
    const dir = workdirOf(root, t.id);
    const pids = await waitFor(() => pidsIn(join(dir, 'stdout'), 3), 'the tree to report its pids');
    expect(alive(pids)).toEqual(pids);
    t.cancel('enough');
    await expect(t).rejects.toThrow(TaskCancelledError);
    expect(t.state).toBe('cancelled');
    await rt.shutdown(); // resolves once no process of the tree is left
    expect(alive(pids)).toEqual([]);
  });

  it('walltime: the task fails with WalltimeExceededError and its whole tree is ended', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 0.3 });
    const t = ex.submit(executable(STUBBORN, { requirements: { walltime: 1.5 } }));
    const dir = workdirOf(root, t.id);
    const pids = await waitFor(() => pidsIn(join(dir, 'stdout'), 3), 'the tree to report its pids');
    await expect(t).rejects.toThrow(WalltimeExceededError);
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
  });

  it('what a program leaves running in its process group when it exits is ended too', async () => {
    const { rt, ex } = await setup({ gracePeriod: 0.3 });
    const r = await ex.submit(executable(['bash', '-c', 'sleep 100 & echo $!']));
    const pids = pidsIn(r.stdout.$file, 1)!;
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
  });

  it('when the driving program is interrupted (SIGINT), its running trees are ended before it exits', async () => {
    const { root } = await setup();
    const pidFile = join(root, 'pids.txt');
    const driverFile = join(root, 'driver.pid');
    const script = join(root, 'driver.ts');
    writeFileSync(
      script,
      `import { executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
       import { processes } from 'scalems/node';
       require('node:fs').writeFileSync(${JSON.stringify(driverFile)}, String(process.pid));
       void (async () => {
         const wf = await openWorkflow({ store: memoryStore() });
         const ex = executor(launch(wf, processes({ root: ${JSON.stringify(root)}, gracePeriod: 0.3 })));
         const script = 'trap "" TERM; sleep 100 & echo $! >> ${pidFile}; echo $$ >> ${pidFile}; wait';
         void ex.submit(executable(['bash', '-c', script])).then(undefined, () => undefined);
       })();`,
    );
    const driver = spawn('npx', ['tsx', '--tsconfig', join(process.cwd(), 'tsconfig.json'), script], {
      stdio: 'ignore',
    });
    const pids = await waitFor(() => pidsIn(pidFile, 2), 'the driver to start its task', 30_000);
    const driverPid = Number(readFileSync(driverFile, 'utf8'));
    process.kill(driverPid, 'SIGINT');
    await new Promise((resolve) => driver.once('exit', resolve));
    expect(alive(pids)).toEqual([]);
  });
});

/** The first attempt's working directory of a task of the workflow 'wf' (see setup()). */
function workdirOf(root: string, id: string): string {
  return join(root, 'wf', 'tasks', id, 'attempt-1');
}
