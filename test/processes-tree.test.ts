// Cancellation and walltime reach the whole process tree: no process of a task is left behind.
import { spawn } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  TaskCancelledError,
  WalltimeExceededError,
  WorkerCrashedError,
  executable,
  type ExecutableResult,
  type TaskSpec,
} from 'scalems';
import { alive, pidsIn, removeRoots, setup, waitFor } from './support/processes';
import { overlapProbe, spawnersOf } from './support/work';

afterAll(removeRoots);

/**
 * A tree that reports its pids (one per line, on stdout), with TERM ignored everywhere (so only SIGKILL
 * ends it) and one member in a session of its own (so that a process-group kill alone would miss it).
 */
const STUBBORN = ['bash', '-c', 'trap "" TERM; sleep 100 & echo $!; setsid sleep 100 & echo $!; echo $$; wait'];

/**
 * A program that daemonises (a double fork into a session of its own: the daemon is reparented, in no group or
 * session of the tree, and has no ancestor in it) and reports the daemon's pid and its own. TERM is ignored by both.
 */
const DAEMONISING = ['bash', '-c', 'trap "" TERM; (setsid sleep 100 & echo $!); echo $$; sleep 100'];

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

  it.each([1, 2])(
    'a retry after a walltime starts only once the first attempt’s tree has ended, its grace period over (%i cores)',
    async (cores) => {
      // with 2 cores a core is free for the retry: it waits for the attempt before it all the same
      const { root, rt, ex } = await setup({ gracePeriod: 1 }, { worker: { cores } });
      const probe = overlapProbe(root);
      const t = ex.submit(executable(['bash', '-c', probe.script], { requirements: { walltime: 1, retries: 1 } }));
      await expect(t).rejects.toThrow(WalltimeExceededError);
      expect(t.record?.attempts).toBe(2);
      await rt.shutdown();
      expect(probe.runs()).toEqual(['alone', 'alone']);
    },
  );

  it('what a program leaves running in its process group when it exits is ended too', async () => {
    const { rt, ex } = await setup({ gracePeriod: 0.3 });
    const r = await ex.submit(executable(['bash', '-c', 'sleep 100 & echo $!']));
    const pids = pidsIn(r.stdout.$file, 1)!;
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
  });

  it('cancel: a program that daemonised (double fork, setsid) loses its daemon too', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 0.3 });
    const t = ex.submit(executable(DAEMONISING));
    const pids = await waitFor(() => pidsIn(join(workdirOf(root, t.id), 'stdout'), 2), 'the program to daemonise');
    expect(alive(pids)).toEqual(pids);
    t.cancel('enough');
    await expect(t).rejects.toThrow(TaskCancelledError);
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
  });

  it('shutdown: the daemon of a program that has exited is ended when the scope closes', async () => {
    const { rt, ex } = await setup({ gracePeriod: 0.3 });
    const r = await ex.submit(
      executable(['bash', '-c', 'trap "" TERM; (setsid sleep 100 & echo $!); setsid -f sleep 100']),
    );
    const [daemon] = pidsIn(r.stdout.$file, 1)!;
    expect(alive([daemon!])).toEqual([daemon]); // it outlives its program: it is not in its tree any more
    await rt.shutdown();
    expect(alive([daemon!])).toEqual([]);
  });

  it('the spawner (also the watchdog) is started with the first program and gone once the runtime is shut down', async () => {
    const before = spawnersOf();
    const { rt, ex } = await setup({ gracePeriod: 0.3 });
    expect(spawnersOf()).toEqual(before);
    await ex.submit(executable(['true']));
    const started = spawnersOf().filter((pid) => !before.includes(pid));
    expect(started).toHaveLength(1);
    await rt.shutdown();
    expect(alive(started)).toEqual([]);
  });

  it('when the driving program is interrupted (SIGINT), its running trees are ended before it exits', async () => {
    const { root } = await setup();
    const pidFile = join(root, 'pids.txt');
    const driver = startDriver(
      root,
      { gracePeriod: 0.3 },
      `const script = 'trap "" TERM; sleep 100 & echo $! >> ${pidFile}; echo $$ >> ${pidFile}; wait';
       void ex.submit(executable(['bash', '-c', script])).then(undefined, () => undefined);`,
    );
    const pids = await waitFor(() => pidsIn(pidFile, 2), 'the driver to start its task', 30_000);
    await driver.signal('SIGINT');
    expect(alive(pids)).toEqual([]);
  });

  it.each(['SIGTERM', 'SIGKILL'] as const)(
    'a driver ended (%s) while programs wait in its spawner for a core: they are dropped, never started',
    async (signal) => {
      const { root } = await setup();
      const marks = join(root, 'started');
      const driver = startDriver(
        root,
        { cores: 1, gracePeriod: 0.3 },
        `for (let i = 0; i < 5; i++) {
           const script = 'echo ' + i + ' >> ${marks}; sleep 100';
           void ex.submit(executable(['bash', '-c', script])).then(undefined, () => undefined);
         }`,
      );
      await waitFor(() => (existsSync(marks) ? textOf(marks) : undefined), 'the first program to start', 30_000);
      await new Promise((r) => setTimeout(r, 300)); // the other four handed to the spawner, waiting for the core
      await driver.signal(signal);
      // the spawner ends the first program (its grace is 0.3 s); each exit used to start the next one waiting
      await new Promise((r) => setTimeout(r, 2_000));
      expect(textOf(marks)!.trim().split('\n')).toEqual(['0']);
    },
  );

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'a driver interrupted (%s): the programs it ends are no failures of their tasks, and none is retried',
    async (signal) => {
      const { root } = await setup();
      const marks = join(root, 'started');
      const caught = join(root, 'caught');
      const driver = startDriver(
        root,
        { cores: 2, gracePeriod: 0.3 },
        `for (let i = 0; i < 4; i++) {
           const script = 'echo ' + i + ' >> ${marks}; sleep 100';
           const retries = i % 2 === 0 ? 0 : 2;
           void ex.submit(executable(['bash', '-c', script], { requirements: { retries } })).then(undefined,
             (e) => require('node:fs').appendFileSync(${JSON.stringify(caught)}, e.name + ': ' + e.message + '\\n'));
         }`,
      );
      await waitFor(
        () => (textOf(marks)?.split('\n').length === 3 ? true : undefined),
        'two programs to start',
        30_000,
      );
      await driver.signal(signal);
      // before: each program ended was a failure its driver's code heard of, and a retry that started another
      expect(textOf(marks)!.trim().split('\n').sort()).toEqual(['0', '1']);
      expect(textOf(caught)).toBeUndefined();
    },
  );

  it('a driver that is PID 1 (of a container), where its re-raised signal is ignored, exits all the same', async () => {
    // it used to go on, its tasks neither started nor settled, and end with code 0 once nothing kept it alive
    const { root } = await setup();
    const started = join(root, 'started');
    const script = join(root, 'driver.js');
    const dist = JSON.stringify(join(__dirname, '..', 'dist', 'src', 'node'));
    writeFileSync(
      script,
      `const { executable, executor, launch, memoryStore, openWorkflow } = require(${dist} + '/auto.js');
       const { processes } = require(${dist} + '/index.js');
       void (async () => {
         const wf = await openWorkflow({ store: memoryStore() });
         const ex = executor(launch(wf, processes({ root: ${JSON.stringify(root)}, gracePeriod: 0.3 })));
         const script = 'echo $$ > ${started}; sleep 100';
         void ex.submit(executable(['bash', '-c', script])).then(undefined, () => undefined);
       })();`,
    );
    // unshare (util-linux; root) starts it as PID 1 of a PID namespace of its own
    const box = spawn('unshare', ['--fork', '--pid', '--mount-proc', process.execPath, script], { stdio: 'ignore' });
    const exited = new Promise<number | null>((resolve) => box.once('exit', (code) => resolve(code)));
    await waitFor(() => textOf(started), 'the program to start', 30_000);
    const [driver] = readFileSync(`/proc/${box.pid}/task/${box.pid}/children`, 'utf8').trim().split(' ').map(Number);
    process.kill(driver!, 'SIGTERM');
    expect(await exited).toBe(143);
  });

  it('interrupted while its spawner starts a program, it exits only once that program is ended', async () => {
    const d = await blockedDriver();
    try {
      d.interrupt();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(d.exited()).toBe(false); // it waits for its spawner
      d.unblock(); // the spawner starts the program now, then ends it, then exits
      await d.exit;
      expect(processesIn(d.dir)).toEqual([]);
    } finally {
      d.end();
    }
  });

  it('a second interrupt while it waits for its spawner ends the driver at once', async () => {
    const d = await blockedDriver();
    try {
      d.interrupt();
      await new Promise((resolve) => setTimeout(resolve, 500));
      expect(d.exited()).toBe(false);
      d.interrupt();
      await d.exit; // without the spawner going on
      d.unblock(); // the spawner starts the program, then, its owner gone, ends what it started and exits
      await waitFor(() => (alive([d.spawner]).length === 0 ? true : undefined), 'the spawner to exit');
      expect(processesIn(d.dir)).toEqual([]);
    } finally {
      d.end();
    }
  });
});

