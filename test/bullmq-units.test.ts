// bullmq() parts that need no Redis: options, Redis URLs, no Redis at all, the worker's command line, job data checks,
// the capacity gate of a worker.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import {
  BackendUnavailableError,
  InvalidTaskDescriptionError,
  UnregisteredFunctionError,
  call,
  executor,
  launch,
  memoryStore,
  openWorkflow,
} from 'scalems';
import { bullmq } from 'scalems/node';
import { main } from '../src/cli/main';
import { parseWorkerArgs } from '../src/cli/worker';
import { UsageError } from '../src/cli/command';
import { Gate } from '../src/runtime/bullmq/gate';
import * as conformance from './fixtures/conformance/tasks';
import {
  connectionFromUrl,
  decodeFailure,
  decodeJobData,
  describeConnection,
  encodeFailure,
  parseShapeQueue,
  shapeQueue,
} from '../src/runtime/bullmq/protocol';

describe('Redis URLs', () => {
  test('credentials (percent-encoded), database and TLS pass through as ioredis options', () => {
    expect(connectionFromUrl('rediss://ops:p%40ss@redis.example:6380/2', '--redis')).toEqual({
      host: 'redis.example',
      port: 6380,
      username: 'ops',
      password: 'p@ss',
      db: 2,
      tls: {},
    });
    expect(connectionFromUrl('redis://:secret@10.0.0.5', '--redis')).toEqual({
      host: '10.0.0.5',
      port: 6379,
      password: 'secret',
    });
  });

  test('a URL that is not one, or not redis, or with a bad database, is refused naming the option', () => {
    expect(() => connectionFromUrl('127.0.0.1:6379', '--redis')).toThrow(/--redis: "127.0.0.1:6379" is not a URL/);
    expect(() => connectionFromUrl('http://x', '--redis')).toThrow(/expected a redis:\/\/ or rediss:\/\/ URL/);
    expect(() => connectionFromUrl('redis://x/zero', '--redis')).toThrow(/the database "zero" is not a number/);
  });

  test('messages show where a connection goes, never its password', () => {
    const shown = describeConnection(connectionFromUrl('rediss://u:hunter2@h:1/3', 'x'));
    expect(shown).toBe('rediss://h:1/3');
  });
});

describe('bullmq() options', () => {
  test.each([
    [{ prefix: 'a:b' }, /bullmq\(\{ prefix \}\): expected a name of letters/],
    [{ queue: '' }, /bullmq\(\{ queue \}\)/],
    [{ keepFor: -1 }, /bullmq\(\{ keepFor \}\): expected a non-negative number of seconds/],
    [{ unavailableAfter: Number.NaN }, /unavailableAfter/],
    [{ connection: 'localhost' }, /bullmq\(\{ connection \}\): "localhost" is not a URL/],
  ])('%j is refused', (options, message) => {
    expect(() => bullmq(options)).toThrow(message);
  });

  test('a closure is refused at submit (workers find functions by name), without Redis being touched', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const rt = launch(wf, bullmq({ connection: { host: '127.0.0.1', port: 1 } }));
    const ex = executor(rt);
    const offset = 1;
    expect(() => ex.submit(call((x: number) => x + offset, 1))).toThrow(UnregisteredFunctionError);
    expect(wf.state.tasks.size).toBe(0);
    await rt.shutdown();
  });
});

test('a Redis that cannot be reached at all: tasks fail with BackendUnavailableError after unavailableAfter', async () => {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve)); // nothing listens there now
  const wf = await openWorkflow({ store: memoryStore() });
  const rt = launch(wf, bullmq({ connection: { host: '127.0.0.1', port }, unavailableAfter: 1 }));
  const t = executor(rt).submit(call(conformance.square, 3));
  await expect(t).rejects.toBeInstanceOf(BackendUnavailableError);
  await expect(t).rejects.toThrow(new RegExp(`Redis at redis://127.0.0.1:${port}/0 is unreachable`));
  await rt.shutdown();
}, 30_000);

describe('scalems worker command line', () => {
  test('options become the worker’s; the Redis URL may come from SCALEMS_REDIS_URL', () => {
    const parsed = parseWorkerArgs(
      ['--cores', '4', '--gpus', '1', '--memory', '8192', '--concurrency', '3', '--name', 'n1', '--prefix', 'md'],
      { SCALEMS_REDIS_URL: 'redis://:pw@r:7000' },
    );
    expect(parsed).toMatchObject({
      connection: { host: 'r', port: 7000, password: 'pw' },
      cores: 4,
      gpus: 1,
      memoryMB: 8192,
      concurrency: 3,
      name: 'n1',
      prefix: 'md',
      modules: [],
    });
  });

  test.each([
    [['--cores', '0'], /--cores: expected an integer of at least 1, got "0"/],
    [['--memory', 'lots'], /--memory: expected an integer/],
    [['--redis', 'nope'], /--redis: "nope" is not a URL/],
    [['--modules', '/no/such/module.js'], /module \/no\/such\/module.js not found/],
  ])('%j is a usage error', (args, message) => {
    expect(() => parseWorkerArgs(args, {})).toThrow(UsageError);
    expect(() => parseWorkerArgs(args, {})).toThrow(message);
  });

  test('scalems worker with a bad option exits 2 pointing to --help; --help prints the usage', async () => {
    const out: string[] = [];
    const err: string[] = [];
    const io = {
      stdout: { write: (t: string) => out.push(t) },
      stderr: { write: (t: string) => err.push(t) },
      cwd: '.',
    };
    expect(await main(['worker', '--cores', 'x'], io)).toBe(2);
    expect(err.join('')).toMatch(/scalems worker: --cores: expected an integer.*\n\(see `scalems worker --help`\)/);
    expect(await main(['worker', '--bogus'], io)).toBe(2);
    expect(await main(['worker', '--help'], io)).toBe(0);
    expect(out.join('')).toMatch(/usage: scalems worker --redis <url>/);
  });
});

