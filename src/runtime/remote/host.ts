/**
 * A host of task attempts sent as data (`AttemptData`) from a driver elsewhere: functions by their `defineTask` name
 * from the modules it was started with (on a `threads()` pool of its cores, or on its own event loop: `inline`),
 * programs through the local executable attempt of `processes()` in the working directory the driver names. It stops
 * the work itself on cancellation and at the walltime. Shared by the remote sides that take attempts from a driver:
 * `scalems worker` (BullMQ) and the Slurm agent; each adds only its transport and how it admits work.
 */
import { Observable, Subscription } from 'rxjs';
import {
  InvalidTaskDescriptionError,
  UnknownTaskError,
  UnsatisfiableRequirementsError,
  UnserializableValueError,
  WalltimeExceededError,
  WorkerCrashedError,
} from '../../errors';
import { reviveError } from '../../recorded-error';
import { footprint } from '../../task/requirements';
import type { BackendExecutor, Job } from '../backend';
import type { CoreGate } from '../executable/core-gate';
import { AttemptWithdrawn, runLocalExecutable, type Withdraw } from '../executable/local';
import { ownerOf } from '../executable/marks';
import { killMarked, startOf } from '../executable/process-tree';
import { isInterrupted } from '../interrupt';
import { MAX_SPAWNERS, SpawnerPool, type PoolGate } from '../executable/spawner-pool';
import type { AttemptData } from './attempt-data';
import { RemoteRunner, RunStop } from './runner';
import { jsonWire, type RemoteOutcome, type Wire } from './wire';
import type { ModuleDigests } from './modules';

export interface TaskHostOptions {
  /** how it is named in messages: `worker <name>`, `the Slurm agent on node <name>` */
  readonly name: string;
  /** modules that define the function tasks it runs (none: it runs programs only) */
  readonly modules: readonly string[];
  /** the modules' digests as the submitting program read them (`moduleDigests`): one changed since is not loaded */
  readonly digests?: ModuleDigests;
  /** the option that lists the modules, for messages: `--modules` */
  readonly modulesOption: string;
  /** threads of the pool that runs functions */
  readonly cores: number;
  /**
   * The pool that runs function tasks on threads: a `threads()` executor (`threads/host-pool.ts`), made by the
   * caller (a remote side that also runs a backend's main side, which this folder may not import). None: functions
   * run on this event loop (`inline`), if there are modules.
   */
  readonly pool?: (modules: readonly string[], cores: number, digests?: ModuleDigests) => BackendExecutor;
  /** functions on this event loop, not on threads (see `ScalemsWorkerOptions.inline`) */
  readonly inline?: boolean;
  /**
   * How results travel back to the driver: a function's value that would not arrive as it is (a Map, over JSON) fails
   * its attempt with `UnserializableValueError` here, rather than arriving changed. @default jsonWire
   */
  readonly wire?: Wire;
  /**
   * The cores attempts hold while they run, for a host that is handed one-core attempts ahead of a free core: they
   * prepare (a program's working directory and files) at once, then wait here. None: each runs when it arrives.
   * A host that runs programs only (no `modules`) holds them in its spawners instead (see `TaskHost`).
   */
  readonly gate?: CoreGate;
  /**
   * If this process dies without ending its programs (SIGKILL), its spawners (`spawner.ts`) end their trees in any
   * case; with this, also every process that carries one of its attempt marks (daemons, which left their trees). For a
   * host whose death must not leave work running (a Slurm agent). @default false
   */
  readonly watchdog?: boolean;
}

/** The workflow of a job run away from its driver: there is none (the pool that runs it must not ask). */
export const NO_WORKFLOW = new Proxy(
  {},
  {
    get() {
      throw new Error('a remote task host has no workflow');
    },
  },
) as Job['workflow'];

/** Hosts made by this process: a part of their marks. */
let hosts = 0;