/**
 * A driver (tsx, as a user runs one) that has handed a program to its spawner, stopped (SIGSTOP) before it read it: the
 * spawner starts it once it goes on, and the driver knows of no tree of it yet.
 */
async function blockedDriver(): Promise<{
  readonly dir: string;
  /** the driver's spawner, stopped */
  readonly spawner: number;
  readonly exit: Promise<unknown>;
  exited(): boolean;
  interrupt(): void;
  /** the spawner goes on (SIGCONT): it starts the program */
  unblock(): void;
  /** nothing is left waiting, whatever failed: the spawner stopped, the driver for the spawner */
  end(): void;
}> {
  const { root } = await setup();
  const goFile = join(root, 'go');
  const idFile = join(root, 'task.id');
  const driverFile = join(root, 'driver.pid');
  const script = join(root, 'driver.ts');
  writeFileSync(
    script,
    `import { executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
     import { processes } from 'scalems/node';
     const fs = require('node:fs');
     void (async () => {
       const wf = await openWorkflow({ store: memoryStore(), name: 'wf' });
       const ex = executor(launch(wf, processes({ root: ${JSON.stringify(root)}, gracePeriod: 0.3 })));
       await ex.submit(executable(['true'])); // its spawner is up
       fs.writeFileSync(${JSON.stringify(driverFile)}, String(process.pid));
       while (!fs.existsSync(${JSON.stringify(goFile)})) await new Promise((r) => setTimeout(r, 20));
       const t = ex.submit(executable(['bash', '-c', 'trap "" TERM; sleep 100 & wait']));
       void t.then(undefined, () => undefined);
       // handed to the spawner within a few turns of the event loop
       setTimeout(() => fs.writeFileSync(${JSON.stringify(idFile)}, t.id), 300);
     })();`,
  );
  const driver = spawn('npx', ['tsx', '--tsconfig', join(process.cwd(), 'tsconfig.json'), script], {
    stdio: 'ignore',
  });
  let exited = false;
  const exit = new Promise((resolve) => driver.once('exit', resolve)).then(() => (exited = true));
  let spawner: number | undefined;
  const unblock = (): void => {
    if (spawner !== undefined && alive([spawner]).length === 1) process.kill(spawner, 'SIGCONT');
  };
  // (a file is seen empty between its creation and its write: pid 0 would signal this process's whole group)
  const driverPid = (): number | undefined => {
    const pid = Number(textOf(driverFile));
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  };
  const end = (): void => {
    unblock();
    if (exited) return;
    const pid = driverPid();
    if (pid !== undefined && alive([pid]).length === 1) process.kill(pid, 'SIGKILL');
    driver.kill('SIGKILL');
  };
  try {
    const pid = await waitFor(driverPid, 'the driver to start its spawner', 30_000);
    spawner = spawnersOf(pid)[0];
    if (spawner === undefined) throw new Error(`the driver ${pid} has no spawner`);
    process.kill(spawner, 'SIGSTOP');
    writeFileSync(goFile, '');
    const dir = workdirOf(root, await waitFor(() => textOf(idFile), 'the task', 30_000));
    return { dir, spawner, exit, exited: () => exited, interrupt: () => process.kill(pid, 'SIGINT'), unblock, end };
  } catch (error) {
    end();
    throw error;
  }
}

