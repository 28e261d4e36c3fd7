// Task functions for examples/threads.ts. A module given to threads({ modules }) is loaded by every
// worker thread; its defineTask functions are found there by name. Export them, so that the main
// program can submit them (and so that threads() can check the names at submit).
import { threadId } from 'node:worker_threads';
import { currentTask, defineTask } from 'scalems';

/** A stand-in for a simulation: a random walk seeded by the member index (CPU-bound, checks its signal). */
export const simulate = defineTask('threads-example.simulate', (member: number, steps: number) => {
  const { signal } = currentTask();
  let x = 0;
  let seed = (member + 1) * 2654435761;
  for (let i = 0; i < steps; i++) {
    seed ^= seed << 13; // xorshift32
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    x += (seed >>> 0) / 2 ** 32 - 0.5;
    if (i % 100_000 === 0) signal.throwIfAborted();
  }
  return { member, final: x, thread: threadId };
});

/**
 * Runs on `ranks` threads at once: each rank sums the squares of its share of 1..n, and allreduce
 * adds the partial sums. Every rank gets the total; the task's result is rank 0's.
 */
export const sumOfSquares = defineTask('threads-example.sumOfSquares', async (n: number) => {
  const comm = currentTask().comm!;
  let partial = 0;
  for (let i = comm.rank + 1; i <= n; i += comm.size) partial += i * i;
  const total = await comm.allreduce(partial, 'sum');
  return { total, ranks: comm.size, thread: threadId };
});
