// Task functions for test/slurm*.test.ts: loaded by the scalems-task entry point in each job step.
import { writeFileSync } from 'node:fs';
import { currentTask, defineTask } from 'scalems';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

export const add = defineTask('slurm.add', (a: number, b: number) => ({
  sum: a + b,
  pid: process.pid,
  step: process.env.SLURM_STEP_ID ?? null,
  job: process.env.SLURM_JOB_ID ?? null,
}));

export const whoAmI = defineTask('slurm.whoAmI', () => {
  const t = currentTask();
  return {
    id: t.id,
    label: t.label ?? null,
    attempt: t.attempt,
    workdir: t.workdir ?? null,
    cwd: process.cwd(),
    cpus: process.env.SLURM_CPUS_PER_TASK ?? null,
  };
});

class CustomError extends Error {
  readonly code = 'E_CUSTOM';
  constructor(
    message: string,
    readonly detail: number,
  ) {
    super(message);
    this.name = 'CustomError';
  }
}

export const fail = defineTask('slurm.fail', (detail: number) => {
  throw new CustomError(`failed on purpose with ${detail}`, detail);
});

/** Waits until cancelled (SIGTERM from scancel aborts the signal), then writes why to `marker`. */
export const waitForCancel = defineTask('slurm.waitForCancel', async (ms: number, marker: string) => {
  const t = currentTask();
  writeFileSync(`${marker}.started`, '');
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    t.signal.addEventListener('abort', () => {
      clearTimeout(timer);
      const reason: unknown = t.signal.reason;
      writeFileSync(marker, reason instanceof Error ? `${reason.name}: ${reason.message}` : String(reason));
      resolve();
    });
  });
  return { aborted: t.signal.aborted };
});

export const badResult = defineTask('slurm.badResult', () => new Map([[1, 2]]));

export const exitHard = defineTask('slurm.exitHard', async () => {
  await sleep(10);
  process.exit(7);
});
