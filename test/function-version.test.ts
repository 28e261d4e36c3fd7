// A remote side runs a task only with the version of the function the task was submitted with: another
// version's result would be stored under this one's identity. (threads() here; Slurm job steps and
// `scalems worker` share the runner that checks it, and get the version the same way: see their tests.)
import { join } from 'node:path';
import { FunctionVersionError, executor, launch, memoryStore, openWorkflow } from 'scalems';
import { threads } from 'scalems/node';
import { echo } from './fixtures/threads/versioned';

const MODULE = join(__dirname, 'fixtures', 'threads', 'versioned.ts');

describe('function versions on a remote side', () => {
  jest.setTimeout(60_000);

  it('the same version runs; another is refused with FunctionVersionError naming both and what to do', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const same = launch(wf, threads({ modules: [MODULE], maxThreads: 1 }));
    expect(await executor(same).submit(echo, 1)).toBe(1);
    await same.shutdown();
    // the threads' environment gives them another version of versioned.echo than this process has
    const other = launch(wf, threads({ modules: [MODULE], maxThreads: 1 }));
    const ex = executor(other, { worker: { env: { SCALEMS_TEST_ECHO_VERSION: 'two' } } });
    const task = ex.submit(echo, 2);
    await expect(task).rejects.toThrow(FunctionVersionError);
    await expect(task).rejects.toThrow(/submitted with version "one".*has version "two".*so it was not run/);
    expect(task.record?.error?.code).toBe('FUNCTION_VERSION');
    await other.shutdown();
  });
});
