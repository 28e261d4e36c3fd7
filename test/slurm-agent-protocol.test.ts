// The driver and the agents of slurm() without Slurm: the real agent entry started by a stand-in for srun
// (test/fixtures/slurm/fake-srun.sh: nodes fake1, fake2 on this host), the real AgentPool, and peers that are not
// agents. What Slurm adds (the step, node failure by slurmd) is tested in test/slurm-agents.test.ts.
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Observable, firstValueFrom } from 'rxjs';
import { AgentProtocolError, NodeFailureError, UnknownTaskError, UnsatisfiableRequirementsError } from 'scalems';
import type { AttemptData } from '../src/runtime/remote/attempt-data';
import { runAgent } from '../src/runtime/slurm/agent';
import {
  decodeLine,
  AgentMessage,
  LAYOUT_VARIABLE,
  formatLayout,
  line,
  lineReader,
  MAX_LINE_BYTES,
} from '../src/runtime/slurm/agent-protocol';
import { AgentPool } from '../src/runtime/slurm/agents';
import { agentCommand } from '../src/runtime/slurm/on-agents';
import { parentOf, spawnerOfProgram, spawnersOf } from './support/work';

const MODULE = join(__dirname, 'fixtures', 'slurm', 'tasks.ts');
const FAKE_SRUN = join(__dirname, 'fixtures', 'slurm', 'fake-srun.sh');
const LAYOUT = new Map([
  ['fake1', 2],
  ['fake2', 2],
]);

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};

async function until<T>(probe: () => T | undefined | false): Promise<T> {
  for (;;) {
    const v = probe();
    if (v !== undefined && v !== false) return v;
    await sleep(25);
  }
}

function fn(name: string, args: unknown[], id: string): AttemptData {
  return { kind: 'function', name, args, id, attempt: 1, requirements: {} };
}

/** An attempt of `sh -c <script>`, its working directory under `<dir>/wf`. */
function sh(script: string, id: string, dir: string): AttemptData {
  return {
    kind: 'executable',
    name: 'sh',
    id,
    attempt: 1,
    requirements: {},
    args: [{ argv: ['sh', '-c', script] }],
    place: { workflowDir: join(dir, 'wf'), hostCwd: dir, staging: 'copy', grace: 1 },
  };
}

/** A pool of agents that logs nothing, started by the stand-in srun (see `startAgents`). */
const quietPool = (): AgentPool =>
  new AgentPool({
    where: 'test executor',
    host: '127.0.0.1',
    log: { info: () => undefined, warn: () => undefined },
    memoryOf: () => Infinity,
    srun: FAKE_SRUN,
  });

/** Starts the pool's agents, one per node of `layout`, each given its cores as slurm() gives them (on-agents.ts). */
async function startAgents(pool: AgentPool, layout: Map<string, number>, modules: string[]): Promise<void> {
  const env = { ...process.env, [LAYOUT_VARIABLE]: formatLayout(layout) };
  await pool.start('0', layout, agentCommand(modules, process.execPath), env, process.cwd());
}

