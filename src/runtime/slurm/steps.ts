/**
 * One job step in an allocation: `srun --jobid=<id> --exact ...`, its state and exit code as Slurm
 * reports them, and its cancellation (`scancel <jobid>.<stepid>`, then the srun process itself).
 *
 * There is no accounting database to ask afterwards (sacct needs one), and a finished step vanishes
 * from `scontrol show step`. So the outcome is read from srun itself: with --verbose it names the step
 * it launched ("launching StepId=J.S") and the raw wait status of each task, and slurmstepd's notices
 * (CANCELLED, DUE TO TIME LIMIT, oom-kill, node failure) arrive on srun's stderr too. The program's own
 * stdout/stderr go to files (--output/--error), so srun's stderr holds only Slurm's messages.
 *
 * A step may also be created by another program on this host: `mpirun` whose daemons are the step (a task that
 * spans nodes with the mpirun launcher, see plans.ts). Its srun's verbose lines reach mpirun's stderr, so the
 * step is read the same way; the task's exit status is mpirun's own.
 */
import { closeSync, openSync } from 'node:fs';
import { constants } from 'node:os';
import { spawnTree, type ProcessTree } from '../executable/process-tree';
import { slurmCommand } from './allocation';
import { sleep } from '../../util';
import { tail } from '../executable/workdir';

export type StepState = 'COMPLETED' | 'FAILED' | 'CANCELLED' | 'TIMEOUT' | 'OUT_OF_MEMORY' | 'NODE_FAIL' | 'PREEMPTED';

export interface StepLaunch {
  readonly jobId: string;
  /** --job-name of the step: how it is found in `squeue -s` before srun has named it */
  readonly name: string;
  /** srun options (resources, --output/--error/--input, --chdir) */
  readonly options: readonly string[];
  readonly command: readonly string[];
  readonly env: NodeJS.ProcessEnv;
  /** where srun itself runs */
  readonly cwd: string;
  /** the tasks' --error file(s): slurmstepd writes its notices (CANCELLED, time limit, oom-kill) there */
  readonly stderrFile?: string | readonly string[];
  /**
   * The program that creates the step itself, run instead of `srun ... options command` (which are then unused):
   * `mpirun` whose srun has `--jobid`, `--job-name <name>` and `--verbose` (its srun's stderr reaching mpirun's).
   * The outcome's exit code and signal are then this program's.
   */
  readonly driver?: readonly string[];
  /** the driver's stdin (a file); none without */
  readonly stdinFile?: string;
}

export interface StepOutcome {
  /** `<jobid>.<stepid>`, or null if the step was never created */
  readonly step: string | null;
  readonly state: StepState;
  /** the (first failing) task's exit code; srun's own when no task ran */
  readonly exitCode: number | null;
  /** the signal that ended the (first failing) task */
  readonly signal: string | null;
  /** Slurm's error lines (srun / slurmstepd), for messages */
  readonly messages: string;
  /** true if the step was created and all its tasks launched */
  readonly launched: boolean;
}

export interface RunningStep {
  /** settles when srun has exited; never rejects */
  readonly done: Promise<StepOutcome>;
  /** `<jobid>.<stepid>` once srun has launched it */
  readonly step: string | undefined;
  /**
   * Cancels the step: `scancel --signal=TERM <jobid>.<stepid>` (found by name if srun has not said it
   * yet), `scancel <jobid>.<stepid>` (SIGKILL) after `graceSeconds` (default 3), then srun itself if
   * it is still there. Resolves once srun has exited and Slurm no longer lists the step.
   */
  cancel(graceSeconds?: number): Promise<void>;
}

/**
 * Times (50 ms apart) the stderr file of a step a signal ended is read again for slurmstepd's notice; four
 * times as many when srun said Slurm aborted the step (the notice is sure to come, later under load).
 */
