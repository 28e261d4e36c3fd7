// slurm({ mode: 'steps' }) on the real test cluster (scripts/start-services.sh, 2 nodes): one allocation per executor,
// each task a job step, states and failures from Slurm, cancellation by scancel, nothing left behind.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ExecutableFailedError,
  SlurmAllocationError,
  SlurmStepError,
  TaskCancelledError,
  UnknownTaskError,
  UnregisteredFunctionError,
  UnsatisfiableRequirementsError,
  UnserializableValueError,
  WalltimeExceededError,
  call,
  defineTask,
  executable,
  executor,
  file,
  launch,
  memoryStore,
  openWorkflow,
  outputOf,
  type Executor,
  type Runtime,
  type Workflow,
} from 'scalems';
import { readText, slurm } from 'scalems/node';
import { describeWithService } from './support/services';
import * as tasks from './fixtures/slurm/tasks';

const MODULE = join(__dirname, 'fixtures', 'slurm', 'tasks.ts');

/** Jobs in squeue as `id|name|state`. */
function jobs(): string[] {
  return execFileSync('squeue', ['-h', '-o', '%i|%j|%T'], { encoding: 'utf8' }).split('\n').filter(Boolean);
}

/** Steps of a job in squeue as `jobid.stepid|name`. */
function steps(jobId: string): string[] {
  try {
    return execFileSync('squeue', ['-h', '-s', '-j', jobId, '-o', '%i|%j'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

/** The allocation of an executor, as squeue lists it (its job name is `scalems-<executor id>-<pid>`). */
function allocationOf(ex: Executor): string | undefined {
  return jobs()
    .find((j) => j.split('|')[1] === `scalems-${ex.id}-${process.pid}`)
    ?.split('|')[0];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls until `probe` returns a value (the test's timeout bounds the wait). */
async function until<T>(probe: () => T | undefined): Promise<T> {
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    await sleep(50);
  }
}

async function failure(t: PromiseLike<unknown>): Promise<Error> {
  try {
    await t;
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected the task to fail');
}

describeWithService('slurm', 'slurm(): tasks as job steps in one allocation', () => {
  let wf: Workflow;
  let rt: Runtime;
  let ex: Executor;
  let root: string;

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), 'scalems-slurm-'));
    wf = await openWorkflow({ store: memoryStore(), name: 'slurm-test' });
    rt = launch(wf, slurm({ modules: [MODULE], root, gracePeriod: 0.5, mode: 'steps' }));
    ex = executor(rt, { worker: { cores: 2, env: { FROM_WORKER: 'w' } } });
  });

  afterAll(async () => {
    await rt.shutdown();
  });

  it("runs registered functions in job steps of the executor's one allocation", async () => {
    const [a, b] = await Promise.all([ex.submit(tasks.add, 1, 2), ex.submit(tasks.add, 3, 4)]);
    expect(a.sum).toBe(3);
    expect(b.sum).toBe(7);
    expect(a.job).not.toBeNull();
    expect(b.job).toBe(a.job);
    expect(a.step).not.toBe(b.step);
    expect(allocationOf(ex)).toBe(a.job);
    expect(a.pid).not.toBe(process.pid);
  });

  it('gives a function in a step currentTask(): id, label, attempt, its working directory', async () => {
    const t = ex.submit({ ...call(tasks.whoAmI), label: 'who' });
    const seen = await t;
    expect(seen).toMatchObject({ id: t.id, label: 'who', attempt: 1 });
    expect(seen.workdir).toBe(join(root, 'slurm-test', 'tasks', t.id, 'attempt-1'));
    expect(seen.cwd).toBe(seen.workdir);
  });

  it('reports an entry point that died without a result as a FAILED step with its exit code', async () => {
    const err = await failure(ex.submit(tasks.exitHard));
    expect(err).toBeInstanceOf(SlurmStepError);
    expect(err).toMatchObject({ state: 'FAILED', exitCode: 7 });
    expect((err as SlurmStepError).step).toMatch(/^\d+\.\d+$/);
  });

  it('refuses at submit a closure, an unregistered function, a name its modules do not define, arguments JSON cannot carry, ranks > 1', () => {
    expect(() => ex.submit((x: number) => x + 1, 1)).toThrow(UnregisteredFunctionError);
    const elsewhere = defineTask('slurm.notInModules', () => 1);
    expect(() => ex.submit(elsewhere)).toThrow(UnknownTaskError);
    expect(() => ex.submit(elsewhere)).toThrow(
      /no task named "slurm.notInModules" is defined by the modules given to slurm/,
    );
    expect(() => ex.submit(tasks.add, 1n as unknown as number, 2)).toThrow(UnserializableValueError);
    expect(() => ex.submit({ ...call(tasks.add, 1, 2), requirements: { ranks: 2 } })).toThrow(
      /function tasks with ranks > 1 run on threads\(\)/,
    );
  });

  it('runs an executable in its working directory: result like processes(), stdout/stderr files, inputs, outputs, stdin, env', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-slurm-in-'));
    writeFileSync(join(dir, 'in.txt'), 'staged\n');
    const t = ex.submit(
      executable(
        ['sh', '-c', 'cat in.txt > out.txt; cat; echo "$FROM_WORKER $FROM_TASK $FROM_SPEC"; echo to-stderr >&2'],
        {
          inputs: { 'in.txt': file(join(dir, 'in.txt')) },
          outputs: ['out.txt'],
          stdin: 'from stdin\n',
          env: { FROM_SPEC: 's' },
          requirements: { env: { FROM_TASK: 't' } },
        },
      ),
    );
    const result = await t;
    expect(Object.keys(result).sort()).toEqual(['command', 'exitCode', 'outputs', 'stderr', 'stdout', 'workdir']);
    expect(result.exitCode).toBe(0);
    expect(result.workdir).toBe(join(root, 'slurm-test', 'tasks', t.id, 'attempt-1'));
    expect(await readText(result.stdout)).toBe('from stdin\nw t s\n');
    expect(await readText(result.stderr)).toBe('to-stderr\n');
    expect(await readText(result.outputs['out.txt']!)).toBe('staged\n');
    // an output feeds the next step
    const next = await ex.submit(executable(['cat', 'x'], { inputs: { x: outputOf(t, 'out.txt') } }));
    expect(await readText(next.stdout)).toBe('staged\n');
  });

  it('fails a non-zero exit with ExecutableFailedError: exit code, the end of stderr, the job step', async () => {
    const err = await failure(ex.submit(executable(['sh', '-c', 'echo bad thing >&2; exit 3'])));
    expect(err).toBeInstanceOf(ExecutableFailedError);
    expect(err).toMatchObject({ exitCode: 3, signal: null, stderrTail: 'bad thing' });
    expect(err.message).toMatch(/exited with code 3 \(job step \d+\.\d+ FAILED\)/);
  });

  it('fails a program that is not there with ExecutableFailedError', async () => {
    const err = await failure(ex.submit(executable(['no-such-program-xyz'])));
    expect(err).toBeInstanceOf(ExecutableFailedError);
    expect(err.message).toMatch(/program "no-such-program-xyz" was not found/);
  });

  it('runs steps side by side in the allocation (each with only its own CPUs)', async () => {
    // A rendezvous: each step waits for the other's file, so serialised steps would never finish.
    const dir = mkdtempSync(join(tmpdir(), 'scalems-slurm-meet-'));
    const meet = (me: string, other: string) =>
      ex.submit(
        executable(
          [
            'sh',
            '-c',
            `touch ${join(dir, me)}; while [ ! -e ${join(dir, other)} ]; do sleep 0.05; done; echo ` +
              `"$SLURM_CPUS_PER_TASK"`,
          ],
          { key: me, requirements: { walltime: 20 } },
        ),
      );
    const [a, b] = await Promise.all([meet('a', 'b'), meet('b', 'a')]);
    expect(await readText(a.stdout)).toBe('1\n');
    expect(await readText(b.stdout)).toBe('1\n');
  });

  it('stops a task at its walltime: WalltimeExceededError, and the step is scancelled', async () => {
    const t = ex.submit(executable(['sleep', '300'], { label: 'too-long', requirements: { walltime: 1.5 } }));
    const jobId = await until(() => allocationOf(ex));
    await until(() => (steps(jobId).some((s) => s.endsWith('|too-long')) ? true : undefined));
    const err = await failure(t);
    expect(err).toBeInstanceOf(WalltimeExceededError);
    await until(() => (steps(jobId).some((s) => s.endsWith('|too-long')) ? undefined : true));
  });

  it('cancels a running task with scancel <job>.<step>: TaskCancelledError, the step and its processes gone', async () => {
    const marker = `scalems-cancel-${process.pid}-${Date.now()}`;
    const t = ex.submit(executable(['sh', '-c', `exec sleep 301 # ${marker}`], { label: 'to-cancel' }));
    const jobId = await until(() => allocationOf(ex));
    await until(() => (steps(jobId).some((s) => s.endsWith('|to-cancel')) ? true : undefined));
    t.cancel();
    const err = await failure(t);
    expect(err).toBeInstanceOf(TaskCancelledError);
    await until(() => (steps(jobId).some((s) => s.endsWith('|to-cancel')) ? undefined : true));
    const left = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
      .split('\n')
      .filter((l) => l.includes('sleep 301'));
    expect(left).toEqual([]);
  });

  it('kills a cancelled program that ignores SIGTERM once the grace period is over', async () => {
    const t = ex.submit(executable(['sh', '-c', 'trap "" TERM; echo ready; sleep 304'], { label: 'stubborn' }));
    const jobId = await until(() => allocationOf(ex));
    await until(() => (steps(jobId).some((s) => s.endsWith('|stubborn')) ? true : undefined));
    await until(() =>
      existsSync(join(root, 'slurm-test', 'tasks', t.id, 'attempt-1', 'stdout')) &&
      readFileSync(join(root, 'slurm-test', 'tasks', t.id, 'attempt-1', 'stdout'), 'utf8') === 'ready\n'
        ? true
        : undefined,
    );
    t.cancel();
    expect(await failure(t)).toBeInstanceOf(TaskCancelledError);
    await until(() => (steps(jobId).some((s) => s.endsWith('|stubborn')) ? undefined : true));
    await until(() =>
      execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).includes('sleep 304') ? undefined : true,
    );
  });

  it('reports a step cancelled outside the program as SlurmStepError CANCELLED', async () => {
    const t = ex.submit(executable(['sh', '-c', 'echo started; exec sleep 302'], { label: 'scancelled' }));
    const jobId = await until(() => allocationOf(ex));
    const step = await until(
      () =>
        steps(jobId)
          .find((s) => s.endsWith('|scancelled'))
          ?.split('|')[0],
    );
    // cancelled while its program runs (a step cancelled before its tasks start may end without Slurm's notice)
    const stdout = join(root, 'slurm-test', 'tasks', t.id, 'attempt-1', 'stdout');
    await until(() => (existsSync(stdout) && readFileSync(stdout, 'utf8').includes('started') ? true : undefined));
    execFileSync('scancel', [step]);
    const err = await failure(t);
    expect(err).toBeInstanceOf(SlurmStepError);
    expect(err).toMatchObject({ state: 'CANCELLED', step });
    expect(err.message).toMatch(/was cancelled outside this program/);
  });
});