describe('slurm() agents, with a stand-in for srun', () => {
  let pool: AgentPool;
  let dir: string;
  const warnings: string[] = [];

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-agents-'));
    pool = new AgentPool({
      where: 'test executor',
      host: '127.0.0.1',
      log: { info: () => undefined, warn: (l) => warnings.push(l) },
      memoryOf: () => Infinity,
      srun: FAKE_SRUN,
    });
    // the agents' cores, as slurm() gives them (on-agents.ts)
    const env = { ...process.env, [LAYOUT_VARIABLE]: formatLayout(LAYOUT) };
    await pool.start('0', LAYOUT, agentCommand([MODULE], process.execPath), env, process.cwd());
  }, 60_000);

  afterAll(async () => {
    await pool.close();
  });

  it('starts one agent per node, each offering the cores the layout gives it', () => {
    const nodes = pool.nodes().map((n) => [n.node, n.capacity.cores]);
    expect(nodes.sort()).toEqual([
      ['fake1', 2],
      ['fake2', 2],
    ]);
  });

  it('places attempts where they fit, over both nodes, and returns their values', async () => {
    const runs = Array.from({ length: 8 }, (_, i) =>
      firstValueFrom(
        pool.attempt({ cores: 1, gpus: 0, memoryMB: 0 }, `w${i}`, fn('slurm.whereAmI', [200], `w${i}`), undefined),
      ),
    );
    const where = (await Promise.all(runs)) as Array<{ node: string }>;
    expect(new Set(where.map((w) => w.node))).toEqual(new Set(['fake1', 'fake2']));
    const sum = await firstValueFrom(
      pool.attempt({ cores: 1, gpus: 0, memoryMB: 0 }, 's', fn('slurm.add', [2, 3], 's'), undefined),
    );
    expect(sum).toMatchObject({ sum: 5 });
  });

  it('never places more than a node has: 2-core attempts run one per node at a time', async () => {
    const marks = join(dir, 'wide');
    const runs = Array.from({ length: 4 }, (_, i) =>
      firstValueFrom(
        pool.attempt(
          { cores: 2, gpus: 0, memoryMB: 0 },
          `wide${i}`,
          sh(
            `echo "+ $SLURMD_NODENAME" >> ${marks}; sleep 0.3; echo "- $SLURMD_NODENAME" >> ${marks}`,
            `wide${i}`,
            dir,
          ),
          undefined,
        ),
      ),
    );
    await Promise.all(runs);
    // per node, starts and ends alternate: never two at once on one node
    const lines = readFileSync(marks, 'utf8').trim().split('\n');
    for (const node of ['fake1', 'fake2']) {
      const mine = lines.filter((l) => l.endsWith(node)).map((l) => l[0]);
      expect(mine.join('')).toMatch(/^(\+-)+$/);
    }
  });

  it('gives the nodes of a stopped job step of its own back only once the step has ended', async () => {
    let stepped = false;
    let ended!: () => void;
    const step = new Observable<unknown>(() => {
      stepped = true;
      return () => undefined;
    });
    const wide = pool
      .wide(
        4,
        { cores: 4, gpus: 0, memoryMB: 0 },
        (_placement, holdUntil) =>
          // as runStep does: stopped while it runs, it says when Slurm has ended it
          new Observable<unknown>((subscriber) => {
            const work = step.subscribe(subscriber);
            return () => {
              work.unsubscribe();
              holdUntil(new Promise<void>((resolve) => (ended = resolve)));
            };
          }),
      )
      .subscribe();
    await until(() => stepped);
    wide.unsubscribe();
    let done = false;
    const after = firstValueFrom(
      pool.attempt({ cores: 1, gpus: 0, memoryMB: 0 }, 'after-wide', fn('slurm.add', [1, 2], 'after-wide'), undefined),
    ).then((v) => ((done = true), v));
    await sleep(500);
    expect(done).toBe(false);
    ended();
    await expect(after).resolves.toMatchObject({ sum: 3 });
  });

  it('fails at once what fits no node, naming the figures', async () => {
    const err = await firstValueFrom(
      pool.attempt({ cores: 3, gpus: 0, memoryMB: 0 }, 'big', fn('slurm.add', [1, 1], 'big'), undefined),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnsatisfiableRequirementsError);
    expect((err as Error).message).toMatch(/needs 3 cores on one node.*fake1: 2 cores, fake2: 2 cores/);
  });

  it('an unknown task name on an agent is UnknownTaskError naming the agent and its modules', async () => {
    const err = await firstValueFrom(
      pool.attempt({ cores: 1, gpus: 0, memoryMB: 0 }, 'u', fn('no.such.task', [], 'u'), undefined),
    ).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(UnknownTaskError);
    expect((err as Error).message).toMatch(/the Slurm agent on node fake\d.*tasks\.ts/);
  });

  it('refuses a peer without the token, one that speaks before hello, and garbage; logs each', async () => {
    const { host, port } = await pool.address();
    const closes = async (send: string): Promise<void> => {
      const s = connect({ host, port });
      await new Promise((r) => s.once('connect', r));
      s.write(send);
      await new Promise((r) => s.once('close', r));
    };
    const hello = { t: 'hello', node: 'evil', pid: 1, cores: 64, memoryMB: 0, gpus: 0 };
    await closes(line({ ...hello, token: 'guess' } as never));
    await closes(line({ t: 'beat' }));
    await closes('GET / HTTP/1.1\r\n\r\n\n');
    expect(warnings.join('\n')).toMatch(
      /AgentProtocolError: refused a connection.*did not present the allocation token/,
    );
    expect(warnings.join('\n')).toMatch(/refused a connection.*spoke \(beat\) before saying hello/);
    expect(warnings.join('\n')).toMatch(/refused a connection.*not JSON/);
    expect(pool.nodes().map((n) => n.node)).not.toContain('evil');
  });

  it('an agent killed -9 fails its attempts with NodeFailureError at once; its programs do not outlive it', async () => {
    const pidFile = join(dir, 'orphan.pid');
    const victim = pool.nodes().find((n) => n.node === 'fake2')!;
    const run = firstValueFrom(
      pool.attempt(
        { cores: 1, gpus: 0, memoryMB: 0 },
        'orphan',
        sh(`echo $$ > ${pidFile}; exec sleep 60`, 'orphan', dir),
        'fake2', // (where its input files would be)
      ),
    ).catch((e: unknown) => e);
    const pid = await until(() => existsSync(pidFile) && Number(readFileSync(pidFile, 'utf8')));
    const started = Date.now();
    process.kill(victim.pid, 'SIGKILL');
    const err = await run;
    expect(err).toBeInstanceOf(NodeFailureError);
    expect((err as NodeFailureError).node).toBe('fake2');
    expect(Date.now() - started).toBeLessThan(3000); // the connection closes: no need to wait for heartbeats
    await until(() => !alive(pid)); // its watchdog ends what it started (the test's timeout bounds the wait)
    expect(pool.nodes().map((n) => n.node)).toEqual(['fake1']);
    // what fits only the lost node's size still runs on the one left
    const after = await firstValueFrom(
      pool.attempt({ cores: 1, gpus: 0, memoryMB: 0 }, 'a', fn('slurm.whereAmI', [0], 'a'), undefined),
    );
    expect(after).toMatchObject({ node: 'fake1' });
  }, 20_000);
});