const NOTICE_WAITS = 10;
/** srun's line when a node could not start the step's tasks (its slurmstepd failed before the program ran). */
const LAUNCH_FAILED = /^srun: error: task [\d,-]+ launch failed/m;
/** srun's line when it ends its step itself, as --kill-on-bad-exit makes it once a task has failed. */
const SELF_TERMINATED = /^srun: launch\/slurm: _step_signal: Terminating StepId=/m;
const failedTask = (t: { code: number; sig: number }): boolean => t.code !== 0 || t.sig !== 0;
/** srun's line when Slurm ends its step (scancel, time limit): the step did not simply fail. */
const ABORTED = /^srun: Job step aborted/m;

/** Seconds a cancelled step's processes have between SIGTERM and SIGKILL. */
export const DEFAULT_STEP_GRACE_SECONDS = 3;
/** Seconds srun has to end once its step is cancelled (it waits for Slurm's KillWait), before it is killed. */
const SRUN_GRACE_SECONDS = 15;

const signalNames = new Map<number, string>(Object.entries(constants.signals).map(([name, n]) => [n, name]));

/**
 * Environment for srun: this process's, without the SLURM_* settings of an enclosing job (they would override our
 * options).
 */
export function srunEnv(extra: Readonly<Record<string, string>>): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(SLURM_|SALLOC_|SBATCH_|SRUN_)/.test(k) && k !== 'SLURM_CONF') continue;
    env[k] = v;
  }
  return { ...env, ...extra };
}

/** The step id of the step of that name in the job, if `squeue -s` lists one. */
export async function findStep(jobId: string, name: string): Promise<string | undefined> {
  try {
    const out = await slurmCommand('squeue', ['-h', '-s', '-j', jobId, '-o', '%i|%j']);
    for (const line of out.split('\n')) {
      const [id, stepName] = line.trim().split('|');
      if (stepName === name && id !== undefined && /^\d+\.\d+$/.test(id)) return id;
    }
  } catch {
    // the job is gone: so is the step
  }
  return undefined;
}

/** slurmstepd's lines at the end of a task's stderr file. */
export function stepdNotices(text: string): string {
  return text
    .split('\n')
    .filter((l) => /^slurmstepd(-\S+)?: (error|\*\*\*)/.test(l))
    .join('\n');
}

/** Reads what srun (verbose) and slurmstepd said into a step outcome. */
export function classifyStep(stderr: string, srunExit: { code: number | null; signal: string | null }): StepOutcome {
  const lines = stderr.split('\n');
  const step = /launching StepId=(\d+\.\d+)/.exec(stderr)?.[1] ?? null;
  // a node could not start its tasks (srun then kills the others): Slurm's failure, not the program's
  const launchFailed = LAUNCH_FAILED.test(stderr);
  const launched = step !== null && !launchFailed;
  let chosen: { code: number; sig: number } | undefined;
  for (const m of stderr.matchAll(/task exit notification for \d+ tasks? of StepId=\S+ \(status=0x([0-9a-fA-F]+)\)/g)) {
    const status = Number.parseInt(m[1]!, 16);
    const task = { code: (status >> 8) & 0xff, sig: status & 0x7f };
    chosen ??= task;
    if (task.code !== 0 || task.sig !== 0) {
      chosen = task; // the first failing task decides
      break;
    }
  }
  let exitCode: number | null = chosen === undefined ? null : chosen.sig !== 0 ? null : chosen.code;
  let signal: string | null =
    chosen === undefined || chosen.sig === 0 ? null : (signalNames.get(chosen.sig) ?? `signal ${chosen.sig}`);
  const messages = lines
    .filter((l) =>
      /^(srun|slurmstepd\S*): error: |\*\*\*|oom[-_]kill|OUT_OF_MEMORY|NODE_FAIL|Node failure|Unable to create step/.test(
        l,
      ),
    )
    .map((l) => l.trim())
    .join('\n');
  let state: StepState;
  if (/CANCELLED AT \S+ DUE TO TIME LIMIT|time limit exceeded/i.test(stderr)) state = 'TIMEOUT';
  else if (/oom[-_]kill|OUT_OF_MEMORY|Exceeded (job|step) memory limit/i.test(stderr)) state = 'OUT_OF_MEMORY';
  else if (/NODE_FAIL|DUE TO NODE FAIL|Node failure/i.test(stderr)) state = 'NODE_FAIL';
  else if (/CANCELLED AT \S+ DUE TO PREEMPTION/.test(stderr)) state = 'PREEMPTED';
  else if (launchFailed) state = 'FAILED';
  // --kill-on-bad-exit: srun itself ended the step after a task failed (slurmstepd's CANCELLED notice follows)
  else if (SELF_TERMINATED.test(stderr) && !ABORTED.test(stderr) && chosen !== undefined && failedTask(chosen))
    state = 'FAILED';
  else if (/\*\*\* (STEP|JOB) \S+ ON \S+ CANCELLED AT/.test(stderr)) state = 'CANCELLED';
  // slurmstepd's notice did not reach us, but srun says Slurm aborted the step: never a plain failure
  else if (launched && ABORTED.test(stderr)) state = 'CANCELLED';
  else if (!launched) state = 'FAILED';
  else if (chosen === undefined ? srunExit.code !== 0 : exitCode !== 0) state = 'FAILED';
  else state = 'COMPLETED';
  if (chosen === undefined) {
    exitCode = srunExit.code;
    signal = srunExit.signal;
  }
  return { step, state, exitCode, signal, messages, launched };
}

