// bullmq() beyond the conformance suite (test/backends.test.ts): which worker may take a task, faults
// against real Redis and real worker processes (a worker killed mid-task, the driver killed and restarted,
// Redis restarted or gone), bad jobs, and credentials. Tests that stop Redis run a redis-server of their own.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { Queue, QueueEvents } from 'bullmq';
import {
  BackendUnavailableError,
  FunctionVersionError,
  InvalidOptionsError,
  InvalidTaskDescriptionError,
  UnknownTaskError,
  call,
  defineTask,
  executable,
  executor,
  launch,
  memoryStore,
  openWorkflow,
  type Runtime,
  type Store,
  type Task,
  type TaskSpec,
  type TaskRecord,
} from 'scalems';
import { ScalemsWorker, bullmq, readText, sqliteStore } from 'scalems/node';
import { main } from '../src/cli/main';
import { readRecords } from '../src/cli/locate';
import { reviveError } from '../src/recorded-error';
import { decodeFailure } from '../src/runtime/bullmq/protocol';
import { pid, slowSquare } from './fixtures/bullmq/tasks';
import { REDIS_URL, cleanPrefix, jobsIn, startWorker, uniquePrefix, type WorkerProcess } from './support/bullmq';
import { describeWithService, redisPing } from './support/services';
import { isAlive, readSpans, waitFor } from './support/work';
import * as conformance from './fixtures/conformance/tasks';
import { echo } from './fixtures/threads/versioned';

const MODULE = join(__dirname, 'fixtures', 'bullmq', 'tasks.ts');
const VERSIONED = join(__dirname, 'fixtures', 'threads', 'versioned.ts');
const CONFORMANCE = join(__dirname, 'fixtures', 'conformance', 'tasks.ts');
const DRIVER = join(__dirname, 'fixtures', 'bullmq', 'driver.ts');
const SHUTDOWN_DRIVER = join(__dirname, 'fixtures', 'bullmq', 'shutdown-driver.ts');
const TSX = require.resolve('tsx/cjs');
const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** `<i> <pid> <attempt>` lines of a slowSquare log. */
function runs(log: string): Array<{ i: number; pid: number; attempt: number }> {
  if (!existsSync(log)) return [];
  return readFileSync(log, 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => {
      const [i, p, a] = line.split(' ').map(Number);
      return { i: i!, pid: p!, attempt: a! };
    });
}

/** A free TCP port on 127.0.0.1. */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** A redis-server of this test's own (persisting every write, so that a restart loses nothing). */
class OwnRedis {
  private child: ChildProcess | undefined;
  constructor(
    readonly port: number,
    private readonly dir: string,
    private readonly extra: readonly string[] = [],
  ) {}

  async start(): Promise<void> {
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--dir',
        this.dir,
        '--appendonly',
        'yes',
        '--appendfsync',
        'always',
        '--save',
        '',
        ...this.extra,
      ],
      { stdio: 'ignore' },
    );
    this.child = child;
    const deadline = Date.now() + 10_000;
    for (;;) {
      const reply = await redisPing('127.0.0.1', this.port, 500).catch((e: Error) => e.message);
      if (reply === '+PONG' || reply.startsWith('-NOAUTH')) return;
      if (Date.now() > deadline) throw new Error(`redis-server on port ${this.port} did not start: ${reply}`);
      await sleep(50);
    }
  }

  async stop(): Promise<void> {
    const child = this.child;
    this.child = undefined;
    if (child === undefined || child.exitCode !== null) return;
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    await exited;
  }
}