export class TaskHost {
  /** each running attempt: what stops it, and what withdraws it while it waits for its cores (see `withdraw`) */
  private readonly running = new Map<string, { stop: (reason: Error) => void; withdraw?: Withdraw }>();
  private readonly ending = new Set<Promise<void>>();
  private readonly functions: BackendExecutor | undefined;
  private readonly runner: RemoteRunner | undefined;
  private readonly spawner: SpawnerPool;
  /** the cores of a host with a gate that runs programs only, held in its spawners (see the constructor) */
  private readonly spawnerGate: PoolGate | undefined;
  private readonly markPrefix: string | undefined;
  private attempts = 0;
  private readonly wire: Wire;

  constructor(private readonly options: TaskHostOptions) {
    this.wire = options.wire ?? jsonWire;
    const { modules, name } = options;
    this.runner =
      modules.length > 0 && options.inline === true
        ? new RemoteRunner({
            modules,
            where: name,
            modulesOption: `${name} (${options.modulesOption})`,
            wire: jsonWire,
            ...(options.digests !== undefined && { digests: options.digests }),
          })
        : undefined;
    this.functions =
      modules.length > 0 && options.inline !== true
        ? options.pool?.(modules, options.cores, options.digests)
        : undefined;
    if (options.watchdog === true) this.markPrefix = `${ownerOf(process.pid, startOf(process.pid))}-${++hosts}-`;
    // makes the directories and files and forks the programs; ends them (and, with a watchdog, every process that
    // carries one of its marks) if this process dies first.
    // A gated host that runs programs only (a Slurm agent without modules) holds its cores in its spawners, one per
    // core up to MAX_SPAWNERS, as processes() does: a program starts the moment another exits, where the gate here
    // would start it on a GO line sent once the spawner's exit line has been read (a round trip of 0.4-0.5 ms per
    // program on a busy 2-core node, a sixth of a `true` program's turn). A host that also runs functions keeps its
    // gate, which functions share first come first served, and as many spawners, to which the gate names the one-core
    // programs at the head of its queue: a spawner starts one of those the moment one of its programs exits
    // (core-gate.ts, "Heirs"). A gate of more than one core: several spawners, whose forks run side by side
    // (docs/processes.md).
    const programsOnly = options.gate !== undefined && modules.length === 0;
    const spawners = options.gate !== undefined ? Math.min(options.cores, MAX_SPAWNERS) : 1;
    this.spawner = new SpawnerPool(spawners, this.markPrefix ?? '', 3);
    this.spawnerGate = programsOnly ? this.spawner.gate(options.cores) : undefined;
  }

  /** attempts running now */
  get size(): number {
    return this.running.size;
  }

  /** Runs one attempt to its end; resolves with its value, rejects with its error (stopped, over walltime, failed). */
  execute(data: AttemptData, key: string): Promise<unknown> {
    return new Promise((resolve, reject) => {
      const controller = new AbortController();
      const job: Job = {
        id: data.id,
        label: data.label,
        kind: data.kind,
        name: data.name,
        args: data.args,
        requirements: data.requirements,
        attempt: data.attempt,
        version: data.version,
        signal: controller.signal,
        workflow: NO_WORKFLOW,
        invoke: () => {
          throw new Error('a remote task host runs functions through its runner');
        },
        holdUntil: (ended) => {
          lingering = lingering === undefined ? ended : Promise.allSettled([lingering, ended]);
        },
      };
      /** what goes on after it was stopped (its process tree ending): its end is told once that is over */
      let lingering: Promise<unknown> | undefined;
      const entry: { stop: (reason: Error) => void; withdraw?: Withdraw } = { stop: () => undefined };
      let work: Observable<unknown>;
      try {
        work = this.work(job, data, (w) => (entry.withdraw = w));
      } catch (err) {
        reject(err);
        return;
      }
      let done = false;
      const subscription = new Subscription();
      let timer: ReturnType<typeof setTimeout> | undefined;
      let value: unknown;
      const end = (): void => {
        done = true;
        // (a withdrawn attempt's key may come back here: only its own entry goes)
        if (this.running.get(key) === entry) this.running.delete(key);
        if (timer !== undefined) clearTimeout(timer);
      };
      const stop = (reason: Error): void => {
        if (done) return;
        end();
        controller.abort(reason);
        subscription.unsubscribe();
        // told once its tree has ended: the one who hears it (a driver, a BullMQ worker) then frees its cores
        if (lingering === undefined) reject(reason);
        else {
          const told = (): void => reject(reason);
          void lingering.then(told, told);
        }
      };
      entry.stop = stop;
      this.running.set(key, entry);
      const walltime = data.requirements.walltime;
      if (walltime !== undefined) {
        timer = setTimeout(() => {
          stop(
            new WalltimeExceededError(
              `task ${data.label ?? data.name} (${data.id}) exceeded its walltime of ${walltime} s and was stopped ` +
                `(on ${this.options.name})`,
            ),
          );
        }, walltime * 1000);
      }
      subscription.add(
        work.subscribe({
          next: (v) => {
            value = v;
          },
          error: (err: unknown) => {
            if (done) return;
            end();
            reject(this.interrupted(data) ?? this.explained(err, data));
          },
          complete: () => {
            if (done) return;
            end();
            // its program was ended by this process, which is going (a program may exit 0 on SIGTERM): no success
            const interrupted = this.interrupted(data);
            if (interrupted !== undefined) return reject(interrupted);
            const problem = data.kind === 'function' ? this.wire.problem(value, 'the result') : undefined;
            if (problem === undefined) resolve(value);
            else
              reject(
                new UnserializableValueError(
                  `task ${data.label ?? data.name} (${data.id}) returned a value that cannot be sent back from ` +
                    `${this.options.name} by ${this.wire.name}: ${problem}. Return plain data.`,
                ),
              );
          },
        }),
      );
    });
  }