/**
 * Reads the stderr of a program that created a step (`StepLaunch.driver`): Slurm's notices decide TIMEOUT,
 * CANCELLED, NODE_FAIL...; otherwise the step completed if the program exited 0. Exit code and signal are the
 * program's; if it never created the step, its own last lines are the messages.
 */
export function classifyDriven(stderr: string, exit: { code: number | null; signal: string | null }): StepOutcome {
  const slurm = classifyStep(stderr, exit);
  const ok = exit.code === 0;
  const state = slurm.state === 'COMPLETED' || slurm.state === 'FAILED' ? (ok ? 'COMPLETED' : 'FAILED') : slurm.state;
  // the program's own explanation (mpirun's), without its srun's lines
  const own = stderr
    .split('\n')
    .filter((l) => l.trim() !== '' && !/^(srun|slurmstepd\S*): /.test(l))
    .slice(-20)
    .join('\n');
  return {
    ...slurm,
    state,
    exitCode: exit.code,
    signal: exit.signal,
    messages: state === 'COMPLETED' ? slurm.messages : [slurm.messages, own].filter((m) => m !== '').join('\n'),
  };
}

async function notices(files: readonly string[]): Promise<string> {
  const found = await Promise.all(files.map(async (f) => stepdNotices(await tail(f, 8192))));
  return found.filter((n) => n !== '').join('\n');
}

/**
 * Starts `srun --jobid=<id> --exact --verbose --job-name=<name> <options> <command>` (or the `driver` that creates
 * the step).
 */