describe('an agent started without modules, with a stand-in for srun', () => {
  it('runs its programs from a spawner per core; killed -9, it leaves none of them running', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-programs-'));
    const pool = quietPool();
    try {
      await startAgents(pool, new Map([['fake1', 2]]), []);
      const agent = pool.nodes()[0]!;
      const pidFiles = [0, 1].map((i) => join(dir, `p${i}.pid`));
      const runs = pidFiles.map((file, i) =>
        firstValueFrom(
          pool.attempt(
            { cores: 1, gpus: 0, memoryMB: 0 },
            `p${i}`,
            sh(`echo $$ > ${file}; exec sleep 60`, `p${i}`, dir),
            undefined,
          ),
        ).catch((e: unknown) => e),
      );
      const pids = await Promise.all(
        pidFiles.map((f) => until(() => existsSync(f) && Number(readFileSync(f, 'utf8')))),
      );
      // each program was started by a spawner of the agent's (through its forker, where it was built), one per core
      const spawners = pids.map((pid) => spawnerOfProgram(pid) ?? -1); // -1: gone, which fails below
      expect(new Set(spawners).size).toBe(2);
      for (const s of spawners) expect(parentOf(s)).toBe(agent.pid);
      process.kill(agent.pid, 'SIGKILL');
      for (const err of await Promise.all(runs)) expect(err).toBeInstanceOf(NodeFailureError);
      // each spawner is a watchdog too: the programs do not outlive the agent
      await until(() => pids.every((pid) => !alive(pid)));
    } finally {
      await pool.close();
    }
  }, 30_000);
});

