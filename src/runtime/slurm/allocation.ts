/**
 * One Slurm allocation (the pilot of an executor scope), held by `salloc` running a tiny holder command.
 *
 * salloc (without --no-shell) runs a command on this host once the allocation is granted and
 * relinquishes the allocation when that command ends. Our command prints the job id and then waits
 * for the end of its stdin, which is a pipe from this process:
 *   * the job id arrives on stdout, alone on its line, only once the allocation is granted;
 *   * ending the pipe releases the allocation (the normal shutdown);
 *   * if this process dies in any way (even SIGKILL) the pipe closes and Slurm gets its nodes back.
 * While the request still waits in Slurm's queue no holder runs yet, and salloc reads no pipe: a guard (`GUARD`, a
 * tiny shell reading a pipe of its own from this process) sends salloc SIGTERM if this process dies meanwhile, and
 * salloc then withdraws the request, instead of the job waiting for its grant to be released at once.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { SlurmAllocationError } from '../../errors';
import { sleep } from '../../util';

const HOLDER = 'echo "$SLURM_JOB_ID"; exec cat >/dev/null';
/**
 * Told "bye" once the allocation is granted (the holder takes over) or salloc has exited; at end of file without it
 * (this process died while the request waited), SIGTERM to salloc ($1), which withdraws a pending request. Never sent
 * once salloc runs the holder: salloc getting SIGTERM while its holder ends was seen to spin in wait4 (ECHILD) for
 * good, a core at 100 %.
 */
const GUARD = 'read -r line; [ "$line" = bye ] || kill -TERM "$1" 2>/dev/null';

/** the characters of an executor's or a worker group's name that go into a job name */
const NAME_PART_MAX = 100;

/**
 * The job name of an executor's allocation (one per worker group, for an executor of several): `scalems-<executor>-
 * <pid>` or `scalems-<executor>-<group>-<pid>`, each name as letters, digits, `.`, `_` and `-` (`_` for any other
 * character), cut to its first {@link NAME_PART_MAX} characters: Slurm refuses a job name over 1024, and an executor's
 * name has no limit.
 */
export function allocationName(executor: string, group: string | undefined, pid: number): string {
  const part = (text: string): string => text.slice(0, NAME_PART_MAX).replace(/[^\w.-]/g, '_');
  return `scalems-${part(executor)}${group === undefined ? '' : `-${part(group)}`}-${pid}`;
}

/** Runs a Slurm client command; resolves with stdout (rejects on failure). */
export function slurmCommand(cmd: string, args: readonly string[], timeoutMs = 30_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, [...args], { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null) reject(Object.assign(err, { stderr }));
      else resolve(stdout);
    });
  });
}

/** Slurm's state of a job (`RUNNING`, `TIMEOUT`, `CANCELLED`, ...), or undefined if Slurm no longer knows it. */
export async function jobState(jobId: string): Promise<string | undefined> {
  try {
    const out = await slurmCommand('scontrol', ['show', 'job', '-o', jobId]);
    return /\bJobState=(\S+)/.exec(out)?.[1];
  } catch {
    return undefined;
  }
}

const LIVE_STATES = new Set(['RUNNING', 'CONFIGURING', 'COMPLETING', 'PENDING', 'SUSPENDED', 'RESIZING']);

/** The job's final state, once Slurm has settled it (polls up to `timeoutMs` while it is still RUNNING/COMPLETING). */
export async function finalJobState(jobId: string, timeoutMs = 10_000): Promise<string | undefined> {
  const deadline = Date.now() + timeoutMs;
  for (let round = 0; ; round++) {
    const state = await jobState(jobId);
    if (state === undefined || !LIVE_STATES.has(state) || Date.now() >= deadline) return state;
    await sleep(Math.min(100 * (round + 1), 500));
  }
}