export function startStep(launch: StepLaunch): RunningStep {
  let stderr = '';
  let stepId: string | undefined;
  let cancelling: Promise<void> | undefined;
  const args = [
    '--jobid',
    launch.jobId,
    '--exact',
    '--verbose',
    '--job-name',
    launch.name,
    ...launch.options,
    ...launch.command,
  ];
  const [program, ...programArgs] = launch.driver ?? ['srun', ...args];
  const stdin = launch.driver !== undefined && launch.stdinFile !== undefined ? openSync(launch.stdinFile, 'r') : null;
  const started: Promise<ProcessTree | Error> = spawnTree(program!, programArgs, {
    cwd: launch.cwd,
    env: launch.env,
    stdio: [stdin ?? 'ignore', 'ignore', 'pipe'],
    graceSeconds: SRUN_GRACE_SECONDS,
  }).then(
    (tree) => tree,
    (err: unknown) => (err instanceof Error ? err : new Error(String(err))),
  );
  if (stdin !== null) void started.finally(() => closeSync(stdin));
  const classify = launch.driver !== undefined ? classifyDriven : classifyStep;
  const stderrFiles =
    launch.stderrFile === undefined
      ? []
      : typeof launch.stderrFile === 'string'
        ? [launch.stderrFile]
        : launch.stderrFile;
  const done = started.then(async (tree): Promise<StepOutcome> => {
    if (tree instanceof Error) {
      const why =
        (tree as NodeJS.ErrnoException).code === 'ENOENT'
          ? `${program} is not installed (or not on PATH)`
          : `${program} could not be started: ${tree.message}`;
      return { step: null, state: 'FAILED', exitCode: null, signal: null, messages: why, launched: false };
    }
    const err = tree.child!.stderr!;
    err.setEncoding('utf8');
    err.on('data', (chunk: string) => {
      // keep the head (the step id, early errors) and a bounded tail
      stderr = stderr.length < 65_536 ? stderr + chunk : stderr.slice(0, 32_768) + stderr.slice(-32_768) + chunk;
      stepId ??= /launching StepId=(\d+\.\d+)/.exec(stderr)?.[1];
    });
    const [status] = await Promise.all([
      tree.exited,
      new Promise<void>((resolve) => err.once('close', () => resolve())),
    ]);
    const outcome = classify(stderr, status);
    // slurmstepd's notices go to the tasks' stderr file: needed only when the step did not simply complete
    if (outcome.state === 'COMPLETED' || stderrFiles.length === 0) return outcome;
    let said = await notices(stderrFiles);
    // slurmstepd writes its notice as the step ends, which can be just after srun has ended: a step that
    // a signal ended (a scancel, a kill) gets a moment more before it is taken for a plain failure
    const waits = ABORTED.test(stderr) ? 4 * NOTICE_WAITS : outcome.signal !== null ? NOTICE_WAITS : 0;
    for (let i = 0; said === '' && i < waits; i++) {
      await sleep(50);
      said = await notices(stderrFiles);
    }
    return said === '' ? outcome : classify(`${stderr}\n${said}`, status);
  });

  const cancel = (graceSeconds = DEFAULT_STEP_GRACE_SECONDS): Promise<void> => {
    cancelling ??= (async () => {
      const tree = await started;
      if (tree instanceof Error) return;
      const exited = tree.exited.then(() => true);
      const within = (ms: number): Promise<boolean> => {
        let timer: NodeJS.Timeout | undefined;
        return Promise.race([exited, new Promise<boolean>((r) => (timer = setTimeout(() => r(false), ms)))]).finally(
          () => clearTimeout(timer),
        );
      };
      const id = stepId ?? (await findStep(launch.jobId, launch.name));
      if (id !== undefined) {
        // SIGTERM to the step's processes first (a bare scancel of a step is SIGKILL), then the step itself.
        await slurmCommand('scancel', ['--signal=TERM', id]).catch(() => undefined);
        if (!(await within(graceSeconds * 1000))) await slurmCommand('scancel', [id]).catch(() => undefined);
      }
      // srun itself: it ends once its step has; before the step exists, SIGTERM aborts the step's creation
      if (!(await within(id !== undefined ? SRUN_GRACE_SECONDS * 1000 : 0))) await tree.kill(SRUN_GRACE_SECONDS);
      await done;
      // srun may have created the step just after we looked: make sure it is gone
      const left = await findStep(launch.jobId, launch.name);
      if (left !== undefined) {
        await slurmCommand('scancel', [left]).catch(() => undefined);
        for (let i = 0; i < 100 && (await findStep(launch.jobId, launch.name)) !== undefined; i++) await sleep(100);
      }
    })();
    return cancelling;
  };

  return {
    done,
    get step() {
      return stepId;
    },
    cancel,
  };
}
