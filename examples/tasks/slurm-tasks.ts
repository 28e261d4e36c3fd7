// Task functions of examples/slurm-ensemble.ts: every agent of the allocation loads this module (slurm({ modules })).
import { readFileSync } from 'node:fs';
import { defineTask } from 'scalems';

/** Scores a member's run: the number it printed, squared, and the node that scored it. */
export const score = defineTask('example.slurm.score', (run: { stdout: { $file: string } }) => {
  const value = Number(readFileSync(run.stdout.$file, 'utf8').trim().split(/\s+/)[0]);
  return { value: value * value, node: process.env.SLURMD_NODENAME ?? 'unknown' };
});
