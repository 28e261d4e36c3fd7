// slurm() on its agents (the default mode), on the real test cluster of two nodes (scripts/start-services.sh): one
// agent per node started once as one job step, tasks placed on the nodes where they fit (and where their input files
// are), and what happens when a node fails or the driver is killed.
import { execFile, execFileSync, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import {
  FunctionVersionError,
  NodeFailureError,
  SlurmAllocationError,
  executable,
  executor,
  launch,
  memoryStore,
  openWorkflow,
  outputOf,
  type DefinedTask,
  type Executor,
  type Runtime,
  type TaskEvent,
  type Workflow,
} from 'scalems';
import { readText, slurm } from 'scalems/node';
import { readRecords } from '../src/cli/locate';
import { describeWithService, holdNodes, killSlurmd, restartSlurmd, slurmNodes } from './support/services';
import { editableTaskModule, overlapProbe, spawnersOf } from './support/work';
import * as tasks from './fixtures/slurm/tasks';

const MODULE = join(__dirname, 'fixtures', 'slurm', 'tasks.ts');
const DRIVER = join(__dirname, 'fixtures', 'slurm', 'agents-driver.ts');
const NO_SHUTDOWN = join(__dirname, 'fixtures', 'slurm', 'agents-no-shutdown.ts');

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until<T>(probe: () => T | undefined | false): Promise<T> {
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    await sleep(100);
  }
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'latin1');
  } catch {
    return undefined;
  }
}

/** Running agents on this machine, with their node (SLURMD_NODENAME of their environment). */
function agents(): Array<{ pid: number; node: string }> {
  const found: Array<{ pid: number; node: string }> = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || !(read(`/proc/${pid}/cmdline`) ?? '').includes('agent-entry')) continue;
    const node = /(?:^|\0)SLURMD_NODENAME=([^\0]*)/.exec(read(`/proc/${pid}/environ`) ?? '')?.[1];
    if (node !== undefined) found.push({ pid, node });
  }
  return found;
}

/** Steps of a job in squeue, as `<step id>|<name>`. */
function steps(jobId: string): string[] {
  try {
    return execFileSync('squeue', ['-h', '-s', '-j', jobId, '-o', '%i|%j'], { encoding: 'utf8' })
      .split('\n')
      .filter(Boolean);
  } catch {
    return [];
  }
}

function jobsNamed(suffix: string): string[] {
  return execFileSync('squeue', ['-h', '-o', '%i|%j'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.endsWith(suffix));
}

const alive = (pid: number): boolean => existsSync(`/proc/${pid}`) && !/\) Z /.test(read(`/proc/${pid}/stat`) ?? '');