describeWithService('slurm', 'slurm(): allocations are sized, checked and released', () => {
  let root: string;
  let runtimes: Runtime[] = [];

  beforeAll(() => {
    root = mkdtempSync(join(tmpdir(), 'scalems-slurm-'));
  });

  /** A runtime on a workflow of its own (task ids are content hashes: tests must not share them). */
  async function fresh(): Promise<Runtime> {
    const rt = launch(
      await openWorkflow({ store: memoryStore(), name: `slurm-alloc-${runtimes.length}` }),
      slurm({ root, mode: 'steps' }),
    );
    runtimes.push(rt);
    return rt;
  }

  afterEach(async () => {
    await Promise.all(runtimes.map((rt) => rt.shutdown()));
    runtimes = [];
  });

  const cpus = (): number =>
    Number(execFileSync('sinfo', ['-h', '-o', '%C'], { encoding: 'utf8' }).trim().split('/')[3]);

  it('refuses at executor() more cores than the partition has, naming both figures', async () => {
    const rt = await fresh();
    const total = cpus();
    expect(() => executor(rt, { worker: { cores: total + 1 } })).toThrow(UnsatisfiableRequirementsError);
    expect(() => executor(rt, { worker: { cores: total + 1 } })).toThrow(
      `they ask for ${total + 1} cores but its nodes have ${total} CPUs`,
    );
    expect(() => executor(rt, { worker: { slurm: { partition: 'no-such-partition' } } })).toThrow(
      /partition "no-such-partition" does not exist/,
    );
    expect(jobs().filter((j) => j.includes(`-${process.pid}|`))).toEqual([]);
  });

  it('refuses at submit a task bigger than the allocation, or in another partition', async () => {
    const ex = executor(await fresh(), { worker: { cores: 1 } });
    expect(() => ex.submit(executable(['true'], { requirements: { slurm: { partition: 'other' } } }))).toThrow(
      /slurm.partition "other" but its executor's allocation has "debug"/,
    );
    const big = ex.submit(executable(['true'], { requirements: { coresPerRank: 2 } }));
    expect(await failure(big)).toBeInstanceOf(UnsatisfiableRequirementsError);
  });

  it('sizes the allocation from the worker requirements', async () => {
    const ex = executor(await fresh(), { worker: { cores: 2, memoryMB: 300 } });
    await ex.submit(executable(['true']));
    const shown = execFileSync('scontrol', ['show', 'job', '-o', allocationOf(ex)!], { encoding: 'utf8' });
    expect(shown).toMatch(/NumCPUs=2 /);
    expect(shown).toMatch(/mem=300M/);
  });

  it('releases the allocation with `await using`', async () => {
    const rt = await fresh();
    let jobId: string | undefined;
    {
      await using ex = executor(rt, { worker: { cores: 1 } });
      await ex.submit(executable(['true']));
      jobId = allocationOf(ex);
      expect(jobId).toBeDefined();
    }
    await rt.shutdown(); // waits for the executor's release
    expect(jobs().filter((j) => j.startsWith(`${jobId}|`))).toEqual([]);
  });

  it('withdraws a request still pending at shutdown: nothing left in squeue', async () => {
    // Another job takes every CPU, so this executor's allocation stays pending.
    execFileSync('salloc', ['--no-shell', '-n', String(cpus()), '-J', `blocker-${process.pid}`], {
      stdio: 'ignore',
      timeout: 60_000,
    });
    try {
      const ex = executor(await fresh(), { worker: { cores: 1 } });
      const t = ex.submit(executable(['echo', 'never']));
      const jobId = await until(() => allocationOf(ex));
      expect(jobs()).toContain(`${jobId}|scalems-${ex.id}-${process.pid}|PENDING`);
      t.cancel();
      expect(await failure(t)).toBeInstanceOf(TaskCancelledError);
      await ex.shutdown({ wait: true });
      expect(jobs().filter((j) => j.startsWith(`${jobId}|`))).toEqual([]);
    } finally {
      execFileSync('scancel', ['-n', `blocker-${process.pid}`]);
    }
  });

  it('runs each attempt of a retried task as a step of its own', async () => {
    const flag = join(mkdtempSync(join(tmpdir(), 'scalems-slurm-retry-')), 'failed-once');
    const ex = executor(await fresh(), { worker: { cores: 1 } });
    const result = await ex.submit(
      executable(['sh', '-c', `test -e ${flag} || { touch ${flag}; exit 1; }`], { requirements: { retries: 1 } }),
    );
    expect(result.workdir).toMatch(/attempt-2$/);
  });

  it('fails tasks with SlurmAllocationError when the allocation is ended under them', async () => {
    const ex = executor(await fresh(), { worker: { cores: 1 } });
    await ex.submit(executable(['true']));
    const jobId = allocationOf(ex)!;
    execFileSync('scancel', [jobId]);
    await until(() => (jobs().some((j) => j.startsWith(`${jobId}|`)) ? undefined : true));
    const err = await failure(ex.submit(executable(['echo', 'too late'])));
    expect(err).toBeInstanceOf(SlurmAllocationError);
    expect(err).toMatchObject({ jobId, state: 'CANCELLED' });
  });
});