/** The text of the file at `path`, once it has been written (undefined while it is missing or empty). */
/**
 * A driving program of its own (tsx), with a processes() executor `ex` of `options` under `root`, that runs `submits`;
 * `signal` sends it a signal once it has started, and resolves once it has exited.
 */
function startDriver(
  root: string,
  options: { cores?: number; gracePeriod: number },
  submits: string,
): { signal: (signal: NodeJS.Signals) => Promise<void> } {
  const driverFile = join(root, 'driver.pid');
  const script = join(root, 'driver.ts');
  writeFileSync(
    script,
    `import { executable, executor, launch, memoryStore, openWorkflow } from 'scalems';
     import { processes } from 'scalems/node';
     require('node:fs').writeFileSync(${JSON.stringify(driverFile)}, String(process.pid));
     void (async () => {
       const wf = await openWorkflow({ store: memoryStore() });
       const ex = executor(launch(wf, processes({ root: ${JSON.stringify(root)}, ...${JSON.stringify(options)} })));
       ${submits}
     })();`,
  );
  const driver = spawn('npx', ['tsx', '--tsconfig', join(process.cwd(), 'tsconfig.json'), script], {
    stdio: 'ignore',
  });
  return {
    signal: async (signal) => {
      const driverPid = Number(textOf(driverFile));
      expect(driverPid).toBeGreaterThan(0); // 0 would signal this process's whole group
      process.kill(driverPid, signal);
      await new Promise((resolve) => driver.once('exit', resolve));
    },
  };
}