describe('job data', () => {
  const good = { scalems: 1, kind: 'function', name: 'f', args: [1], id: 'abc', attempt: 1, requirements: {} };

  test('a scalems job passes; a malformed one is an InvalidTaskDescriptionError naming each problem', () => {
    expect(decodeJobData(good, 'j1')).toEqual(good);
    const bad = { ...good, kind: 'shell', attempt: -1, requirements: { cores: 2 } };
    expect(() => decodeJobData(bad, 'j1')).toThrow(InvalidTaskDescriptionError);
    expect(() => decodeJobData(bad, 'j1')).toThrow(/BullMQ job j1 is not a scalems task.*kind.*attempt.*cores/s);
    expect(() => decodeJobData('rm -rf /', 'j2')).toThrow(/BullMQ job j2 is not a scalems task/);
  });

  test('the declared version of the function travels with the job (the worker refuses another)', () => {
    expect(decodeJobData({ ...good, version: 'v2' }, 'j1').version).toBe('v2');
    expect(() => decodeJobData({ ...good, version: 2 }, 'j1')).toThrow(/version/);
  });

  test('a failure travels as the failed reason; a reason of BullMQ’s own is not mistaken for one', () => {
    const recorded = { name: 'ExecutableFailedError', message: 'exit 3', code: 'EXECUTABLE_FAILED' };
    expect(decodeFailure(encodeFailure(recorded))).toEqual(recorded);
    expect(decodeFailure('job stalled more than allowable limit')).toBeUndefined();
    expect(decodeFailure('scalems-error:{not json')).toBeUndefined();
  });

  test('shape queues are named after cores, GPUs and memory, and read back', () => {
    const meeting = { prefix: 'p', queue: 'tasks' };
    const name = shapeQueue(meeting, { cores: 4, gpus: 1, memoryMB: 2048 });
    expect(name).toBe('tasks.c4.g1.m2048');
    expect(parseShapeQueue(meeting, name)).toEqual({ cores: 4, gpus: 1, memoryMB: 2048 });
    expect(parseShapeQueue({ prefix: 'p', queue: 'other' }, name)).toBeUndefined();
  });
});

describe('a worker’s capacity gate', () => {
  test('runs no more than its cores, GPUs, memory and task count allow; first come, first served', async () => {
    const gate = new Gate({ cores: 4, gpus: 1, memoryMB: 1000 }, 3);
    const started: string[] = [];
    const take = (name: string, need: { cores: number; gpus: number; memoryMB: number }) =>
      gate.acquire(need).then(() => started.push(name));
    const one = { cores: 1, gpus: 0, memoryMB: 0 };
    void take('a', { cores: 3, gpus: 0, memoryMB: 0 });
    void take('b', { cores: 1, gpus: 1, memoryMB: 600 });
    void take('c', { cores: 1, gpus: 1, memoryMB: 0 }); // no GPU left: waits, and nothing overtakes it
    void take('d', one);
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(['a', 'b']);
    gate.release({ cores: 1, gpus: 1, memoryMB: 600 });
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(['a', 'b', 'c']);
    expect(gate.running).toBe(2);
    gate.release({ cores: 3, gpus: 0, memoryMB: 0 });
    await new Promise((r) => setImmediate(r));
    expect(started).toEqual(['a', 'b', 'c', 'd']);
  });
});

describe('scalems worker without a Redis to talk to', () => {
  it('says, every few seconds, that it waits for Redis there and how to fix it (it printed nothing, and seemed hung)', async () => {
    // a port nobody listens on
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as { port: number }).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));
    // the built bin, in one process (tsx would leave its child behind when killed)
    const bin = join(__dirname, '..', 'dist', 'src', 'cli', 'main.js');
    if (!existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first (npm test does)`);
    const run = spawnSync(
      process.execPath,
      [bin, 'worker', '--redis', `redis://127.0.0.1:${port}`, '--queue', 'unreachable'],
      { encoding: 'utf8', timeout: 12_000, killSignal: 'SIGKILL' },
    );
    expect(run.stdout).toMatch(
      new RegExp(
        `waiting for Redis at redis://127\\.0\\.0\\.1:${port}.*ECONNREFUSED.*it goes on trying: start Redis there`,
      ),
    );
  }, 30_000);
});