describeWithService('slurm', 'slurm() agents on the two-node test cluster', () => {
  let wf: Workflow;
  let rt: Runtime;
  let ex: Executor;
  let root: string;

  beforeEach(async () => {
    root = mkdtempSync(join(tmpdir(), 'scalems-agents-'));
    wf = await openWorkflow({ name: 'agents-test', store: memoryStore() });
    rt = launch(wf, slurm({ modules: [MODULE], root, nodes: 2, gracePeriod: 0.5, address: '127.0.0.1' }));
    ex = executor(rt, { worker: { cores: 4, nodes: 2 } });
  });

  afterEach(async () => {
    await rt.shutdown();
  }, 60_000);

  it('runs functions and programs on both nodes through one agents step, not a step per task', async () => {
    const fns = Array.from({ length: 8 }, (_, i) => ex.submit(tasks.whereAmI, 300 + i)); // (8 tasks, not one)
    const progs = Array.from({ length: 8 }, (_, i) =>
      ex.submit(executable(['sh', '-c', 'sleep 0.3; echo $SLURMD_NODENAME'], { key: `p${i}` })),
    );
    // an MPI program of 2 ranks that fits one node: the agent's mpirun starts its ranks there
    const mpi = ex.submit(
      executable(['sh', '-c', 'echo "rank $OMPI_COMM_WORLD_RANK on $SLURMD_NODENAME"'], { requirements: { ranks: 2 } }),
    );
    const job = await until(() => jobsNamed(`-${process.pid}`)[0]?.split('|')[0]);
    const seen = new Set<string>();
    const sample = setInterval(() => steps(job).forEach((s) => seen.add(s.split('|')[1]!)), 100);
    const whereFns = (await Promise.all(fns)).map((r) => r.node);
    const whereProgs = await Promise.all(progs.map(async (p) => (await readText((await p).stdout)).trim()));
    clearInterval(sample);
    expect(new Set(whereFns)).toEqual(new Set(['n1', 'n2']));
    expect(new Set(whereProgs)).toEqual(new Set(['n1', 'n2']));
    const ranks = (await readText((await mpi).stdout)).trim().split('\n').sort();
    expect(ranks).toHaveLength(2);
    expect(ranks[0]).toMatch(/^rank 0 on (n1|n2)$/);
    expect(ranks[1]!.split(' on ')[1]).toBe(ranks[0]!.split(' on ')[1]); // one node
    expect([...seen]).toEqual(['scalems-agents']);
    expect(
      agents()
        .map((a) => a.node)
        .sort(),
    ).toEqual(['n1', 'n2']);
  }, 120_000);

  it('a program waiting behind a long one at one node moves to the other node once a core frees there', async () => {
    // each program holds its core until its node's file is made; four of them fill both nodes' cores
    const started = join(root, 'started');
    const hold = `echo >> ${started}; while [ ! -e ${root}/$SLURMD_NODENAME.go ]; do sleep 0.05; done`;
    const held = Array.from({ length: 4 }, (_, i) => ex.submit(executable(['sh', '-c', hold], { key: `held${i}` })));
    await until(() => (read(started) ?? '').length === 4);
    // four more, handed ahead of a free core to wait at the nodes' agents, two at each
    const short = Array.from({ length: 4 }, (_, i) =>
      ex.submit(executable(['sh', '-c', 'echo $SLURMD_NODENAME'], { key: `short${i}` })),
    );
    await until(() => short.every((t) => t.state === 'running'));
    await sleep(200);
    // n2's cores free: its two run there, then n1's two are withdrawn from n1 and run on n2, n1 still held
    execFileSync('touch', [join(root, 'n2.go')]);
    try {
      const stuck = sleep(20_000).then(() => {
        throw new Error('the programs sent ahead to n1 still wait there, behind the held ones, while n2 idles');
      });
      const done = Promise.all(short.map(async (t) => (await readText((await t).stdout)).trim()));
      expect(await Promise.race([done, stuck])).toEqual(['n2', 'n2', 'n2', 'n2']);
      // n2's two held ones settle (their outcome may come after the shorts'); n1's two still run
      const running = (): number => held.filter((t) => t.state === 'running').length;
      await until(() => running() <= 2);
      expect(running()).toBe(2);
    } finally {
      execFileSync('touch', [join(root, 'n1.go')]);
    }
    await Promise.all(held);
  }, 60_000);

  it('runs a task where the files of the upstream task it reads are', async () => {
    // as many as the executor's cores: each downstream task finds the core its upstream freed
    const ups = Array.from({ length: 4 }, (_, i) =>
      ex.submit(
        executable(['sh', '-c', 'sleep 0.2; echo $SLURMD_NODENAME > made; echo $SLURMD_NODENAME'], {
          outputs: ['made'],
          key: `up-${i}`,
        }),
      ),
    );
    const downs = ups.map((up) =>
      ex.submit(executable(['sh', '-c', 'cat in; echo $SLURMD_NODENAME'], { inputs: { in: outputOf(up, 'made') } })),
    );
    const pairs = (await Promise.all(
      downs.map(async (d) => (await readText((await d).stdout)).trim().split('\n')),
    )) as [string, string][];
    for (const [made, ran] of pairs) expect(ran).toBe(made);
    expect(new Set(pairs.map((p) => p[0]))).toEqual(new Set(['n1', 'n2']));
  }, 120_000);

  it('a node whose slurmd dies: its attempts fail with NodeFailureError within seconds and run again on the other', async () => {
    const marks = mkdtempSync(join(tmpdir(), 'scalems-agents-nodes-'));
    const runs = Array.from({ length: 4 }, (_, i) =>
      ex.submit(
        executable(['sh', '-c', `echo "$$ $SLURMD_NODENAME" >> ${join(marks, `m${i}`)}; exec sleep 4`], {
          key: `n${i}`,
          requirements: { retries: { max: 1, backoff: 0 } },
        }),
      ),
    );
    // all four started: two on each node
    const first = await until(() => {
      const lines = [0, 1, 2, 3].map((i) => read(join(marks, `m${i}`))?.trim());
      return lines.every((l) => l !== undefined) && (lines as string[]).map((l) => l.split(' '));
    });
    const onN2 = first.filter(([, node]) => node === 'n2');
    expect(onN2).toHaveLength(2);
    const retried: TaskEvent[] = [];
    const watching = wf.events$.subscribe((e) => e.type === 'retrying' && retried.push(e));
    const killedAt = Date.now();
    await killSlurmd('n2');
    try {
      const results = await Promise.all(runs);
      expect(results.every((r) => r.exitCode === 0)).toBe(true);
      for (let i = 0; i < 4; i++) {
        const lines = read(join(marks, `m${i}`))!
          .trim()
          .split('\n');
        const retry = retried.find((e) => e.id === runs[i]!.id);
        if (lines[0]!.endsWith('n2')) {
          // failed over: a NodeFailureError within seconds (before the program's own 4 s), then a second attempt on n1
          expect(lines).toHaveLength(2);
          expect(lines[1]).toMatch(/ n1$/);
          expect(retry).toMatchObject({ error: { name: NodeFailureError.name, code: 'NODE_FAILURE' } });
          expect(retry!.time - killedAt).toBeLessThan(4000);
        } else {
          expect(lines).toHaveLength(1);
          expect(retry).toBeUndefined();
        }
      }
      // the programs on n2 were ended by its agent, not left to run out
      for (const [pid] of onN2) expect(alive(Number(pid))).toBe(false);
      expect(agents().map((a) => a.node)).toEqual(['n1']);
    } finally {
      watching.unsubscribe();
      await restartSlurmd('n2');
    }
    expect(slurmNodes().find((n) => n.name === 'n2')!.state).toMatch(/^(idle|mixed|allocated|completing)$/);
  }, 180_000);
});