/** Resolves once `squeue` no longer lists the job (or after `timeoutMs`: then false). */
export async function waitJobGone(jobId: string, timeoutMs = 30_000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  for (let round = 0; ; round++) {
    let listed = true;
    try {
      listed = (await slurmCommand('squeue', ['-h', '-j', jobId, '-o', '%T'])).trim() !== '';
    } catch {
      listed = false; // "Invalid job id specified": purged
    }
    if (!listed) return true;
    if (Date.now() >= deadline) return false;
    await sleep(Math.min(50 * (round + 1), 250));
  }
}

/** The guard of a pending salloc (see `GUARD`): it keeps nothing of this process alive. */
function guardOf(salloc: ChildProcess): ChildProcess | undefined {
  if (salloc.pid === undefined) return undefined; // not started (salloc is not installed): its error says so
  const guard = spawn('/bin/sh', ['-c', GUARD, 'scalems-salloc-guard', String(salloc.pid)], {
    stdio: ['pipe', 'ignore', 'ignore'],
    detached: true,
  });
  guard.on('error', () => undefined);
  guard.stdin!.on('error', () => undefined);
  guard.unref();
  (guard.stdin as unknown as { unref?: () => void }).unref?.();
  return guard;
}

export class Allocation {
  /** the job id once Slurm has told it (pending or granted) */
  jobId: string | undefined;
  /** resolves with the job id when the allocation is granted; rejects with `SlurmAllocationError` */
  readonly granted: Promise<string>;
  /** set when the allocation ended while in use (TIMEOUT, CANCELLED by someone else, NODE_FAIL...) */
  ended: SlurmAllocationError | undefined;
  private isGranted = false;
  private releasing: Promise<void> | undefined;
  private stderr = '';
  private readonly proc: ChildProcess;
  private readonly exited: Promise<void>;
  private readonly cleanups = new Set<Promise<unknown>>();

  constructor(
    readonly name: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv,
  ) {
    const proc = spawn('salloc', ['--job-name', name, ...args, '--', '/bin/sh', '-c', HOLDER], {
      stdio: ['pipe', 'pipe', 'pipe'],
      detached: true,
      env,
    });
    this.proc = proc;
    const guard = guardOf(proc);
    const standDown = (): void => {
      if (guard?.stdin?.writable === true) guard.stdin.end('bye\n');
    };
    this.exited = new Promise((resolve) =>
      proc.once('close', () => {
        standDown();
        resolve();
      }),
    );
    this.granted = new Promise<string>((resolve, reject) => {
      let out = '';
      proc.stdout!.setEncoding('utf8');
      proc.stdout!.on('data', (chunk: string) => {
        if (this.isGranted) return;
        out += chunk;
        const line = /^\s*(\d+)\s*\n/.exec(out);
        if (line === null) return;
        this.jobId = line[1]!;
        this.isGranted = true;
        // Granted: the holder ends the allocation if this program dies, the guard stands down
        standDown();
        // from now on the holder must not keep this program alive on its own
        this.hold(false);
        resolve(this.jobId);
      });
      proc.stderr!.setEncoding('utf8');
      proc.stderr!.on('data', (chunk: string) => {
        this.stderr = (this.stderr + chunk).slice(-16_384);
        const m = /job allocation (\d+)/.exec(this.stderr);
        if (m !== null && this.jobId === undefined) this.jobId = m[1]!;
      });
      proc.stdin!.on('error', () => undefined); // EPIPE once salloc has gone
      proc.once('error', (err: NodeJS.ErrnoException) => {
        reject(
          new SlurmAllocationError(
            err.code === 'ENOENT'
              ? 'slurm(): salloc is not installed (or not on PATH)'
              : `slurm(): salloc could not be started: ${err.message}`,
            null,
            null,
          ),
        );
      });
      proc.once('close', (code, signal) => {
        if (!this.isGranted) {
          const why = this.errorLines() || `salloc exited with ${signal ?? `code ${String(code)}`}`;
          reject(
            new SlurmAllocationError(
              `slurm(): the allocation ${this.name} was not granted: ${why}`,
              this.jobId ?? null,
              null,
            ),
          );
        } else if (this.releasing === undefined) {
          void this.noteEnded();
        }
      });
    });
    this.granted.catch(() => undefined);
  }

