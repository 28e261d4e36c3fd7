// 10 000 trivial tasks through submitOn(executor) on bullmq(), run by `scalems worker` processes, against
// the same number of jobs through BullMQ directly (Queue.addBulk, plain Worker processes with a no-op
// processor, the driver counting QueueEvents 'completed'); then bullmq() on 1, 2 and 4 worker processes.
// Needs Redis on 127.0.0.1:6379 (scripts/start-services.sh). Workers are separate processes that load
// threads-tasks next to this file, so the `scalems` they run must be the one it imports: compiled (as
// `npm run bench` runs it), the CLI of dist/; through tsx (npx tsx bench/bullmq.ts), src/cli/main.ts.
//
// The scalems workers run with --inline (functions on their event loop, as BullMQ's processors run): the
// comparison is then of the same work; the workers' default (a thread per core, for functions that compute)
// is measured too and printed on its own line.
//
// Concurrency: every worker process takes up to 8 jobs at once, scalems and raw alike. A no-op task needs
// one core, and a scalems worker runs no more tasks at once than its cores (its capacity gate), so each
// one is started with `--cores 8 --concurrency 8` (its thread pool then has 8 threads) and each raw
// Worker with `concurrency: 8`. More than the 2 cores of the machine, on purpose: a job spends most of its
// time waiting on Redis, not computing. Tried 1, 2, 4, 8 and 16 here: 4 to 16 are about the same for
// both (within the noise), 1 and 2 are slower for both.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { dirname, extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { Queue, QueueEvents } from 'bullmq';
import { count, from, lastValueFrom, map, tap } from 'rxjs';
import { call, executor, launch, memoryStore, openWorkflow, submitOn } from 'scalems';
import { bullmq } from 'scalems/node';
import { inc } from './threads-tasks';

const HOST = '127.0.0.1';
const EXT = extname(__filename);
const TASKS_MODULE = join(__dirname, `threads-tasks${EXT}`);
const RAW_WORKER = join(__dirname, `bullmq-raw-worker${EXT}`);
/** jobs a worker process takes at once (see above) */
const CONCURRENCY = 8;
/** jobs of each addBulk call of the raw driver */
const CHUNK = 1000;
/** tasks run before timing, so that every worker has served some (threads started, queue found, JIT warm) */
const WARM_UP = 1000;

export interface BullmqBenchFigures {
  readonly tasks: number;
  readonly workers: number;
  readonly concurrency: number;
  readonly rounds: number;
  /** tasks per second through submitOn(executor) on bullmq() (median of the rounds) */
  readonly scalemsPerSecond: number;
  /** jobs per second through BullMQ directly (median of the rounds) */
  readonly rawPerSecond: number;
  /** median of the rounds' scalems / raw (goal ≥ 0.8) */
  readonly ratio: number;
  /** tasks per second with the workers' default: functions on a thread pool, not inline (median of the rounds) */
  readonly threadedPerSecond: number;
  /** tasks per second on bullmq() by the number of worker processes (median of the rounds) */
  readonly scaling: ReadonlyArray<{ readonly workers: number; readonly perSecond: number }>;
  /** bullmq() rounds whose last 1 % of results came over 5 s after the rest (missed completion events) */
  readonly lateRounds: number;
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const median = (xs: readonly number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};
const perSecond = (n: number, ms: number): number => (n / ms) * 1000;
const fmt = (x: number): string => Math.round(x).toLocaleString('en');
/** `median [min–max]` */
const spread = (xs: readonly number[], f: (x: number) => string = fmt): string =>
  `${f(median(xs))} [${f(Math.min(...xs))}–${f(Math.max(...xs))}]`;

/** Rejects unless something answers on the Redis port within a second (BullMQ itself would retry forever). */
function reachable(port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: HOST, port, timeout: 1000 });
    const fail = (why: string): void => {
      socket.destroy();
      reject(new Error(`no Redis on ${HOST}:${port} (${why}): start it with scripts/start-services.sh`));
    };
    socket.once('connect', () => {
      socket.end();
      resolve();
    });
    socket.once('timeout', () => fail('no answer'));
    socket.once('error', (err) => fail(err.message));
  });
}

// ---------------------------------------------------------------------------------------------------------
// worker processes

/** Every worker process started and not yet gone: killed when this process exits, however it exits. */
const children = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of children) child.kill('SIGKILL');
});

/** How to start a node script of this package: compiled, or TypeScript through tsx. */
function nodeArgs(script: string): string[] {
  return script.endsWith('.ts') ? ['--require', require.resolve('tsx/cjs'), script] : [script];
}

