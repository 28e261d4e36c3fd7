// Task functions for test/threads*.test.ts: loaded by the threads() workers (and by the tests).
import { threadId } from 'node:worker_threads';
import { currentTask, defineTask } from 'scalems';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const add = defineTask('threads.add', (a: number, b: number) => ({ sum: a + b, threadId }));

export const whoAmI = defineTask('threads.whoAmI', () => {
  const t = currentTask();
  return { id: t.id, label: t.label, attempt: t.attempt, aborted: t.signal.aborted, threadId };
});

class CustomError extends Error {
  readonly code = 'E_CUSTOM';
  constructor(message: string) {
    super(message);
    this.name = 'CustomError';
  }
}

export const fails = defineTask('threads.fails', (message: string) => {
  throw new CustomError(message);
});

export const exitsThread = defineTask('threads.exitsThread', async () => {
  process.exit(3);
});

export const throwsInTimer = defineTask('threads.throwsInTimer', () => {
  setTimeout(() => {
    throw new Error('boom in a timer');
  }, 1);
  return new Promise<never>(() => undefined);
});

/**
 * flags[0] = 1 once started; flags[1] = 1 once its signal aborted (flags[2] = 1 if the reason was a
 * TaskCancelledError).
 */
export const untilAborted = defineTask('threads.untilAborted', async (flags: Int32Array, _n: number) => {
  const { signal } = currentTask();
  Atomics.store(flags, 0, 1);
  Atomics.notify(flags, 0);
  while (!signal.aborted) await sleep(5);
  if ((signal.reason as Error | undefined)?.name === 'TaskCancelledError') Atomics.store(flags, 2, 1);
  Atomics.store(flags, 1, 1);
  Atomics.notify(flags, 1);
  return 'stopped';
});

/**
 * counters: [0] running now, [1] most running at once, [2] arrived so far. Each task waits (at most
 * 10 s) until `together` tasks have arrived, so that tasks allowed to overlap do overlap.
 */
export const overlap = defineTask('threads.overlap', async (counters: Int32Array, together: number, _i: number) => {
  const now = Atomics.add(counters, 0, 1) + 1;
  for (let seen = Atomics.load(counters, 1); now > seen; seen = Atomics.load(counters, 1)) {
    if (Atomics.compareExchange(counters, 1, seen, now) === seen) break;
  }
  Atomics.add(counters, 2, 1);
  for (let waited = 0; Atomics.load(counters, 2) < together && waited < 10_000; waited += 5) await sleep(5);
  await sleep(5);
  Atomics.sub(counters, 0, 1);
  return now;
});

export const partialSums = defineTask('threads.partialSums', async (n: number) => {
  const comm = currentTask().comm!;
  let partial = 0;
  for (let i = comm.rank + 1; i <= n; i += comm.size) partial += i;
  const total = await comm.allreduce(partial, 'sum');
  const biggest = await comm.allreduce(comm.rank, 'max');
  return { total, biggest, rank: comm.rank, size: comm.size, threadId };
});

export const bcastBarrier = defineTask('threads.bcastBarrier', async () => {
  const comm = currentTask().comm!;
  const config = await comm.bcast(comm.rank === 0 ? { seed: 42 } : undefined, 0);
  await comm.barrier();
  if (comm.rank !== 0) {
    await comm.send(0, { rank: comm.rank, seed: config.seed, threadId }, 7);
    return null;
  }
  const replies: Array<{ rank: number; seed: number; threadId: number }> = [{ rank: 0, seed: config.seed, threadId }];
  for (let r = 1; r < comm.size; r++) replies.push(await comm.recv(r, 7));
  return replies;
});

/** Rank 1 fails; the others wait for a message from it that never comes, and count themselves released. */
export const rankFails = defineTask('threads.rankFails', async (released: Int32Array) => {
  const comm = currentTask().comm!;
  if (comm.rank === 1) throw new RangeError('rank 1 gives up');
  try {
    return await comm.recv(1);
  } finally {
    Atomics.add(released, 0, 1);
    Atomics.notify(released, 0);
  }
});

export const returnsFunction = defineTask('threads.returnsFunction', () => ({ callback: () => 1 }));

/** Rank 0 returns at once; rank 1 waits for a message rank 0 never sends. */
export const waitsForReturnedRank = defineTask('threads.waitsForReturnedRank', async () => {
  const comm = currentTask().comm!;
  if (comm.rank === 0) return 'rank 0 done';
  return comm.recv(0, 5);
});

/** Never returns and never looks at its signal (flags[0] = 1 once started). */
export const spins = defineTask('threads.spins', (flags: Int32Array) => {
  Atomics.store(flags, 0, 1);
  for (;;) Atomics.wait(flags, 1, 0, 1000);
});