describeWithService('slurm', 'slurm() agents when the driver is killed', () => {
  it('SIGKILL of the driver: the allocation, the agents and their programs end within seconds; a resume runs only the unfinished', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-kill-'));
    const [state, log] = [join(dir, 'state.sqlite'), join(dir, 'log')];
    const run = (): ReturnType<typeof spawn> =>
      spawn(process.execPath, ['--require', 'tsx/cjs', DRIVER, state, join(dir, 'root'), log, '12'], {
        stdio: ['ignore', 'pipe', 'pipe'],
        cwd: join(__dirname, '..'),
      });
    const first = run();
    // kill it once the store holds some members as done while others run
    const succeeded = async (): Promise<Array<string | undefined>> =>
      existsSync(state) ? (await readRecords(state)).filter((r) => r.state === 'succeeded').map((r) => r.key) : [];
    while ((await succeeded()).length < 2) await sleep(100);
    const before = agents();
    expect(before.length).toBeGreaterThan(0);
    first.kill('SIGKILL');
    await until(() => jobsNamed(`-${first.pid}`).length === 0 && agents().length === 0);
    await noSallocLeft(`-${first.pid}`); // its salloc exits too (it once spun in wait4 for good)
    // nothing of the members is left running: no sleep of theirs
    const sleeping = execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' }).split('\n');
    expect(sleeping.filter((a) => a.includes(log))).toEqual([]);
    // what the store holds as done when the driver died must not run again; everything else runs to the end
    const done = await succeeded();
    const second = run();
    const code = await new Promise((r) => second.once('close', r));
    expect(code).toBe(0);
    const starts = (read(log) ?? '').split('\n').filter((l) => l.startsWith('start'));
    for (let n = 0; n < 12; n++) {
      const count = starts.filter((l) => l.split(' ')[1] === String(n)).length;
      if (done.includes(`member-${n}`)) expect(count).toBe(1);
      else expect(count).toBeGreaterThanOrEqual(1);
    }
  }, 180_000);
});

describeWithService('slurm', 'slurm() when the driver is killed while its allocation waits in the queue', () => {
  it('SIGKILL of the driver: its pending request leaves the queue within seconds, not once it is granted', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-pending-kill-'));
    // a job of someone else holds every CPU of both nodes: the driver's allocation waits behind it
    const blockerName = `blocker-${process.pid}-pending`;
    const blocker = await holdNodes(blockerName, ['-N2', '-n4']);
    try {
      const driver = spawn(
        process.execPath,
        ['--require', 'tsx/cjs', DRIVER, join(dir, 'state.sqlite'), join(dir, 'root'), join(dir, 'log'), '2'],
        { stdio: ['ignore', 'pipe', 'pipe'], cwd: join(__dirname, '..') },
      );
      const name = `-${driver.pid}`;
      await until(() => state(name) === 'PENDING');
      driver.kill('SIGKILL');
      const killedAt = Date.now();
      await until(() => jobsNamed(name).length === 0 || Date.now() - killedAt > 10_000);
      expect(jobsNamed(name)).toEqual([]); // withdrawn while the blocker still runs
      expect(state(blockerName)).toBe('RUNNING');
      await noSallocLeft(name);
    } finally {
      await blocker.release();
    }
  }, 120_000);
});

