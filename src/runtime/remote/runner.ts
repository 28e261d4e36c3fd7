/**
 * The remote side of every backend that runs functions away from the submitting program's event loop:
 * load the task modules, find the function by NAME in the `defineTask` registry (never `eval`), give it
 * `currentTask()`, run it, and answer with its outcome as data (`RemoteOutcome`): the value (checked
 * against the wire it goes back on) or the error, recorded. The `threads()` worker
 * (`runtime/threads/worker.ts`) and the `scalems-task` entry point of Slurm job steps
 * (`cli/task-entry.ts`) are thin entries over it; each adds only its transport.
 */
import { FunctionVersionError, NoAmbientScopeError, UnknownTaskError, UnserializableValueError } from '../../errors';
import { recordError } from '../../recorded-error';
import { installAsyncLocalCarrier } from '../../context/async-local';
import { runInScope } from '../../context/ambient';
import { declaredVersion, invocable, lookupTask } from '../../task/spec';
import { isThenable } from '../../util';
import type { RunningTaskScope, TaskContext } from '../attempt';
import type { Communicator } from '../backend';
import { loadModules, type ModuleDigests } from './modules';
import type { RemoteOutcome, Wire } from './wire';

/** One run of one task, as the remote side gets it. */
export interface RemoteRequest {
  /** registered task name */
  readonly name: string;
  readonly args: readonly unknown[];
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  /** the version declared for the function where the task was submitted: a function declared otherwise is refused */
  readonly version?: string;
}

export interface RunnerOptions {
  /** absolute paths of the task modules */
  readonly modules: readonly string[];
  /** where tasks run, for messages: "a threads() worker", "a Slurm job step" */
  readonly where: string;
  /** the option that lists the modules, for messages: "threads({ modules })" */
  readonly modulesOption: string;
  /** how results travel back */
  readonly wire: Wire;
  /** the modules' digests as the submitting program read them (`moduleDigests`): one changed since is not loaded */
  readonly digests?: ModuleDigests;
}

/** What a run may have besides its request: the ranks' communicator, the working directory. */
export interface RunExtras {
  readonly comm?: Communicator;
  readonly workdir?: string;
}

/**
 * The stop of one run. Its AbortController is made only when the function asks for its signal (or when
 * it is aborted): most tasks never do, and a controller costs microseconds.
 */
export class RunStop {
  private controller: AbortController | undefined;
  private early: Error | undefined;

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.early !== undefined) this.controller.abort(this.early);
    }
    return this.controller.signal;
  }

  /** why the run was stopped, if it was */
  get reason(): Error | undefined {
    return this.controller !== undefined ? (this.controller.signal.reason as Error | undefined) : this.early;
  }

  abort(reason: Error): void {
    if (this.controller !== undefined) this.controller.abort(reason);
    else this.early ??= reason;
  }
}

/** What `currentTask()` gives a function on the remote side; also its ambient scope. */
class RemoteTask implements TaskContext, RunningTaskScope {
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;

  constructor(
    req: RemoteRequest,
    private readonly stop: RunStop,
    private readonly where: string,
    readonly comm: Communicator | undefined,
    readonly workdir: string | undefined,
  ) {
    this.id = req.id;
    this.label = req.label;
    this.attempt = req.attempt;
  }

  get signal(): AbortSignal {
    return this.stop.signal;
  }

  get context(): TaskContext {
    return this;
  }

  get submit(): TaskContext['submit'] {
    return () => {
      throw new NoAmbientScopeError(
        `currentTask().submit() is not available inside ${this.where}: return data from the task and submit ` +
          `follow-up work from the main program`,
      );
    };
  }

  awaitOther<R>(settled: Promise<R>): Promise<R> {
    return settled;
  }
}

export class RemoteRunner {
  private loaded = false;
  private loading: Promise<void> | undefined;

  constructor(private readonly options: RunnerOptions) {
    installAsyncLocalCarrier();
  }

  /**
   * Runs one request. A function that returns at once is answered at once (no promise, no extra
   * turn); an async one when it settles. Never throws: every failure is an outcome.
   */
  run(req: RemoteRequest, stop: RunStop, extras: RunExtras = {}): RemoteOutcome | Promise<RemoteOutcome> {
    if (!this.loaded) {
      this.loading ??= loadModules(this.options.modules, this.options.where, this.options.digests).then(() => {
        this.loaded = true;
      });
      return this.loading.then(
        () => this.run(req, stop, extras),
        (err: unknown) => failed(err),
      );
    }
    // stopped while the modules loaded (cancelled, timed out, the step got SIGTERM): do not start it
    if (stop.reason !== undefined) return failed(stop.reason);
    const fn = lookupTask(req.name);
    if (fn === undefined) {
      return failed(
        new UnknownTaskError(
          `no task named "${req.name}" is defined by the modules given ` +
            `to ${this.options.modulesOption} (${this.options.modules.join(', ') || 'none'}): define it with ` +
            `defineTask("${req.name}", fn) in one of them and export it`,
        ),
      );
    }
    const version = declaredVersion(fn);
    if (version !== req.version) {
      const which = (v: string | undefined): string => (v === undefined ? 'no declared version' : `version "${v}"`);
      return failed(
        new FunctionVersionError(
          `task ${req.label ?? req.name} (${req.id}) was submitted with ${which(req.version)} of function ` +
            `"${req.name}", but ${this.options.where} has ${which(version)} (from ` +
            `${this.options.modules.join(', ') || 'its modules'}), so it was not run: its result would be stored ` +
            'as the other version’s. Run the same code on both sides (restart workers after a change).',
        ),
      );
    }
    let value: unknown;
    try {
      const task = new RemoteTask(req, stop, this.options.where, extras.comm, extras.workdir);
      value = runInScope({ task }, () => invocable(fn)(...req.args));
    } catch (err) {
      return failed(err);
    }
    if (isThenable(value)) {
      return Promise.resolve(value).then(
        (v) => this.answer(req, v, extras),
        (err: unknown) => failed(err),
      );
    }
    return this.answer(req, value, extras);
  }

  /**
   * The outcome of a run that returned `value`. Only rank 0's result is the task's: the other ranks' are not sent back.
   */
  private answer(req: RemoteRequest, value: unknown, extras: RunExtras): RemoteOutcome {
    const result = extras.comm !== undefined && extras.comm.rank !== 0 ? undefined : value;
    let problem: string | undefined;
    try {
      problem = this.options.wire.problem(result, 'the result');
    } catch (err) {
      // a getter that throws, a revoked Proxy: before, the thread died of it (WorkerCrashedError)
      problem = `reading it threw ${recordError(err).message}`;
    }
    if (problem !== undefined) {
      return failed(
        new UnserializableValueError(
          `task ${req.label ?? req.name} (${req.id}) returned a value that cannot be sent back ` +
            `from ${this.options.where} by ${this.options.wire.name}: ${problem}. Return plain data.`,
        ),
      );
    }
    return { ok: true, value: result };
  }
}

function failed(err: unknown): RemoteOutcome {
  return { ok: false, error: recordError(err) };
}
