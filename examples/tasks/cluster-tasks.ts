// Task functions for examples/cluster.ts. Every `scalems worker` is started with this module
// (`--modules examples/tasks/cluster-tasks.ts`) and finds these functions in it by their defineTask
// name: nothing but the name and the JSON arguments travels through Redis. The driver imports the
// module too, to submit them (and bullmq({ modules }) checks the names at submit).
import { hostname } from 'node:os';
import { currentTask, defineTask } from 'scalems';

/** The worker a task runs on, by the name `scalems worker` gives itself by default (`<host>-<pid>`). */
const worker = (): string => `${hostname()}-${process.pid}`;

/** A stand-in for a simulation: a random walk seeded by the member index (CPU-bound, checks its signal). */
export const simulate = defineTask('cluster-example.simulate', (member: number, steps: number) => {
  const { signal } = currentTask();
  let x = 0;
  let seed = (member + 1) * 2654435761;
  for (let i = 0; i < steps; i++) {
    seed ^= seed << 13; // xorshift32
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    x += (seed >>> 0) / 2 ** 32 - 0.5;
    if (i % 100_000 === 0) signal.throwIfAborted(); // cancel() and the walltime reach the worker's thread
  }
  return { member, final: x, worker: worker() };
});

/** Statistics over the ensemble. The driver asks 2 cores for it, so only a worker with 2 or more takes it. */
export const analyse = defineTask('cluster-example.analyse', (finals: readonly number[]) => {
  const distances = finals.map(Math.abs);
  const mean = distances.reduce((s, d) => s + d, 0) / distances.length;
  return { members: finals.length, mean, farthest: distances.indexOf(Math.max(...distances)), worker: worker() };
});