/** Waits up to 10 s for every salloc of a job named `...<suffix>` to have exited; then there must be none. */
async function noSallocLeft(suffix: string): Promise<void> {
  const left = (): string[] =>
    readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map((pid) => (read(`/proc/${pid}/cmdline`) ?? '').split('\0'))
      .filter((argv) => argv[0] === 'salloc' && argv.some((a) => a.endsWith(suffix)))
      .map((argv) => argv.join(' '));
  const deadline = Date.now() + 10_000;
  await until(() => left().length === 0 || Date.now() > deadline);
  expect(left()).toEqual([]);
}

/** Slurm's state of the (first) job whose name ends with `suffix`. */
function state(suffix: string): string | undefined {
  const line = execFileSync('squeue', ['-h', '-o', '%j|%T'], { encoding: 'utf8' })
    .split('\n')
    .find((l) => l.split('|')[0]!.endsWith(suffix));
  return line?.split('|')[1];
}

describeWithService('slurm', 'slurm() agents and the life of the program', () => {
  it('a program that ends without shutting down waits for its tasks on the agents, then exits by itself', async () => {
    const root = mkdtempSync(join(tmpdir(), 'scalems-agents-exit-'));
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', NO_SHUTDOWN, root], {
      stdio: ['ignore', 'pipe', 'pipe'],
      cwd: join(__dirname, '..'),
    });
    let out = '';
    child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
    const code = await new Promise((r) => child.once('close', r));
    expect(out.trim()).toBe('on a node done');
    expect(code).toBe(0);
    await until(() => jobsNamed(`-${child.pid}`).length === 0 && agents().length === 0);
  }, 120_000);
});