// Slurm enforces time limits in whole minutes, checked about every 30 s: an allocation's TIMEOUT takes
// 60-90 s to happen. Run with SCALEMS_SLOW_TESTS=1.
const slow = process.env.SCALEMS_SLOW_TESTS === '1' ? it : it.skip;
describeWithService('slurm', 'slurm(): an allocation that reaches its time limit (slow)', () => {
  slow(
    'fails the running step with SlurmStepError TIMEOUT and later tasks with SlurmAllocationError TIMEOUT',
    async () => {
      const wf = await openWorkflow({ store: memoryStore(), name: 'slurm-timeout' });
      const rt = launch(wf, slurm({ root: mkdtempSync(join(tmpdir(), 'scalems-slurm-')), mode: 'steps' }));
      const ex = executor(rt, { worker: { cores: 1, walltime: 1 } });
      const err = await failure(ex.submit(executable(['sleep', '600'])));
      expect(err).toBeInstanceOf(SlurmStepError);
      expect(err).toMatchObject({ state: 'TIMEOUT' });
      expect(err.message).toMatch(/allocation \d+ reached its time limit/);
      const later = await failure(ex.submit(executable(['true'])));
      expect(later).toBeInstanceOf(SlurmAllocationError);
      expect(later).toMatchObject({ state: 'TIMEOUT' });
      await rt.shutdown();
    },
    180_000,
  );
});