describe.each([
  ['with modules (the cores held in its gate)', [MODULE]],
  ['without modules (the cores held in its spawners)', []],
])('an attempt waiting at an agent %s', (_, modules: string[]) => {
  it('moves to a node whose core frees, instead of waiting behind a long program', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agents-move-'));
    const pool = quietPool();
    const one = { cores: 1, gpus: 0, memoryMB: 0 };
    const release = (name: string): string => join(dir, `${name}.go`);
    /** a program that runs until its file is made, then says where it ran */
    const held = (name: string, node: string): Promise<unknown> =>
      firstValueFrom(
        pool.attempt(
          one,
          name,
          sh(`while [ ! -e ${release(name)} ]; do sleep 0.05; done; echo $SLURMD_NODENAME`, name, dir),
          node,
        ),
      );
    try {
      await startAgents(
        pool,
        new Map([
          ['fake1', 1],
          ['fake2', 1],
        ]),
        modules,
      );
      const programs = new Map(['fake1', 'fake2'].map((node) => [node, held(node, node)]));
      await until(() => pool.nodes().every((n) => n.free.cores === 0));
      // both cores are taken: it is sent ahead, to wait for a core at one of the nodes
      const marks = join(dir, 'waiting.out');
      const waiting = firstValueFrom(
        pool.attempt(one, 'waiting', sh(`echo $SLURMD_NODENAME > ${marks}`, 'waiting', dir), undefined, true),
      );
      const behind = await until(() => pool.nodes().find((n) => n.free.cores === -1)?.node);
      const other = behind === 'fake1' ? 'fake2' : 'fake1';
      writeFileSync(release(other), '');
      await programs.get(other);
      // the other node's core is free: the waiting attempt is withdrawn and runs there, the long one still running
      const stuck = sleep(10_000).then(() => {
        throw new Error(`the waiting attempt did not move: it still waits on ${behind} behind a long program`);
      });
      await Promise.race([waiting, stuck]);
      expect(readFileSync(marks, 'utf8').trim()).toBe(other);
      expect(existsSync(release(behind))).toBe(false);
      const free = new Map(pool.nodes().map((n) => [n.node, n.free.cores]));
      expect([free.get(behind), free.get(other)]).toEqual([0, 1]);
      writeFileSync(release(behind), '');
      await programs.get(behind);
    } finally {
      await pool.close();
    }
  }, 30_000);
});

