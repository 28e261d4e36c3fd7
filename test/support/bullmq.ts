/**
 * `scalems worker` processes for the bullmq() tests: started from the sources (through tsx, so that the
 * worker, its task modules and the test share one `scalems`), each on a prefix of its own test file so
 * that test files running side by side never take each other's jobs; and what a prefix holds in Redis.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { Queue } from 'bullmq';
import { REDIS } from './services';

const ROOT = join(__dirname, '..', '..');
const MAIN = join(ROOT, 'src', 'cli', 'main.ts');
const TSX = require.resolve('tsx/cjs');

export const REDIS_URL = `redis://${REDIS.host}:${REDIS.port}`;

/** A prefix no other test (file, run) uses. */
export const uniquePrefix = (tag: string): string => `test-${tag}-${process.pid}-${randomBytes(3).toString('hex')}`;

export interface WorkerOptions {
  readonly prefix: string;
  readonly cores: number;
  readonly modules?: readonly string[];
  readonly name?: string;
  /** ms (see `scalems worker --lock-duration`) */
  readonly lockDuration?: number;
  readonly redis?: string;
  readonly extra?: readonly string[];
  /** set in its environment */
  readonly env?: Readonly<Record<string, string>>;
}

export interface WorkerProcess {
  readonly name: string;
  readonly child: ChildProcess;
  /** what it printed so far (stdout and stderr) */
  output(): string;
  /** Sends the signal and resolves once the process has exited. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts a worker and resolves once it is listening (its first line). */
export function startWorker(options: WorkerOptions): Promise<WorkerProcess> {
  const name = options.name ?? `w-${randomBytes(3).toString('hex')}`;
  const args = [
    '--require',
    TSX,
    MAIN,
    'worker',
    '--redis',
    options.redis ?? REDIS_URL,
    '--prefix',
    options.prefix,
    '--cores',
    String(options.cores),
    '--name',
    name,
    ...(options.lockDuration !== undefined ? ['--lock-duration', String(options.lockDuration)] : []),
    ...(options.modules ?? []).flatMap((m) => ['--modules', m]),
    ...(options.extra ?? []),
  ];
  const env = { ...process.env, ...options.env };
  const child = spawn(process.execPath, args, { cwd: ROOT, env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const worker: WorkerProcess = {
    name,
    child,
    output: () => out,
    stop: async (signal = 'SIGTERM') => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      await exited;
    },
  };
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`scalems worker ${name} did not start within 30 s:\n${out}`));
    }, 30_000);
    const ready = (): void => {
      if (!out.includes(`scalems worker ${name}:`)) return;
      clearTimeout(timer);
      child.stdout!.off('data', ready);
      resolve(worker);
    };
    child.stdout!.on('data', ready);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`scalems worker ${name} exited (${signal ?? code}) before it was ready:\n${out}`));
    });
  });
}

/** Runs `fn` with a BullMQ Queue of the prefix (for its Redis client), closed after. */
async function withQueue<T>(prefix: string, name: string, fn: (q: Queue) => Promise<T>, redis = REDIS): Promise<T> {
  const q = new Queue(name, { connection: { host: redis.host, port: redis.port }, prefix });
  try {
    return await fn(q);
  } finally {
    await q.close();
  }
}

/** The shape queues tasks have been sent to on this prefix. */
export function shapeQueues(prefix: string, queue = 'tasks'): Promise<string[]> {
  return withQueue(prefix, queue, async (q) =>
    Object.keys(await (await q.client).hgetall(`${prefix}:${queue}:shapes`)),
  );
}

/** Jobs of the prefix in these states (`<queue> <job id> <state>`), across its shape queues. */
export async function jobsIn(
  prefix: string,
  states: ReadonlyArray<'active' | 'waiting' | 'delayed' | 'completed' | 'failed'>,
  queue = 'tasks',
): Promise<string[]> {
  const found: string[] = [];
  for (const name of await shapeQueues(prefix, queue)) {
    await withQueue(prefix, name, async (q) => {
      for (const state of states) {
        for (const job of await q.getJobs([state])) found.push(`${name} ${job.id} ${state}`);
      }
    });
  }
  return found;
}

/** Deletes every key of the prefix. */
export function cleanPrefix(prefix: string): Promise<void> {
  return withQueue(prefix, 'tasks', async (q) => {
    const client = await q.client;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, { MATCH: `${prefix}:*`, COUNT: 1000 });
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  });
}