  /** Whether the holder keeps this program alive (only while waiting for the grant, and while releasing). */
  private hold(on: boolean): void {
    const p = this.proc;
    if (on) p.ref();
    else p.unref();
    for (const s of [p.stdin, p.stdout, p.stderr] as Array<Readable | Writable | null>) {
      const handle = s as unknown as { ref?: () => void; unref?: () => void } | null;
      if (on) handle?.ref?.();
      else handle?.unref?.();
    }
  }

  /** Work (a step's cancellation) that must be over before the allocation is released. */
  track(cleanup: Promise<unknown>): void {
    const p = cleanup.catch(() => undefined).finally(() => this.cleanups.delete(p));
    this.cleanups.add(p);
  }

  /** The job id, synchronously, while the allocation is granted and usable. */
  usable(): string | undefined {
    return this.isGranted && this.ended === undefined && this.releasing === undefined ? this.jobId : undefined;
  }

  /** The allocation, if it is usable; else throws the reason. */
  async ready(): Promise<string> {
    const id = await this.granted;
    if (this.ended !== undefined) throw this.ended;
    if (this.releasing !== undefined)
      throw new SlurmAllocationError(
        `slurm(): the allocation ${id} has been released (its executor was shut down): submit to a new executor`,
        id,
        null,
      );
    return id;
  }

  /**
   * After a step failed or was stopped by Slurm: if the allocation is gone (or, with `settle`, going:
   * waiting a moment for Slurm to settle its state), the reason, which is remembered.
   */
  async checkEnded(settle = false): Promise<SlurmAllocationError | undefined> {
    if (this.ended !== undefined || this.jobId === undefined) return this.ended;
    const state = settle ? await finalJobState(this.jobId, 10_000) : await jobState(this.jobId);
    if (state === 'RUNNING' || state === 'CONFIGURING') return undefined;
    return this.noteEnded(state);
  }

  private async noteEnded(known?: string): Promise<SlurmAllocationError> {
    const id = this.jobId ?? '?';
    const told = /time limit/i.test(this.stderr) ? 'TIMEOUT' : undefined;
    let state = known ?? told ?? (await finalJobState(id));
    if (state === undefined || LIVE_STATES.has(state))
      state = told ?? (/revoked/i.test(this.stderr) ? 'CANCELLED' : (state ?? 'ENDED'));
    const hint = state === 'TIMEOUT' ? ': it reached its time limit; give the executor a longer worker walltime' : '';
    this.ended ??= new SlurmAllocationError(
      `slurm(): the allocation ${id} (${this.name}) ended with ` +
        `state ${state}${hint}${this.errorLines() ? ` (${this.errorLines()})` : ''}`,
      id,
      state,
    );
    return this.ended;
  }

  private errorLines(): string {
    return this.stderr
      .split('\n')
      .filter((l) => /error|revoked|exceeded|denied|invalid/i.test(l))
      .map((l) => l.trim())
      .join('; ');
  }

  /**
   * Releases the allocation once the tracked cleanups are over: ends the holder's stdin (a pending
   * request is cancelled), and resolves when Slurm no longer lists the job.
   */
  release(): Promise<void> {
    this.releasing ??= (async () => {
      await Promise.allSettled([...this.cleanups]);
      this.hold(true);
      const pending = !this.isGranted;
      if (pending) {
        if (this.jobId !== undefined) await slurmCommand('scancel', [this.jobId]).catch(() => undefined);
        this.proc.kill('SIGTERM');
      }
      this.proc.stdin?.end();
      let timer: NodeJS.Timeout | undefined;
      const closed = await Promise.race([
        this.exited.then(() => true),
        new Promise<boolean>((r) => (timer = setTimeout(() => r(false), 15_000))),
      ]);
      clearTimeout(timer);
      if (!closed) {
        if (this.jobId !== undefined) await slurmCommand('scancel', [this.jobId]).catch(() => undefined);
        this.proc.kill('SIGKILL');
        await this.exited;
      }
      if (this.jobId !== undefined) await waitJobGone(this.jobId);
    })();
    return this.releasing;
  }
}