  /** Stops the attempt `key` if it runs here (its promise rejects with `reason`); false if it does not. */
  stop(key: string, reason: Error): boolean {
    const entry = this.running.get(key);
    if (entry === undefined) return false;
    entry.stop(reason);
    return true;
  }

  /**
   * Withdraws the attempt `key` if it still waits for its cores (a gated host): it never starts here, and its
   * `execute` rejects with `AttemptWithdrawn`; resolves true. False if it started (or holds its cores), or is not here.
   */
  async withdraw(key: string): Promise<boolean> {
    const withdraw = this.running.get(key)?.withdraw;
    return withdraw !== undefined && (await withdraw());
  }

  /** Stops every running attempt with `reason`. */
  stopAll(reason: Error): void {
    for (const entry of [...this.running.values()]) entry.stop(reason);
  }

  /** Waits for the stopped programs to be gone, and releases the threads (and the spawner). */
  async close(): Promise<void> {
    await this.functions?.close();
    while (this.ending.size > 0) await Promise.all([...this.ending]);
    if (this.markPrefix !== undefined && this.attempts > 0) {
      const prefix = this.markPrefix;
      await killMarked({ mark: (t) => t.startsWith(prefix), since: Number(startOf(process.pid) ?? 0) }, 3);
    }
    await this.spawner.close();
  }

  /** The error as a user of this host reads it: an unknown task name names the host and its modules. */
  private explained(err: unknown, data: AttemptData): unknown {
    if ((err as { code?: unknown } | null)?.code !== 'UNKNOWN_TASK' || this.functions === undefined) return err;
    const { name, modules, modulesOption } = this.options;
    return new UnknownTaskError(
      `no task named "${data.name}" is defined by the modules ${name} was started with (${modulesOption} ` +
        `${modules.join(', ')}): define it with defineTask("${data.name}", fn) in one of them and export it, or ` +
        `start it with ${modulesOption} <the module that defines it>`,
    );
  }