describeWithService('redis', 'bullmq() with scalems worker processes', () => {
  let dir: string;
  let prefix: string;
  let workers: WorkerProcess[];
  let runtimes: Runtime[];
  let submitted: Array<Task<unknown>>;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-bullmq-'));
    prefix = uniquePrefix('bullmq');
    workers = [];
    runtimes = [];
    submitted = [];
  });

  afterEach(async () => {
    for (const t of submitted) t.cancel('the test is over');
    await Promise.all(runtimes.map((rt) => rt.shutdown()));
    await Promise.all(workers.map((w) => w.stop('SIGKILL')));
    await cleanPrefix(prefix).catch(() => undefined);
    rmSync(dir, { recursive: true, force: true });
  }, 60_000);

  async function worker(options: Omit<Parameters<typeof startWorker>[0], 'prefix'>) {
    const w = await startWorker({ prefix, modules: [MODULE, CONFORMANCE], ...options });
    workers.push(w);
    return w;
  }

  async function open(options: Parameters<typeof bullmq>[0] = {}, store: Store = memoryStore()) {
    const wf = await openWorkflow({ store, name: 'faults' });
    const rt = launch(wf, bullmq({ prefix, root: join(dir, 'root'), ...options }));
    runtimes.push(rt);
    const ex = executor(rt);
    // what a failed test leaves waiting (a task no worker fits) must not hold up the shutdown
    const submit = ex.submit.bind(ex) as (spec: TaskSpec) => Task<unknown>;
    ex.submit = ((spec: TaskSpec) => {
      const t = submit(spec);
      submitted.push(t);
      return t;
    }) as typeof ex.submit;
    return { wf, rt, ex };
  }

  describe('ScalemsWorker, the worker as a class', () => {
    test('takes a redis:// URL, as bullmq() does, and runs programs; bad options are refused before it connects', async () => {
      // before: a URL, no cores, NaN lockDuration and an unknown key were all taken; null was a raw TypeError
      for (const [options, why] of [
        [{ connection: REDIS_URL, prefix }, /ScalemsWorker.start\(\{ cores \}\): the cores this worker offers/],
        [{ connection: REDIS_URL, prefix, cores: 1, lockDuration: NaN }, /lockDuration \}\): expected a number/],
        [{ connection: REDIS_URL, prefix, cores: 1, cpus: 2 }, /\{ cpus \}\): unknown option/],
        [{ connection: 5, prefix, cores: 1 }, /connection \}\): expected a redis:\/\/ URL or a connection object/],
        [null, /ScalemsWorker.start\(options\): expected an object, got null/],
      ] as const) {
        const refused = ScalemsWorker.start(options as never);
        await expect(refused).rejects.toThrow(InvalidOptionsError);
        await expect(refused).rejects.toThrow(why);
      }
      const w = await ScalemsWorker.start({ connection: REDIS_URL, prefix, cores: 1 });
      try {
        const { ex } = await open();
        const run = await ex.submit(executable(['echo', 'from the class']));
        expect(await readText(run.stdout)).toBe('from the class\n');
      } finally {
        await w.close();
      }
    });

    test('a worker whose function has another version is named in the FunctionVersionError, with its host', async () => {
      // it said "a threads() worker has version ...": not which of the workers to restart
      const stale = await worker({ cores: 1, modules: [VERSIONED], env: { SCALEMS_TEST_ECHO_VERSION: 'two' } });
      const { ex } = await open();
      const task = ex.submit(echo, 5); // this process has version "one"
      await expect(task).rejects.toThrow(FunctionVersionError);
      const where = `a thread of worker ${stale.name} \\(on host ${hostname()}, pid ${stale.child.pid}\\)`;
      await expect(task).rejects.toThrow(new RegExp(`version "one".*but ${where} has version "two"`));
    });
  });

  describe('which worker takes a task', () => {
    test('a task goes only to a worker whose declared capacity fits it; one that fits no live worker waits (scalems status says why), then runs on a worker that fits', async () => {
      const small = await worker({ cores: 1 });
      const big = await worker({ cores: 3 });
      const { ex } = await open({}, sqliteStore(join(dir, 'faults', 'state.sqlite')));
      const pids = await Promise.all(
        range(4).map((i) => ex.submit({ ...call(pid), key: `wide-${i}`, requirements: { coresPerRank: 3 } })),
      );
      expect(new Set(pids)).toEqual(new Set([big.child.pid]));
      const narrow = await Promise.all(range(8).map((i) => ex.submit({ ...call(pid), key: `narrow-${i}` })));
      expect(narrow.every((p) => p === small.child.pid || p === big.child.pid)).toBe(true);

      const huge = ex.submit({ ...call(pid), key: 'huge', requirements: { coresPerRank: 6 } });
      await sleep(1500);
      expect(huge.state).toBe('running'); // handed to the backend, but no worker may take it
      expect(await jobsIn(prefix, ['waiting'])).toEqual([expect.stringMatching(/^tasks\.c6\.g0\.m0 /)]);
      const out: string[] = [];
      const io = {
        stdout: { write: (t: string) => out.push(t) },
        stderr: { write: (t: string) => out.push(t) },
        cwd: dir,
      };
      expect(await main(['status', join(dir, 'faults'), '--redis', REDIS_URL, '--prefix', prefix], io)).toBe(0);
      const status = out.join('');
      expect(status).toMatch(/running\s+1\b/);
      expect(status).toMatch(new RegExp(`live workers:\\n    w-`));
      expect(status).toMatch(
        new RegExp(`\\n    ${small.name}  \\(.*, pid ${small.child.pid}\\)  offers 1 cores, 0 GPUs, 0 MB;`),
      );
      expect(status).toMatch(
        new RegExp(`\\n    ${big.name}  \\(.*, pid ${big.child.pid}\\)  offers 3 cores, 0 GPUs, 0 MB;`),
      );
      expect(status).toContain(
        'tasks.c6.g0.m0: 1 waiting, 0 running — they wait: no live worker fits a task of 6 cores, 0 GPUs, 0 MB; ' +
          'live workers offer at most 3 cores, 0 GPUs, 0 MB. Start one: scalems worker --cores 6 ...',
      );
      expect(status).toMatch(/tasks\.c3\.g0\.m0: 0 waiting, 0 running\n/);
      // where no store is (a worker's machine): the queues alone (before: the missing store's error, exit 1)
      const elsewhere = mkdtempSync(join(tmpdir(), 'scalems-no-store-'));
      out.length = 0;
      expect(await main(['status', '--redis', REDIS_URL, '--prefix', prefix], { ...io, cwd: elsewhere })).toBe(0);
      expect(out.join('')).toMatch(/^bullmq queues "tasks" \(prefix "[^"]+"\)[^]*tasks\.c6\.g0\.m0: 1 waiting/);
      rmSync(elsewhere, { recursive: true, force: true });
      const bigger = await worker({ cores: 6 });
      expect(await huge).toBe(bigger.child.pid);
    });

    test('a task asking for a fraction of a MB goes to a worker with that much memory', async () => {
      const w = await startWorker({ prefix, cores: 1, modules: [MODULE], extra: ['--memory', '1000'] });
      workers.push(w);
      const { ex } = await open();
      expect(await ex.submit({ ...call(pid), requirements: { memoryMB: 100.5 } })).toBe(w.child.pid);
    });

    test('a worker never runs more at once than the cores it declared, whatever shapes its tasks have', async () => {
      await worker({ cores: 2 });
      const { ex } = await open();
      const log = join(dir, 'spans.log');
      // 1-core and 2-core tasks mixed, all handed to the worker at once (the executor is unbounded)
      const cores = (i: number): number => (i % 3 === 0 ? 2 : 1);
      await Promise.all(
        range(9).map((i) =>
          ex.submit({ ...call(conformance.span, log, i, 150), requirements: { coresPerRank: cores(i) } }),
        ),
      );
      const spans = [...readSpans(log)].map(([i, { starts, ends }]) => ({ i, start: starts[0]!, end: ends[0]! }));
      expect(spans).toHaveLength(9);
      // the cores in use when each task started
      const busy = spans.map(({ start }) =>
        spans.filter((o) => o.start <= start && start < o.end).reduce((sum, o) => sum + cores(o.i), 0),
      );
      expect(Math.max(...busy)).toBeLessThanOrEqual(2);
    });
  });

  describe('faults', () => {
    test('a worker killed with -9 mid-task: its job goes to another worker after the lock expires, and every result comes back', async () => {
      const a = await worker({ cores: 2, lockDuration: 1500 });
      const b = await worker({ cores: 2, lockDuration: 1500 });
      const { ex } = await open();
      const log = join(dir, 'runs.log');
      const tasks = range(6).map((i) => ex.submit(call(slowSquare, log, i, 1200)));
      const first = await waitFor(() => runs(log)[0], 'a task to start');
      const victim = [a, b].find((w) => w.child.pid === first.pid)!;
      const survivor = victim === a ? b : a;
      const lost = runs(log)
        .filter((r) => r.pid === victim.child.pid)
        .map((r) => r.i);
      await victim.stop('SIGKILL');
      expect(await Promise.all(tasks)).toEqual(range(6).map((i) => i * i));
      // what the dead worker was running ran again, on the other worker, as the same attempt
      for (const i of lost) {
        expect(runs(log).filter((r) => r.i === i && r.pid === survivor.child.pid)).toEqual([
          { i, pid: survivor.child.pid, attempt: 1 },
        ]);
      }
      expect(lost.length).toBeGreaterThan(0);
      expect(tasks.every((t) => t.record?.attempts === 1)).toBe(true);
    }, 60_000);

    test('a worker stopped twice (SIGTERM, SIGTERM) stops its running tasks and puts them back: another worker runs them', async () => {
      const a = await worker({ cores: 1 });
      const { ex } = await open();
      const log = join(dir, 'runs.log');
      const task = ex.submit(call(slowSquare, log, 7, 3000));
      await waitFor(() => runs(log)[0], 'the task to start');
      a.child.kill('SIGTERM');
      await sleep(200);
      await a.stop('SIGTERM');
      expect(a.output()).toContain('stopping them (they go back to the queue)');
      const b = await worker({ cores: 1 });
      expect(await task).toBe(49);
      expect(runs(log).map((r) => r.pid)).toEqual([a.child.pid, b.child.pid]);
    }, 60_000);

    test('the driver killed with -9 and restarted: it resumes, re-attaching to its jobs, and no task recorded as succeeded runs again', async () => {
      await worker({ cores: 2 });
      await worker({ cores: 2 });
      const store = join(dir, 'state.sqlite');
      const log = join(dir, 'runs.log');
      const args = ['--require', TSX, DRIVER, store, prefix, log, '12', '400'];
      const first = spawn(process.execPath, args, { cwd: join(__dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
      // killed once some results are in its store (persisted: what it printed may not be yet)
      const persisted = async (): Promise<TaskRecord[]> =>
        existsSync(store) ? (await readRecords(store)).filter((r) => r.state === 'succeeded') : [];
      const deadline = Date.now() + 60_000;
      while ((await persisted().catch(() => [])).length < 3 && Date.now() < deadline) await sleep(50);
      first.kill('SIGKILL');
      await new Promise((resolve) => first.once('exit', resolve));
      const recorded = await persisted();
      expect(recorded.length).toBeGreaterThanOrEqual(3);
      expect(recorded.length).toBeLessThan(12); // killed mid-run
      const done = new Set(recorded.map((r) => (r.args as unknown[])[1] as number));

      const second = spawn(process.execPath, args, { cwd: join(__dirname, '..'), stdio: ['ignore', 'pipe', 'pipe'] });
      let again = '';
      let errors = '';
      second.stdout!.on('data', (d: Buffer) => (again += d.toString()));
      second.stderr!.on('data', (d: Buffer) => (errors += d.toString()));
      const code = await new Promise((resolve) => second.once('exit', resolve));
      expect({ code, errors }).toEqual({ code: 0, errors: '' });
      expect(again).toContain(`results ${JSON.stringify(range(12).map((i) => i * i))}`);
      const count = (i: number): number => runs(log).filter((r) => r.i === i).length;
      for (const i of done) expect({ i, runs: count(i) }).toEqual({ i, runs: 1 });
      // the tasks in flight when it died were followed in Redis, not added again
      for (const i of range(12)) expect({ i, runs: count(i) }).toEqual({ i, runs: 1 });
    }, 120_000);
  });

  describe('Redis restarted or gone (a redis-server of the test’s own)', () => {
    let redis: OwnRedis;
    beforeEach(async () => {
      redis = new OwnRedis(await freePort(), dir);
      await redis.start();
    });
    afterEach(async () => {
      await Promise.all(workers.map((w) => w.stop('SIGKILL')));
      workers = [];
      await redis.stop();
    });

    test('restarted mid-run: the workflow waits and goes on to every result', async () => {
      const url = `redis://127.0.0.1:${redis.port}`;
      await worker({ cores: 2, redis: url });
      const { ex } = await open({ connection: url });
      const log = join(dir, 'runs.log');
      const tasks = range(8).map((i) => ex.submit(call(slowSquare, log, i, 500)));
      await waitFor(() => runs(log)[0], 'a task to start');
      await redis.stop();
      await sleep(1000);
      await redis.start();
      expect(await Promise.all(tasks)).toEqual(range(8).map((i) => i * i));
    }, 90_000);

    test('restarted empty (no persistence): the driver adds its jobs again and tells workers started since of their queues', async () => {
      await redis.stop();
      redis = new OwnRedis(redis.port, dir, ['--appendonly', 'no']);
      await redis.start();
      const url = `redis://127.0.0.1:${redis.port}`;
      const { ex } = await open({ connection: url });
      const log = join(dir, 'runs.log');
      const tasks = range(3).map((i) => ex.submit(call(slowSquare, log, i, 10)));
      await waitFor(() => (ex.workflow.state.counts.running === 3 ? true : undefined), 'the tasks to be handed over');
      await sleep(500); // in Redis, waiting: there is no worker yet
      await redis.stop();
      await sleep(1000);
      await redis.start(); // empty
      await worker({ cores: 2, redis: url });
      expect(await Promise.all(tasks)).toEqual([0, 1, 4]);
    }, 60_000);

    test('gone for longer than unavailableAfter: the waiting tasks fail with BackendUnavailableError; what succeeded is kept', async () => {
      const url = `redis://127.0.0.1:${redis.port}`;
      await worker({ cores: 2, redis: url });
      const { ex } = await open({ connection: url, unavailableAfter: 1 });
      const log = join(dir, 'runs.log');
      const quick = ex.submit(call(slowSquare, log, 1, 10));
      expect(await quick).toBe(1);
      const slow = ex.submit(call(slowSquare, log, 2, 60_000));
      await waitFor(() => runs(log)[1], 'the slow task to start');
      await redis.stop();
      await expect(slow).rejects.toBeInstanceOf(BackendUnavailableError);
      await expect(slow).rejects.toThrow(/Redis at redis:\/\/127\.0\.0\.1:\d+\/0 is unreachable/);
      expect(quick.state).toBe('succeeded');
    }, 60_000);

    test('a driver whose Redis went away shuts down and exits: nothing of it goes on reconnecting', async () => {
      const url = `redis://127.0.0.1:${redis.port}`;
      const driver = spawn(process.execPath, ['--require', TSX, SHUTDOWN_DRIVER, url, prefix], {
        cwd: join(__dirname, '..'),
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      let out = '';
      driver.stdout!.on('data', (d: Buffer) => (out += d.toString()));
      driver.stderr!.on('data', (d: Buffer) => (out += d.toString()));
      const exited = new Promise<number | null>((resolve) => driver.once('exit', (code) => resolve(code)));
      await waitFor(
        () => (out.includes('handed over') ? true : undefined),
        () => `the driver to hand over: ${out}`,
      );
      await redis.stop();
      driver.stdin!.write('go\n');
      const code = await Promise.race([exited, sleep(15_000).then(() => 'still running 15 s later')]);
      if (code === 'still running 15 s later') driver.kill('SIGKILL');
      expect({ code, out }).toEqual({ code: 0, out: 'handed over\nshut down\n' });
    }, 60_000);

    test('an idle worker whose Redis went away exits on one SIGTERM, saying it closed', async () => {
      const w = await worker({ cores: 1, redis: `redis://127.0.0.1:${redis.port}` });
      await redis.stop();
      await sleep(500);
      // before: it said it was finishing its running tasks (it had none), and waited on BullMQ's connections for good
      const exited = w.stop('SIGTERM').then(() => 'exited');
      expect(await Promise.race([exited, sleep(20_000).then(() => 'still running 20 s later')])).toBe('exited');
      expect(w.output()).toMatch(/SIGTERM, finishing the running tasks\n[^]*: closed\n/);
    }, 60_000);

    test('credentials pass through: a Redis with a password serves a driver and a worker that give it', async () => {
      await redis.stop();
      redis = new OwnRedis(await freePort(), dir, ['--requirepass', 's3cret']);
      await redis.start();
      await worker({ cores: 1, redis: `redis://:s3cret@127.0.0.1:${redis.port}` });
      const { ex } = await open({ connection: { host: '127.0.0.1', port: redis.port, password: 's3cret' } });
      expect(typeof (await ex.submit(call(pid)))).toBe('number');
    }, 60_000);
  });

  describe('bad jobs: a typed error on the task, and the worker stays up', () => {
    const notOnWorkers = defineTask('bullmq.notOnWorkers', (x: number) => x + 1);

    test('a task its worker was not given (no --modules, or not in them) fails with UnknownTaskError', async () => {
      const plain = await worker({ cores: 1, modules: [] });
      const { ex } = await open();
      const err = await ex.submit(call(pid)).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnknownTaskError);
      expect((err as Error).message).toMatch(/started without --modules/);
      const echo = await ex.submit(executable(['sh', '-c', 'echo up']));
      expect(echo.exitCode).toBe(0); // the same worker, still up
      await plain.stop();

      const given = await worker({ cores: 1 });
      const unknown = ex.submit(call(notOnWorkers, 1));
      await expect(unknown).rejects.toThrow(UnknownTaskError);
      await expect(unknown).rejects.toThrow(
        new RegExp(
          `no task named "bullmq.notOnWorkers" is defined by the modules worker ${given.name} was started with`,
        ),
      );
      // (a task of the same identity as the failed one would be that one: a key makes it another)
      expect(await ex.submit({ ...call(pid), key: 'given' })).toBe(given.child.pid);
    });

    test('a malformed job payload fails with InvalidTaskDescriptionError, and the worker goes on', async () => {
      const w = await worker({ cores: 1 });
      const { ex } = await open();
      expect(await ex.submit(call(pid))).toBe(w.child.pid); // the shape queue exists and is served
      const queue = new Queue('tasks.c1.g0.m0', { connection: { host: '127.0.0.1', port: 6379 }, prefix });
      const events = new QueueEvents('tasks.c1.g0.m0', { connection: { host: '127.0.0.1', port: 6379 }, prefix });
      try {
        await events.waitUntilReady();
        const failed = new Promise<string>((resolve) =>
          events.on('failed', ({ jobId, failedReason }) => {
            if (jobId === 'garbage') resolve(failedReason);
          }),
        );
        await queue.add('rm -rf /', { scalems: 1, kind: 'shell', args: 'nope' }, { jobId: 'garbage' });
        const error = reviveError(decodeFailure(await failed)!);
        expect(error).toBeInstanceOf(InvalidTaskDescriptionError);
        expect(error.message).toMatch(/BullMQ job garbage is not a scalems task.*kind/);
      } finally {
        await Promise.all([queue.close(), events.close()]);
      }
      expect(isAlive(w.child.pid!)).toBe(true);
      expect(await ex.submit({ ...call(pid), key: 'after' })).toBe(w.child.pid);
    });
  });
});