describe('the agent, with a stand-in driver', () => {
  /** A driver socket that takes one agent; resolves with it and the messages it sends. */
  async function driver(): Promise<{
    port: number;
    agent: Promise<{ socket: Socket; messages: AgentMessage[]; next(t: string): Promise<AgentMessage> }>;
    close(): void;
  }> {
    let take!: (v: { socket: Socket; messages: AgentMessage[]; next(t: string): Promise<AgentMessage> }) => void;
    const agent = new Promise<{ socket: Socket; messages: AgentMessage[]; next(t: string): Promise<AgentMessage> }>(
      (r) => (take = r),
    );
    const server = createServer((socket) => {
      const messages: AgentMessage[] = [];
      const waiters: Array<() => void> = [];
      socket.on(
        'data',
        lineReader(
          (text) => {
            messages.push(decodeLine(AgentMessage, text, 'agent'));
            for (const w of waiters.splice(0)) w();
          },
          () => undefined,
        ),
      );
      const next = async (t: string): Promise<AgentMessage> => {
        for (;;) {
          const found = messages.find((m) => m.t === t);
          if (found !== undefined) {
            messages.splice(messages.indexOf(found), 1);
            return found;
          }
          await new Promise<void>((r) => waiters.push(r));
        }
      };
      take({ socket, messages, next });
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const port = (server.address() as { port: number }).port;
    return { port, agent, close: () => server.close() };
  }

  const options = (port: number, cores = 1) => ({
    host: '127.0.0.1',
    port,
    token: 'secret',
    node: 'n9',
    modules: [MODULE],
    cores,
    memoryMB: 0,
    gpus: 0,
    log: () => undefined,
    health: async () => undefined,
  });

  /** An agent of one core (or `cores`) connected to a stand-in driver, past its hello. */
  async function connected(cores = 1) {
    const d = await driver();
    const exited = runAgent(options(d.port, cores));
    const agent = await d.agent;
    await agent.next('hello');
    return { d, exited, ...agent };
  }

  /** Takes the agent's one core with a function that runs until stopped (`blocker`); `marker` says it ended. */
  async function occupy(socket: Socket, marker: string): Promise<void> {
    socket.write(line({ t: 'run', key: 'blocker', data: fn('slurm.waitForCancel', [60_000, marker], 'blocker') }));
    await until(() => existsSync(`${marker}.started`));
  }

  /** Says bye to a `connected` agent, which exits 0; closes the stand-in driver, and removes `dir`. */
  async function farewell(c: { d: { close(): void }; exited: Promise<number>; socket: Socket }, dir: string) {
    c.socket.write(line({ t: 'bye' }));
    expect(await c.exited).toBe(0);
    c.d.close();
    rmSync(dir, { recursive: true, force: true });
  }

  const cancel = (socket: Socket, key: string): boolean =>
    socket.write(line({ t: 'stop', key, reason: { name: 'TaskCancelledError', message: 'cancelled by a test' } }));

  it('says hello with the token, runs what it is sent, refuses unknown names and malformed attempts', async () => {
    const d = await driver();
    const exited = runAgent(options(d.port));
    const { socket, next } = await d.agent;
    expect(await next('hello')).toMatchObject({ t: 'hello', token: 'secret', node: 'n9', cores: 1 });
    socket.write(line({ t: 'run', key: 'k1', data: fn('slurm.add', [40, 2], 't1') }));
    expect(await next('done')).toMatchObject({ t: 'done', key: 'k1', ok: true, value: { sum: 42 } });
    socket.write(line({ t: 'run', key: 'k2', data: fn('nope', [], 't2') }));
    expect(await next('done')).toMatchObject({ key: 'k2', ok: false, error: { name: 'UnknownTaskError' } });
    socket.write(line({ t: 'run', key: 'k3', data: { kind: 'function', name: 7 } }));
    const bad = await next('done');
    expect(bad).toMatchObject({ key: 'k3', ok: false, error: { name: 'InvalidTaskDescriptionError' } });
    expect((bad as { error: { message: string } }).error.message).toMatch(/the attempt k3 sent to the Slurm agent/);
    socket.write(line({ t: 'run', key: 'k4', data: { ...fn('x', [], 't4'), kind: 'executable' } }));
    expect(await next('done')).toMatchObject({
      key: 'k4',
      ok: false,
      error: { message: expect.stringMatching(/place/) },
    });
    // a value JSON would change (a Map) fails its attempt here, not arriving as {} at the driver
    socket.write(line({ t: 'run', key: 'k5', data: fn('slurm.badResult', [], 't5') }));
    expect(await next('done')).toMatchObject({ key: 'k5', ok: false, error: { name: 'UnserializableValueError' } });
    socket.write(line({ t: 'bye' }));
    expect(await exited).toBe(0);
    d.close();
  }, 30_000);

  it('withdraws, when asked, an attempt that waits for its core: it never runs there; one that runs goes on', async () => {
    const { d, exited, socket, next, messages } = await connected();
    await occupy(socket, join(mkdtempSync(join(tmpdir(), 'scalems-agent-')), 'm'));
    // the node's one core is taken: 'q' waits for it
    socket.write(line({ t: 'run', key: 'q', data: fn('slurm.add', [1, 2], 'q') }));
    socket.write(line({ t: 'withdraw', key: 'q' }));
    expect(await next('withdrawn')).toEqual({ t: 'withdrawn', key: 'q', ok: true });
    socket.write(line({ t: 'withdraw', key: 'blocker' }));
    expect(await next('withdrawn')).toEqual({ t: 'withdrawn', key: 'blocker', ok: false });
    socket.write(line({ t: 'withdraw', key: 'nothing-by-that-key' }));
    expect(await next('withdrawn')).toEqual({ t: 'withdrawn', key: 'nothing-by-that-key', ok: false });
    // the core frees: had 'q' still waited, it would run now, before 'k'
    cancel(socket, 'blocker');
    expect(await next('done')).toMatchObject({ key: 'blocker', ok: false });
    socket.write(line({ t: 'run', key: 'k', data: fn('slurm.add', [2, 3], 'k') }));
    expect(await next('done')).toMatchObject({ key: 'k', ok: true, value: { sum: 5 } });
    expect(messages.filter((m) => m.t === 'done')).toEqual([]);
    socket.write(line({ t: 'bye' }));
    expect(await exited).toBe(0);
    d.close();
  }, 30_000);

  /**
   * Attempts that log their turns to `<dir>/turns` (`s <name>` as each starts, `e <name>` as it ends): a program
   * (`p…`) or a function (`f…`) of 50 ms, or a program that holds its core until `<dir>/<wait>` exists.
   */
  function turnsOf(socket: Socket) {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agent-turns-'));
    const log = join(dir, 'turns');
    const run = (name: string, wait?: string): void => {
      const hold = wait !== undefined ? `while [ ! -e ${join(dir, wait)} ]; do sleep 0.02; done;` : 'sleep 0.05;';
      const data = name.startsWith('f')
        ? fn('slurm.logTurn', [log, name, 50], name)
        : sh(`echo s ${name} >> ${log}; ${hold} echo e ${name} >> ${log}`, name, dir);
      socket.write(line({ t: 'run', key: name, data }));
    };
    const logged = (): string[] => (existsSync(log) ? readFileSync(log, 'utf8').trim().split('\n') : []);
    return { dir, run, logged };
  }

  it('runs programs and functions on its one core one at a time, in the order sent, programs starting on exits', async () => {
    const agent = await connected();
    const { socket, next, messages } = agent;
    const { dir, run, logged } = turnsOf(socket);
    const turns = (names: string[]): string[] => names.flatMap((n) => [`s ${n}`, `e ${n}`]);
    run('p0', 'release');
    await until(() => logged().length > 0);
    // behind it: programs named to the spawner start on the exit before them; a function at the head stops that,
    // and never finds its core taken
    const order = ['p1', 'p2', 'f1', 'p3', 'p4', 'f2', 'p5', 'p6'];
    for (const name of order) run(name);
    writeFileSync(join(dir, 'release'), '');
    for (const name of ['p0', ...order]) expect(await next('done')).toMatchObject({ key: name, ok: true });
    expect(logged()).toEqual(turns(['p0', ...order]));
    // a program named while it waits, withdrawn: dropped (it never runs here), and the next takes its place
    run('p7', 'release7');
    await until(() => logged().includes('s p7'));
    run('p8');
    socket.write(line({ t: 'withdraw', key: 'p8' }));
    expect(await next('withdrawn')).toEqual({ t: 'withdrawn', key: 'p8', ok: true });
    run('p9');
    writeFileSync(join(dir, 'release7'), '');
    for (const name of ['p7', 'p9']) expect(await next('done')).toMatchObject({ key: name, ok: true });
    expect(logged()).toEqual(turns(['p0', ...order, 'p7', 'p9']));
    expect(messages.filter((m) => m.t === 'done')).toEqual([]);
    await farewell(agent, dir);
  }, 30_000);

  it('with two cores (a spawner each, programs starting on exits in both): never more than two at once', async () => {
    const agent = await connected(2);
    const { socket, next } = agent;
    const { dir, run, logged } = turnsOf(socket);
    run('p0', 'release');
    run('q0', 'release');
    await until(() => logged().length === 2);
    const order = ['p1', 'p2', 'p3', 'f1', 'p4', 'p5', 'p6', 'p7', 'f2', 'p8', 'p9', 'p10', 'p11'];
    for (const name of order) run(name);
    writeFileSync(join(dir, 'release'), '');
    for (let i = 0; i < order.length + 2; i++) expect(await next('done')).toMatchObject({ ok: true });
    // (a function's turn is logged from its thread, which starts late the first time: its core was granted before)
    const lines = logged();
    let now = 0;
    let most = 0;
    for (const l of lines) {
      now += l.startsWith('s ') ? 1 : -1;
      most = Math.max(most, now);
    }
    expect(most).toBe(2);
    const started = lines.filter((l) => l.startsWith('s ')).map((l) => l.slice(2));
    expect([...started].sort()).toEqual(['p0', 'q0', ...order].sort());
    await farewell(agent, dir);
  }, 30_000);

  it('answers a withdrawal of an attempt still staging its inputs only once that is over', async () => {
    const agent = await connected();
    const { socket, next } = agent;
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agent-staging-'));
    await occupy(socket, join(dir, 'm'));
    // an input to copy into the attempt's directory: long enough to be under way when the withdrawal comes
    const big = join(dir, 'big.dat');
    const size = 64 * 1024 * 1024;
    writeFileSync(big, Buffer.alloc(size, 1));
    const staged = { ...sh('true', 'staged', dir), args: [{ argv: ['true'], inputs: { 'big.dat': big } }] };
    socket.write(line({ t: 'run', key: 'q', data: staged }));
    socket.write(line({ t: 'withdraw', key: 'q' }));
    expect(await next('withdrawn')).toEqual({ t: 'withdrawn', key: 'q', ok: true });
    // the copy was over when the answer came: the driver may make the directory afresh on another node (the same
    // directory, on a shared file system) without this one writing into it afterwards
    const copy = join(dir, 'wf', 'tasks', 'staged', 'attempt-1', 'big.dat');
    expect(statSync(copy).size).toBe(size);
    cancel(socket, 'blocker');
    await next('done');
    await farewell(agent, dir);
  }, 30_000);

  it('a program stopped before its spawner said it started keeps its core until it has exited', async () => {
    const agent = await connected();
    const { socket, next } = agent;
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agent-unknown-start-'));
    const before = new Set(spawnersOf());
    socket.write(line({ t: 'run', key: 'warm', data: sh('true', 'warm', dir) }));
    expect(await next('done')).toMatchObject({ key: 'warm', ok: true });
    const [spawner] = spawnersOf().filter((pid) => !before.has(pid));
    // held (SIGSTOP) before it reads the start: stopped meanwhile, the program is not known to have started; it then
    // starts, ignores SIGTERM, and ends at the SIGKILL after its grace of 1 s
    process.kill(spawner!, 'SIGSTOP');
    try {
      socket.write(
        line({ t: 'run', key: 'first', data: sh(`echo $$ > pid; trap "" TERM; sleep 100 & wait`, 'first', dir) }),
      );
      await sleep(300);
      cancel(socket, 'first');
      const pid = `$(cat ${dir}/wf/tasks/first/attempt-1/pid)`;
      const check = `sleep 0.3; { kill -0 ${pid} 2>/dev/null && echo beside || echo alone; }`;
      socket.write(line({ t: 'run', key: 'next', data: sh(`${check} > ${dir}/seen`, 'next', dir) }));
      await sleep(300);
    } finally {
      process.kill(spawner!, 'SIGCONT');
    }
    const done = [await next('done'), await next('done')];
    expect(done).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 'first', ok: false }),
        expect.objectContaining({ key: 'next', ok: true }),
      ]),
    );
    expect(readFileSync(join(dir, 'seen'), 'utf8').trim()).toBe('alone');
    await farewell(agent, dir);
  }, 30_000);

  it('a function stopped while it runs keeps its core until its thread has ended it', async () => {
    const agent = await connected();
    const { socket, next } = agent;
    const dir = mkdtempSync(join(tmpdir(), 'scalems-agent-function-stop-'));
    const beat = join(dir, 'beat');
    socket.write(line({ t: 'run', key: 'f', data: fn('slurm.ignoreCancel', [beat, 60_000], 'f') }));
    await until(() => existsSync(beat));
    // waiting for the core; once it starts, whether the function still beats (it does until its thread is ended,
    // a second after the stop)
    const check = `a=$(cat ${beat}); sleep 0.3; [ "$a" = "$(cat ${beat})" ] && echo alone || echo beside`;
    socket.write(line({ t: 'run', key: 'next', data: sh(`{ ${check}; } > ${dir}/seen`, 'next', dir) }));
    await sleep(200);
    cancel(socket, 'f');
    const done = [await next('done'), await next('done')];
    expect(done).toEqual(
      expect.arrayContaining([
        expect.objectContaining({ key: 'f', ok: false }),
        expect.objectContaining({ key: 'next', ok: true }),
      ]),
    );
    expect(readFileSync(join(dir, 'seen'), 'utf8').trim()).toBe('alone');
    await farewell(agent, dir);
  }, 30_000);

  it('stops an attempt when told, and ends when the driver says something it does not know', async () => {
    const { d, exited, socket } = await connected();
    const marker = join(mkdtempSync(join(tmpdir(), 'scalems-agent-')), 'm');
    await occupy(socket, marker);
    cancel(socket, 'blocker');
    await until(() => existsSync(marker));
    expect(readFileSync(marker, 'utf8')).toMatch(/TaskCancelledError: cancelled by a test/);
    socket.write('{"t":"launch-missiles"}\n');
    expect(await exited).toBe(2);
    d.close();
  }, 30_000);

  it('ends its work and exits when the driver goes', async () => {
    const d = await driver();
    const exited = runAgent(options(d.port));
    const { socket, next } = await d.agent;
    await next('hello');
    const pidFile = join(mkdtempSync(join(tmpdir(), 'scalems-agent-')), 'pid');
    const wf = join(tmpdir(), `scalems-agent-wf-${process.pid}`);
    socket.write(
      line({
        t: 'run',
        key: 'p',
        data: {
          kind: 'executable',
          name: 'sh',
          id: 'p',
          attempt: 1,
          requirements: {},
          args: [{ argv: ['sh', '-c', `echo $$ > ${pidFile}; exec sleep 60`] }],
          place: { workflowDir: wf, hostCwd: tmpdir(), staging: 'copy', grace: 1 },
        },
      }),
    );
    const pid = await until(() => existsSync(pidFile) && Number(readFileSync(pidFile, 'utf8')));
    socket.destroy();
    expect(await exited).toBe(1);
    expect(alive(pid)).toBe(false);
    d.close();
  }, 30_000);
});

describe('the agent protocol', () => {
  it('refuses what is not its messages with AgentProtocolError', () => {
    expect(() => decodeLine(AgentMessage, 'nope', 'x')).toThrow(AgentProtocolError);
    expect(() => decodeLine(AgentMessage, '{"t":"done","key":1}', 'x')).toThrow(/message this version does not know/);
    expect(decodeLine(AgentMessage, '{"t":"beat"}', 'x')).toEqual({ t: 'beat' });
  });

  it('splits lines across chunks, and refuses a line longer than the limit', () => {
    const lines: string[] = [];
    const errors: Error[] = [];
    const read = lineReader(
      (l) => lines.push(l),
      (e) => errors.push(e),
    );
    read(Buffer.from('{"a":'));
    read(Buffer.from('1}\n{"b":2}\n{"c"'));
    read(Buffer.from(':3}\n'));
    expect(lines).toEqual(['{"a":1}', '{"b":2}', '{"c":3}']);
    const big = Buffer.alloc(1024 * 1024, 97);
    for (let i = 0; i <= MAX_LINE_BYTES / big.length; i++) read(big);
    expect(errors[0]).toBeInstanceOf(AgentProtocolError);
  });
});