/** The `scalems` command of the package the tasks module imports (dist/ when compiled, src/ through tsx). */
function scalemsCli(): string {
  const root = dirname(require.resolve('scalems/package.json'));
  return EXT === '.ts' ? join(root, 'src', 'cli', 'main.ts') : join(root, 'dist', 'src', 'cli', 'main.js');
}

interface Proc {
  readonly child: ChildProcess;
  /** resolves once a line of its stdout matches (rejects if it exits first) */
  readonly waitFor: (line: RegExp, ms?: number) => Promise<void>;
}

function startProcess(args: string[], what: string): Proc {
  const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const lines: string[] = [];
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => {
    stderr = (stderr + chunk.toString()).slice(-4000);
  });
  const watchers = new Set<() => void>();
  createInterface({ input: child.stdout! }).on('line', (line) => {
    lines.push(line);
    for (const w of watchers) w();
  });
  const waitFor = (pattern: RegExp, ms = 30_000): Promise<void> =>
    new Promise((resolve, reject) => {
      const done = (err?: Error): void => {
        watchers.delete(check);
        child.off('exit', exited);
        clearTimeout(timer);
        if (err === undefined) resolve();
        else reject(err);
      };
      const check = (): void => {
        if (lines.some((l) => pattern.test(l))) done();
      };
      const exited = (code: number | null, signal: string | null): void =>
        done(new Error(`${what} exited (${code ?? signal}) before printing ${pattern}: ${stderr.trim()}`));
      const timer = setTimeout(
        () => done(new Error(`${what} did not print ${pattern} within ${ms} ms: ${stderr.trim()}`)),
        ms,
      );
      watchers.add(check);
      child.once('exit', exited);
      check();
    });
  return { child, waitFor };
}

/** SIGTERM, then SIGKILL if it has not gone within `ms`. */
async function stopProcess(child: ChildProcess, ms = 5000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const gone = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), ms);
  await gone;
  clearTimeout(timer);
}

/** A signal that would end this process ends its worker processes first. */
function killChildrenOn(signal: NodeJS.Signals): void {
  for (const child of children) child.kill('SIGKILL');
  process.kill(process.pid, signal);
}
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;

/** A round that takes longer than this has hung (a worker that never takes jobs, ...): it fails. */
const ROUND_TIMEOUT_MS = 180_000;

/** Runs `fn` with `n` started worker processes, and stops them however `fn` ends. */
async function withWorkers<T>(
  n: number,
  start: (i: number) => Proc,
  ready: RegExp,
  fn: (workers: Proc[]) => Promise<T>,
): Promise<T> {
  const workers: Proc[] = [];
  for (const signal of SIGNALS) process.once(signal, killChildrenOn);
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    for (let i = 0; i < n; i++) workers.push(start(i));
    await Promise.all(workers.map((w) => w.waitFor(ready)));
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`a round took over ${ROUND_TIMEOUT_MS / 1000} s`)), ROUND_TIMEOUT_MS);
    });
    return await Promise.race([fn(workers), timeout]);
  } finally {
    clearTimeout(timer);
    await Promise.all(workers.map((w) => stopProcess(w.child)));
    for (const signal of SIGNALS) process.off(signal, killChildrenOn);
  }
}

/** Deletes every key under `prefix` (the queues, their events, the shapes and worker keys of scalems). */
async function clean(port: number, prefix: string): Promise<void> {
  const queue = new Queue('clean', { connection: { host: HOST, port }, prefix });
  try {
    const client = await queue.client;
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, { MATCH: `${prefix}:*`, COUNT: 1000 });
      cursor = next;
      if (keys.length > 0) await client.del(...keys);
    } while (cursor !== '0');
  } finally {
    await queue.close();
  }
}

const freshPrefix = (what: string): string => `bench-${what}-${process.pid}-${randomBytes(4).toString('hex')}`;

// ---------------------------------------------------------------------------------------------------------
// one timed round of each

/** A round whose last 1 % of results came this much later than the 99 % before them is reported as such. */
const LATE_MS = 5000;

interface ScalemsRound {
  readonly ms: number;
  /** ms between the result that completed 99 % and the last one */
  readonly lastPercentMs: number;
}