function textOf(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8') || undefined;
  } catch {
    return undefined;
  }
}

/** The live processes whose working directory is `dir`. */
function processesIn(dir: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid <= 0) continue;
    try {
      if (readlinkSync(`/proc/${pid}/cwd`) === dir && alive([pid]).length === 1) found.push(pid);
    } catch {
      // gone, or not ours to read
    }
  }
  return found;
}

/** The first attempt's working directory of a task of the workflow 'wf' (see setup()). */
function workdirOf(root: string, id: string): string {
  return join(root, 'wf', 'tasks', id, 'attempt-1');
}

describe('processes(): the spawner', () => {
  it('killed -9 mid-run: its running and waiting attempts fail with WorkerCrashedError, nothing of them is left, and the next attempts run', async () => {
    const before = spawnersOf();
    const { root, rt, ex } = await setup({ gracePeriod: 0.3, cores: 1 });
    const running = ex.submit(executable(STUBBORN));
    const pids = await waitFor(
      () => pidsIn(join(workdirOf(root, running.id), 'stdout'), 3),
      'the first program to report its pids',
    );
    // waits in the spawner for the one core, its files made
    const waiting = ex.submit(executable(['bash', '-c', 'echo $$ > started; sleep 100']));
    await waitFor(() => (existsSync(join(workdirOf(root, waiting.id), 'stdout')) ? true : undefined), 'its files');
    const [spawner] = spawnersOf().filter((pid) => !before.includes(pid));
    process.kill(spawner!, 'SIGKILL');
    for (const t of [running, waiting]) {
      await expect(t).rejects.toThrow(WorkerCrashedError);
      await expect(t).rejects.toThrow(/spawner .* died \(signal SIGKILL\)/);
    }
    // the next attempts start another spawner
    const next = await ex.submit(executable(['bash', '-c', 'echo again']));
    expect(readFileSync(next.stdout.$file, 'utf8')).toBe('again\n');
    const others = spawnersOf().filter((pid) => !before.includes(pid));
    expect(others).toHaveLength(1);
    expect(others).not.toContain(spawner);
    await rt.shutdown();
    expect(alive(pids)).toEqual([]);
    expect(alive(others)).toEqual([]);
    expect(existsSync(join(workdirOf(root, waiting.id), 'started'))).toBe(false); // it never ran
  });

  it('four one-core attempts per core are handed over ahead, their files made while the core is busy; the next waits', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 0.3, cores: 1 });
    const first = ex.submit(executable(['bash', '-c', 'echo $$; sleep 100']));
    await waitFor(() => pidsIn(join(workdirOf(root, first.id), 'stdout'), 1), 'the first program to start');
    const ahead = [1, 2, 3, 4].map((i) => ex.submit(executable(['echo', String(i)])));
    const beyond = ex.submit(executable(['echo', 'beyond']));
    const made = (): true | undefined =>
      ahead.every((t) => existsSync(join(workdirOf(root, t.id), 'stdout'))) ? true : undefined;
    await waitFor(made, 'the files of the four attempts ahead');
    expect(existsSync(join(root, 'wf', 'tasks', beyond.id))).toBe(false); // not handed over: the core and 4 are taken
    first.cancel('enough');
    await expect(first).rejects.toThrow(TaskCancelledError);
    const out = await Promise.all([...ahead, beyond].map(async (t) => readFileSync((await t).stdout.$file, 'utf8')));
    expect(out).toEqual(['1\n', '2\n', '3\n', '4\n', 'beyond\n']);
    await rt.shutdown();
  });

  it('an attempt cancelled while it waits in the spawner for cores never starts, and the cores go to the next', async () => {
    const { root, rt, ex } = await setup({ gracePeriod: 0.3, cores: 1 });
    const first = ex.submit(executable(['bash', '-c', 'echo $$; sleep 100']));
    await waitFor(() => pidsIn(join(workdirOf(root, first.id), 'stdout'), 1), 'the first program to start');
    const second = ex.submit(executable(['bash', '-c', 'echo $$ > started; sleep 100']));
    const third = ex.submit(executable(['bash', '-c', 'echo third']));
    await waitFor(() => (existsSync(join(workdirOf(root, second.id), 'stdout')) ? true : undefined), 'its files');
    second.cancel('not needed');
    await expect(second).rejects.toThrow(TaskCancelledError);
    first.cancel('enough');
    await expect(first).rejects.toThrow(TaskCancelledError);
    expect(readFileSync((await third).stdout.$file, 'utf8')).toBe('third\n');
    expect(existsSync(join(workdirOf(root, second.id), 'started'))).toBe(false);
    await rt.shutdown();
  });

  it.each([
    ['ended by the signal', 'sleep 100'],
    ['exiting 0 on SIGTERM', "trap 'exit 0' TERM; sleep 100 & wait"],
  ])(
    'cancelling a running program (%s) and those waiting behind it, in one go, starts none of those waiting',
    async (_, body) => {
      const { root, rt, ex } = await setup({ gracePeriod: 0.3, cores: 1 });
      const marks = join(root, 'marks');
      const member = (i: number): TaskSpec<ExecutableResult> =>
        executable(['bash', '-c', `echo ${i} >> ${marks}; ${body}`]);
      const running = ex.submit(member(0));
      await waitFor(() => (existsSync(marks) ? true : undefined), 'the first program to start');
      const waiting = [1, 2, 3, 4].map((i) => ex.submit(member(i)));
      const made = (): true | undefined =>
        waiting.every((t) => existsSync(join(workdirOf(root, t.id), 'stdout'))) ? true : undefined;
      await waitFor(made, 'the files of the four attempts waiting in the spawner');
      // as a pipeline's teardown does: in the order submitted, the running one first
      for (const t of [running, ...waiting]) t.cancel('enough');
      for (const t of [running, ...waiting]) await expect(t).rejects.toThrow(TaskCancelledError);
      await rt.shutdown();
      // before, each LEAVE (and the exit of the one ended) gave the core to the next one waiting: all five ran
      expect(readFileSync(marks, 'utf8')).toBe('0\n');
    },
  );
});