describeWithService('slurm', 'slurm() agents without modules: programs only', () => {
  it('an agent that runs no functions holds its cores in a spawner per core: never more programs than cores', async () => {
    const wf = await openWorkflow({ name: 'agents-programs-only', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-agents-programs-'));
    const rt = launch(wf, slurm({ root, gracePeriod: 0.5, address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 2, nodes: 1 } });
      const script = 'echo "$(date +%s%N)"; sleep 0.4; echo "$(date +%s%N)"';
      const runs = Array.from({ length: 6 }, (_, i) => ex.submit(executable(['sh', '-c', script], { key: `s${i}` })));
      // the agent's spawners, counted while its programs run: one per core (a host with functions keeps one)
      let spawners = 0;
      const sample = setInterval(() => {
        for (const a of agents()) spawners = Math.max(spawners, spawnersOf(a.pid).length);
      }, 50);
      const spans = await Promise.all(
        runs.map(async (r) => (await readText((await r).stdout)).trim().split('\n').map(BigInt) as [bigint, bigint]),
      );
      clearInterval(sample);
      expect(spawners).toBe(2);
      // the cores are held in those spawners: at no program's start were more than 2 running
      const overlaps = spans.map(([start]) => spans.filter(([s, e]) => s <= start && start < e).length);
      expect(Math.max(...overlaps)).toBe(2);
    } finally {
      await rt.shutdown();
    }
  }, 120_000);

  it('the allocation ended under its tasks: each fails, none succeeds without a result', async () => {
    // the agents, SIGTERMed by Slurm, were interrupted: their spawners dropped the programs waiting there (and the
    // retries sent to them), and each was told to the driver as a success with no result, stored and served later
    const wf = await openWorkflow({ name: 'agents-cancelled', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-agents-cancelled-'));
    const rt = launch(wf, slurm({ root, gracePeriod: 0.5, address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 4, nodes: 2 }, task: { retries: 2 } });
      const members = Array.from({ length: 6 }, (_, i) =>
        ex.submit(executable(['sh', '-c', `touch ${root}/m${i}; sleep 60`], { key: `cancelled-${i}` })),
      );
      await until(() => readdirSync(root).filter((f) => f.startsWith('m')).length >= 4);
      const [job] = jobsNamed(`-${process.pid}`);
      execFileSync('scancel', [job!.split('|')[0]!]);
      const settled = await Promise.allSettled(members);
      expect(settled.map((s) => s.status)).toEqual(Array(6).fill('rejected'));
      expect(wf.state.counts.succeeded).toBe(0);
      // said as the allocation's end, with Slurm's state, as in mode 'steps' (not as agents that crashed)
      for (const s of settled) {
        const reason = (s as PromiseRejectedResult).reason as SlurmAllocationError;
        expect(reason).toBeInstanceOf(SlurmAllocationError);
        expect(reason.state).toBe('CANCELLED');
      }
    } finally {
      await rt.shutdown();
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);

  it('one agent interrupted (SIGTERM) while the allocation lives: its attempts run on the other node', async () => {
    // the interrupted agent lived on for a few seconds, failing at once every attempt sent to it meanwhile, retries
    // included: four of six tasks used up their retries while the other node idled
    const wf = await openWorkflow({ name: 'agents-term', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-agents-term-'));
    const rt = launch(wf, slurm({ root, gracePeriod: 0.5, address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 4, nodes: 2 }, task: { retries: 1 } });
      const members = Array.from({ length: 6 }, (_, i) =>
        ex.submit(executable(['sh', '-c', `touch ${root}/m${i}; sleep 2`], { key: `term-${i}` })),
      );
      await until(() => readdirSync(root).filter((f) => f.startsWith('m')).length >= 4);
      const [one] = agents();
      process.kill(one!.pid, 'SIGTERM');
      const settled = await Promise.allSettled(members);
      expect(settled.map((s) => (s.status === 'rejected' ? (s.reason as Error).message : s.status))).toEqual(
        Array(6).fill('fulfilled'),
      );
    } finally {
      await rt.shutdown();
      rmSync(root, { recursive: true, force: true });
    }
  }, 120_000);

  it('a task module edited after the driver loaded it, before the agents load it: not run as other code', async () => {
    // (an allocation may be granted hours after the driver started; a task's identity is its code as the driver has it)
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-edited-'));
    const file = join(dir, 'edited.js');
    const module = editableTaskModule(file, 'agents-edited.prep');
    module.write('v1');
    const { prep } = require(file) as { prep: DefinedTask<(n: number) => { code: string; n: number }> };
    const wf = await openWorkflow({ name: 'agents-edited', store: memoryStore() });
    const rt = launch(wf, slurm({ modules: [file], root: dir, address: '127.0.0.1' }));
    try {
      module.write('v2');
      const task = executor(rt, { worker: { cores: 1, nodes: 1 } }).submit(prep, 7);
      await expect(task).rejects.toThrow(FunctionVersionError);
      await expect(task).rejects.toThrow(/edited\.js changed after the program that submits its tasks loaded it/);
    } finally {
      await rt.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);

  it.each(['agents', 'steps'] as const)(
    'a module that defines tasks reached through another, edited before the %s load it: not run as other code',
    async (mode) => {
      // only the listed module's digest was compared: its tasks' code, in a file it re-exports, ran as edited under
      // the identity of the code the driver has (the driver now also gives the digests of the files that define tasks)
      const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-reexported-'));
      const index = join(dir, 'index.js');
      writeFileSync(index, "module.exports = require('./impl.js');\n");
      const module = editableTaskModule(join(dir, 'impl.js'), `reexported-${mode}.prep`);
      module.write('v1');
      const { prep } = require(index) as { prep: DefinedTask<(n: number) => { code: string; n: number }> };
      const wf = await openWorkflow({ name: `reexported-${mode}`, store: memoryStore() });
      const rt = launch(wf, slurm({ modules: [index], root: dir, address: '127.0.0.1', mode }));
      try {
        module.write('v2');
        const task = executor(rt, { worker: { cores: 1, nodes: 1 } }).submit(prep, 7);
        await expect(task).rejects.toThrow(FunctionVersionError);
        await expect(task).rejects.toThrow(/impl\.js, which defines tasks, changed after the program that submits/);
      } finally {
        await rt.shutdown();
        rmSync(dir, { recursive: true, force: true });
      }
    },
    120_000,
  );

  it('a retry after a walltime starts only once the agent has ended the first attempt’s tree', async () => {
    const wf = await openWorkflow({ name: 'agents-retry', store: memoryStore() });
    const root = mkdtempSync(join(tmpdir(), 'scalems-agents-retry-'));
    const rt = launch(wf, slurm({ root, gracePeriod: 2, address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 1, nodes: 1 } });
      // sent to the node while the first still held its core there, the retry would wait for it with its walltime
      // running, and never run
      const probe = overlapProbe(root);
      const t = ex.submit(executable(['bash', '-c', probe.script], { requirements: { walltime: 1, retries: 1 } }));
      await expect(t).rejects.toThrow(/exceeded its walltime/);
      expect(t.record?.attempts).toBe(2);
      await rt.shutdown();
      expect(probe.runs()).toEqual(['alone', 'alone']);
    } finally {
      await rt.shutdown();
    }
  }, 120_000);
});

describeWithService(['slurm', 'mpi'], 'slurm() agents: where a task wider than any node of the allocation goes', () => {
  it('a first task that fits no node of the allocation (1 core on each of 2) runs as a step over both', async () => {
    const wf = await openWorkflow({ name: 'agents-wide-first', store: memoryStore() });
    const rt = launch(wf, slurm({ root: mkdtempSync(join(tmpdir(), 'scalems-agents-wide-')), address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 2, nodes: 2 } });
      const run = await ex.submit(
        executable(['sh', '-c', 'echo "rank $OMPI_COMM_WORLD_RANK on $SLURMD_NODENAME"'], {
          requirements: { ranks: 2 },
        }),
      );
      const lines = (await readText(run.stdout)).trim().split('\n').sort();
      expect(lines).toEqual(['rank 0 on n1', 'rank 1 on n2']);
    } finally {
      await rt.shutdown();
    }
  }, 120_000);
});

describeWithService('slurm', 'slurm() agents: a stopped task of its own step', () => {
  it('the nodes of a wide step stopped at its walltime take no agent work until Slurm has ended the step', async () => {
    const wf = await openWorkflow({ name: 'agents-wide-stop', store: memoryStore() });
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-wide-stop-'));
    const rt = launch(wf, slurm({ root: dir, gracePeriod: 2, launcher: 'srun', address: '127.0.0.1' }));
    try {
      const ex = executor(rt, { worker: { cores: 2, nodes: 2 } });
      // both ranks ignore SIGTERM: the step ends only at the SIGKILL after its 2 s of grace
      const wide = ex.submit(
        executable(['bash', '-c', `echo $$ > ${dir}/rank.$SLURM_PROCID; trap "" TERM; sleep 100 & wait`], {
          requirements: { ranks: 2, walltime: 1 },
        }),
      );
      const ranks = (): string[] => ['0', '1'].map((r) => read(join(dir, `rank.${r}`))?.trim() ?? '');
      await until(() => ranks().every((pid) => pid !== ''));
      // queued behind the step, for the agents' one core on each node
      const check = `for p in ${ranks().join(' ')}; do kill -0 $p 2>/dev/null && echo beside && exit; done; echo alone`;
      const after = [0, 1].map((i) => ex.submit(executable(['sh', '-c', check], { key: `after${i}` })));
      await expect(wide).rejects.toThrow(/exceeded its walltime/);
      const seen = await Promise.all(after.map(async (t) => (await readText((await t).stdout)).trim()));
      expect(seen).toEqual(['alone', 'alone']);
    } finally {
      await rt.shutdown();
      rmSync(dir, { recursive: true, force: true });
    }
  }, 120_000);
});

describeWithService(['slurm', 'mpi'], 'examples/slurm-ensemble.ts on the agents', () => {
  it('runs a mixed ensemble as a user would: members on both nodes, scored by functions, a 4-rank MPI program over both', async () => {
    const root = join(__dirname, '..');
    const cwd = mkdtempSync(join(tmpdir(), 'scalems-slurm-ensemble-'));
    const { stdout } = await promisify(execFile)(
      join(root, 'node_modules', '.bin', 'tsx'),
      ['--tsconfig', join(root, 'tsconfig.json'), join(root, 'examples', 'slurm-ensemble.ts'), '8'],
      { cwd, timeout: 150_000 },
    );
    expect(stdout).toMatch(/^members by node: n1 [1-7], n2 [1-7]$/m);
    expect(stdout).toContain('scores: 1 4 9 16 25 36 49 64');
    expect(stdout).toContain('mpi-4: 4 ranks, sum of 1..4 = 10');
    expect(stdout).toContain('tasks by state: succeeded 18');
  }, 180_000);
});