  private work(job: Job, data: AttemptData, withdrawable: (withdraw: Withdraw) => void): Observable<unknown> {
    if (data.kind === 'function') {
      if (this.runner !== undefined) return this.runInline(job);
      if (this.functions === undefined && this.options.modules.length > 0)
        throw new Error(`${this.options.name}: no thread pool to run function tasks on (TaskHostOptions.pool)`);
      if (this.functions === undefined) {
        throw new UnknownTaskError(
          `${this.options.name} was started without ${this.options.modulesOption}, so it runs no function tasks ` +
            `(asked for "${data.name}"): start it with ${this.options.modulesOption} <the module that defines it>`,
        );
      }
      return this.options.gate !== undefined
        ? gated(this.options.gate, job, this.functions, withdrawable)
        : this.functions.run(job);
    }
    if (data.place === undefined)
      throw new InvalidTaskDescriptionError(`executable task ${data.id} does not say where to run it (place)`);
    const prefix = this.markPrefix;
    return runLocalExecutable(job, {
      ...data.place,
      mpi: {},
      workerEnv: {},
      ending: this.ending,
      ...(this.spawnerGate !== undefined ? { spawnerGate: this.spawnerGate } : { gate: this.options.gate }),
      spawner: this.spawner,
      withdrawable,
      ...(prefix !== undefined && { marks: { next: () => `${prefix}0-${++this.attempts}-000000000000` } }),
    });
  }

  /**
   * The error of an attempt that ended while this process was interrupted (SIGTERM: its Slurm allocation or job ended,
   * ...), which ends its programs and starts none (interrupt.ts): what they did then is not their task's outcome.
   * Undefined if it was not.
   */
  private interrupted(data: AttemptData): WorkerCrashedError | undefined {
    if (!isInterrupted()) return undefined;
    return new WorkerCrashedError(
      `task ${data.label ?? data.name} (${data.id}) did not finish on ${this.options.name}: that process was ` +
        'interrupted (SIGTERM, SIGINT or SIGHUP: its Slurm allocation or job ended?) and ended its programs',
    );
  }

  /** A function task on this event loop (`inline`), through the remote runner. */
  private runInline(job: Job): Observable<unknown> {
    const runner = this.runner!;
    if ((job.requirements.ranks ?? 1) > 1) {
      throw new UnsatisfiableRequirementsError(
        `task ${job.label ?? job.name} (${job.id}) has ${job.requirements.ranks} ranks, but ${this.options.name} ` +
          `runs functions inline (--inline), one rank each: run it where functions run on threads`,
      );
    }
    return new Observable<unknown>((subscriber) => {
      const stop = new RunStop();
      const settle = (outcome: RemoteOutcome): void => {
        if (outcome.ok) {
          subscriber.next(outcome.value);
          subscriber.complete();
        } else subscriber.error(reviveError(outcome.error));
      };
      const outcome = runner.run(
        { name: job.name, args: job.args, id: job.id, label: job.label, attempt: job.attempt, version: job.version },
        stop,
      );
      if (outcome instanceof Promise) void outcome.then(settle);
      else settle(outcome);
      return () => stop.abort(job.signal.aborted ? (job.signal.reason as Error) : new Error('the task was stopped'));
    });
  }
}

/**
 * A function attempt that starts once the gate grants its cores, and gives them back when it ends (stopped, once its
 * run has ended: the threads say so through `holdUntil`); withdrawn while it waits, it ends with `AttemptWithdrawn`.
 */
function gated(
  gate: CoreGate,
  job: Job,
  functions: BackendExecutor,
  withdrawable: (withdraw: Withdraw) => void,
): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    const ticket = gate.enter(footprint(job.requirements).cores);
    let work: Subscription | undefined;
    let closed = false;
    /** what goes on after it was stopped (its run in the thread, until it returns or the thread is ended) */
    let ending: Promise<unknown> | undefined;
    const held: Job = {
      ...job,
      holdUntil: (ended) => {
        job.holdUntil?.(ended);
        ending = ended;
      },
    };
    const start = (): void => {
      if (closed) return;
      work = functions.run(held).subscribe({
        next: (v) => subscriber.next(v),
        error: (e: unknown) => subscriber.error(e),
        complete: () => subscriber.complete(),
      });
    };
    withdrawable(() => {
      if (closed || ticket.granted) return Promise.resolve(false);
      closed = true;
      gate.leave(ticket);
      subscriber.error(new AttemptWithdrawn());
      return Promise.resolve(true);
    });
    if (ticket.granted) start();
    else void ticket.ready.then(start);
    return () => {
      closed = true;
      work?.unsubscribe();
      if (ending === undefined) return gate.leave(ticket);
      const leave = (): void => gate.leave(ticket);
      ending.then(leave, leave);
    };
  });
}