/** `n` tasks through bullmq() on `nWorkers` fresh `scalems worker` processes. */
async function timeScalems(
  port: number,
  n: number,
  nWorkers: number,
  round: string,
  inline: boolean,
): Promise<ScalemsRound> {
  const prefix = freshPrefix('scalems');
  const cli = nodeArgs(scalemsCli());
  const start = (i: number): Proc =>
    startProcess(
      [
        ...cli,
        'worker',
        '--redis',
        `redis://${HOST}:${port}`,
        '--prefix',
        prefix,
        '--modules',
        TASKS_MODULE,
        '--cores',
        String(CONCURRENCY),
        '--concurrency',
        String(CONCURRENCY),
        '--name',
        `bench-${i}`,
        ...(inline ? ['--inline'] : []),
      ],
      `scalems worker ${i}`,
    );
  try {
    return await withWorkers(nWorkers, start, /^scalems worker .*: \d+ cores/, async (workers) => {
      const wf = await openWorkflow({ store: memoryStore(), name: `bench-bullmq-${round}` });
      const rt = launch(wf, bullmq({ connection: { host: HOST, port }, prefix }));
      try {
        const ex = executor(rt);
        let results = 0;
        let at99 = 0;
        const run = (args: number[]): Promise<number> => {
          results = 0;
          return lastValueFrom(
            from(args).pipe(
              map((i) => call(inc, i)),
              submitOn(ex),
              tap(() => {
                if (++results === Math.ceil(args.length * 0.99)) at99 = performance.now();
              }),
              count(),
            ),
          );
        };
        // every worker serves the shape queue (found on the control stream), its threads loaded the module
        await run(range(WARM_UP).map((i) => -1 - i));
        await Promise.all(workers.map((w) => w.waitFor(/serving /)));
        const t0 = performance.now();
        const done = await run(range(n));
        const end = performance.now();
        if (done !== n) throw new Error(`expected ${n} results, got ${done}`);
        return { ms: end - t0, lastPercentMs: end - at99 };
      } finally {
        await rt.shutdown();
      }
    });
  } finally {
    await clean(port, prefix);
  }
}

/** How often the raw driver also asks Redis how many jobs completed, in case events were trimmed unread. */
const POLL_MS = 250;

/**
 * ms for `n` jobs through BullMQ directly, on `nWorkers` fresh processes of a plain Worker; `polled` when the
 * QueueEvents fell short (some 'completed' events trimmed from the stream unread) and Redis' count ended the wait.
 */
async function timeRaw(port: number, n: number, nWorkers: number): Promise<{ ms: number; polled: boolean }> {
  const prefix = freshPrefix('raw');
  const name = 'noop';
  const start = (i: number): Proc =>
    startProcess([...nodeArgs(RAW_WORKER), String(port), prefix, name, String(CONCURRENCY)], `raw worker ${i}`);
  try {
    return await withWorkers(nWorkers, start, /: ready$/, async () => {
      const connection = { host: HOST, port };
      const queue = new Queue<{ n: number }, number>(name, { connection, prefix });
      // a fresh prefix: the whole event stream is this run's, read from its start
      const events = new QueueEvents(name, { connection, prefix, lastEventId: '0-0' });
      let completed = 0;
      let polled = false;
      let check: (() => void) | undefined;
      events.on('completed', () => {
        completed++;
        check?.();
      });
      /** adds the jobs in chunks, each once the one before is in, and waits until all have completed */
      const run = async (args: readonly number[]): Promise<void> => {
        const target = completed + args.length;
        let poller: ReturnType<typeof setInterval> | undefined;
        const all = new Promise<void>((resolve, reject) => {
          check = () => {
            if (completed >= target) resolve();
          };
          poller = setInterval(() => {
            queue.getCompletedCount().then((c) => {
              if (c < target) return;
              if (completed < target) polled = true;
              resolve();
            }, reject);
          }, POLL_MS);
        });
        all.catch(() => undefined); // awaited below; a rejection once the adds have failed is not unhandled
        try {
          for (let i = 0; i < args.length; i += CHUNK)
            await queue.addBulk(args.slice(i, i + CHUNK).map((a) => ({ name, data: { n: a } })));
          await all;
        } finally {
          clearInterval(poller);
          check = undefined;
        }
      };
      try {
        await Promise.all([queue.waitUntilReady(), events.waitUntilReady()]);
        await run(range(WARM_UP).map((i) => -1 - i));
        polled = false;
        const t0 = performance.now();
        await run(range(n));
        const ms = performance.now() - t0;
        const finished = await queue.getCompletedCount();
        if (finished !== WARM_UP + n) throw new Error(`expected ${WARM_UP + n} completed jobs, Redis has ${finished}`);
        return { ms, polled };
      } finally {
        await Promise.all([events.close(), queue.close()]);
      }
    });
  } finally {
    await clean(port, prefix);
  }
}

// ---------------------------------------------------------------------------------------------------------

export async function benchBullmq(
  options: { tasks?: number; workers?: number; rounds?: number; scaling?: readonly number[]; port?: number } = {},
): Promise<BullmqBenchFigures> {
  const n = options.tasks ?? 10_000;
  const nWorkers = options.workers ?? 2;
  const rounds = options.rounds ?? 5;
  const scalingWorkers = options.scaling ?? [1, 2, 4];
  const port = options.port ?? 6379;
  await reachable(port);

  // alternating rounds (this machine is shared and noisy), fresh workers and prefix each
  const scalems: number[] = [];
  const raw: number[] = [];
  const ratios: number[] = [];
  let polled = 0;
  const late: number[] = [];
  const threaded: number[] = [];
  const timeScalemsRound = async (w: number, round: string, inline = true): Promise<number> => {
    const s = await timeScalems(port, n, w, round, inline);
    if (s.lastPercentMs > LATE_MS) late.push(s.lastPercentMs);
    return perSecond(n, s.ms);
  };
  for (let r = 0; r < rounds; r++) {
    const rawRound = await timeRaw(port, n, nWorkers);
    if (rawRound.polled) polled++;
    const rawRate = perSecond(n, rawRound.ms);
    const scalemsRate = await timeScalemsRound(nWorkers, `vs-${r}`);
    raw.push(rawRate);
    scalems.push(scalemsRate);
    threaded.push(await timeScalemsRound(nWorkers, `threads-${r}`, false));
    ratios.push(scalemsRate / rawRate);
  }

  const scalingRounds = Math.max(1, Math.ceil(rounds / 2));
  const byWorkers = new Map<number, number[]>(scalingWorkers.map((w) => [w, []]));
  for (let r = 0; r < scalingRounds; r++) {
    for (const w of scalingWorkers) byWorkers.get(w)!.push(await timeScalemsRound(w, `scaling-${w}-${r}`));
  }

  const figures: BullmqBenchFigures = {
    tasks: n,
    workers: nWorkers,
    concurrency: CONCURRENCY,
    rounds,
    scalemsPerSecond: Math.round(median(scalems)),
    rawPerSecond: Math.round(median(raw)),
    ratio: median(ratios),
    threadedPerSecond: Math.round(median(threaded)),
    scaling: scalingWorkers.map((w) => ({ workers: w, perSecond: Math.round(median(byWorkers.get(w)!)) })),
    lateRounds: late.length,
  };
  console.log(
    `bullmq: ${n.toLocaleString('en')} trivial tasks, ${nWorkers} worker processes x ${CONCURRENCY} at once ` +
      `(Redis ${HOST}:${port}, memory store; median [min–max] of ${rounds} alternating rounds)`,
  );
  console.log(`  scalems submitOn(executor) on bullmq(), workers --inline: ${spread(scalems)} tasks/s`);
  console.log(`  BullMQ directly (addBulk, Worker):                      ${spread(raw)} tasks/s`);
  if (polled > 0)
    console.log(`  (BullMQ directly: in ${polled} round(s) 'completed' events were lost; Redis' count ended the wait)`);
  console.log(`  ratio ${spread(ratios, (x) => x.toFixed(3))} (goal ≥ 0.8)`);
  console.log(
    `  workers' default (functions on a thread per core, not --inline): ${spread(threaded)} tasks/s, ` +
      `${(median(threaded) / median(raw)).toFixed(3)} of BullMQ directly`,
  );
  console.log(`  scaling, bullmq() with workers --inline (median [min–max] of ${scalingRounds} rounds):`);
  for (const w of scalingWorkers)
    console.log(`    ${`${w} worker process${w === 1 ? '' : 'es'}:`.padEnd(20)} ${spread(byWorkers.get(w)!)} tasks/s`);
  if (late.length > 0) {
    console.log(
      `  ${late.length} of ${rounds + scalingRounds * scalingWorkers.length} bullmq() rounds waited ` +
        `${late.map((ms) => (ms / 1000).toFixed(1)).join(', ')} s for their last 1 % of results ` +
        `(completion events missed, the results found by the driver's sweep)`,
    );
  }
  return figures;
}

if (require.main === module) {
  benchBullmq().catch((err: unknown) => {
    console.error(err);
    process.exitCode = 1;
  });
}
