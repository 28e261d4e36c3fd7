import { asyncScheduler, type Subscription } from 'rxjs';
import type { Workflow } from '../store/workflow';
import { taskRecord, type TaskRecord } from '../store/state';
import { SPEC_FN, call, invocable, isTaskSpec, lookupTask, type AnyFunction, type TaskArgs, type TaskSpec } from '../task/spec';
import { footprint, retryPolicy, validateTaskRequirements, validateWorkerRequirements, type Footprint, type TaskRequirements, type WorkerRequirements } from '../task/requirements';
import { ExecutorShutdownError, UnknownTaskError, UnsatisfiableRequirementsError, WalltimeExceededError } from '../errors';
import type { BackendExecutor, Capacity, Communicator, Job } from './backend';
import { captureContext, runInScope } from './context';
import { entryOf, type TaskEntry } from './entry';
import { encodeArgs, resolveArgs, taskId } from './identity';
import { artifactsOf } from '../task/executable';
import { recordError } from './outcome';
import { Admission, type Candidate, type Hold } from './admission';
import { Task, retain, release } from './task';
import type { Runtime } from './runtime';

/** What a running task sees through `currentTask()`. */
export interface TaskContext {
  readonly id: string;
  readonly label: string | undefined;
  /** aborted when the task is cancelled or exceeds its walltime */
  readonly signal: AbortSignal;
  /** 1 for the first attempt, 2 for the first retry, ... */
  readonly attempt: number;
  /** Submits a child task on the same executor. Awaiting it gives this task's slot back meanwhile. */
  submit<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): Task<Awaited<ReturnType<F>>>;
  submit<R>(spec: TaskSpec<R>): Task<R>;
  /** ranks of a function task with `ranks > 1` (threads backend) */
  readonly comm?: Communicator;
  /** the task's working directory (process-based backends) */
  readonly workdir?: string;
}

/** @internal the ambient scope of a running in-process task */
export interface RunningTaskScope {
  readonly entry: TaskEntry;
  readonly context: TaskContext;
  awaitOther<R>(settled: Promise<R>): Promise<R>;
}

export interface ExecutorOptions {
  /** a name to refer to it by (`workflow.submitDescription({ executor })`); default: its id */
  readonly name?: string;
  /** what the executor scope provisions (cores, gpus, memory, ...): validated at creation */
  readonly worker?: WorkerRequirements;
  /** defaults for every task of this executor: validated at creation */
  readonly task?: TaskRequirements;
}

/** One attempt at running a task: the resources it holds, and the signal that tells its work to stop. */
class Attempt implements Hold {
  holding = false;
  finished = false;
  waits = 0;
  sub: Subscription | undefined = undefined;
  timer: Subscription | undefined = undefined;
  /** made when somebody asks for the signal: most tasks never do, and an AbortController is not free */
  private controller: AbortController | undefined = undefined;
  private stopped = false;
  private reason: unknown = undefined;

  constructor(
    readonly number: number,
    readonly need: Footprint,
  ) {}

  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.stopped) this.controller.abort(this.reason);
    }
    return this.controller.signal;
  }

  abort(reason: unknown): void {
    if (this.stopped) return;
    this.stopped = true;
    this.reason = reason;
    this.controller?.abort(reason);
  }
}

let executors = 0;

/**
 * A scope of homogeneous requirements on a runtime, like `concurrent.futures.Executor`: tasks submitted
 * to it run on its backend within its capacity. Disposing it (`await using`) is `shutdown({ wait: false })`:
 * it takes no new work, its tasks still finish, and its resources are released once they have.
 */
export class Executor implements AsyncDisposable {
  readonly id: string;
  readonly name: string;
  readonly workflow: Workflow;
  readonly worker: WorkerRequirements;
  readonly defaults: TaskRequirements;
  readonly capacity: Capacity;
  private readonly backend: BackendExecutor;
  private readonly admission: Admission;
  private readonly attempts = new Map<string, Attempt>();
  private readonly notBefore = new Map<string, number>();
  private readonly impure = new Map<string, number>();
  private outstanding = 0;
  private accepting = true;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private readonly unlisten: Array<() => void>;

  /** @internal use `executor(runtime, options)` */
  constructor(
    readonly runtime: Runtime,
    options: ExecutorOptions = {},
  ) {
    this.id = `executor-${++executors}`;
    this.name = options.name ?? this.id;
    this.workflow = runtime.workflow;
    const clash = this.workflow.executors.get(this.name);
    if (clash !== undefined && !clash.isShutdown) throw new TypeError(`an executor named "${this.name}" is already open on workflow "${this.workflow.name}"`);
    this.worker = validateWorkerRequirements(options.worker ?? {}, 'executor worker requirements');
    this.defaults = validateTaskRequirements(options.task ?? {}, 'executor task requirements');
    this.backend = runtime.backend.open(this.worker, { workflow: this.workflow, executorId: this.id });
    this.capacity = this.backend.capacity;
    this.admission = new Admission(this.capacity, (id) => this.candidate(id));
    const problem = this.unsatisfiable(this.defaults);
    if (problem !== undefined) {
      void this.backend.close();
      throw new UnsatisfiableRequirementsError(`executor task requirements can never be met: ${problem}`);
    }
    this.unlisten = [
      this.workflow.onReady(this.id, (rec) => this.onReady(rec)),
      this.workflow.onSettled(this.id, (rec) => this.onSettled(rec)),
    ];
    this.workflow.executors.set(this.name, this);
  }

  /** Submits `fn(...args)` (or a spec) now, like `asyncio.create_task`: it runs whether or not anybody awaits it. */
  submit<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): Task<Awaited<ReturnType<F>>>;
  submit<R>(spec: TaskSpec<R>): Task<R>;
  submit(fnOrSpec: AnyFunction | TaskSpec, ...args: unknown[]): Task<unknown> {
    const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(args as []));
    return this.submitSpec(spec, { pinned: true });
  }

  /** @internal `pinned: false` tasks are cancelled when nobody awaits them any more (see `submitOn`). */
  submitSpec<R>(spec: TaskSpec<R>, options: { pinned: boolean; parent?: string }): Task<R> {
    if (!this.accepting) throw new ExecutorShutdownError(`executor ${this.id} has been shut down and accepts no new tasks; submit to a new executor`);
    if (!isTaskSpec(spec)) throw new TypeError(`expected a TaskSpec (from call(fn, ...args) or executable(...)), got ${String(spec)}`);
    const requirements: TaskRequirements = spec.requirements === undefined ? this.defaults : { ...this.defaults, ...validateTaskRequirements(spec.requirements) };
    this.backend.accept?.(spec);
    const encoded = encodeArgs(spec.args, this.workflow);
    const fn = spec[SPEC_FN];
    let id = taskId(spec, encoded.canonical, fn);
    if (spec.pure === false && spec.key === undefined) {
      const n = (this.impure.get(id) ?? 0) + 1;
      this.impure.set(id, n);
      id = taskId({ ...spec, key: `#${n}` }, encoded.canonical, fn);
    }
    const wf = this.workflow;
    const entry = entryOf(wf, id);
    if (entry.handle !== undefined) {
      if (options.pinned) entry.pinned = true;
      if (spec.label !== undefined) wf.setLabel(id, spec.label);
      return entry.handle as Task<R>;
    }
    if (spec.label !== undefined) {
      const holder = wf.labelled(spec.label);
      if (holder !== undefined && holder !== id) wf.setLabel(id, spec.label); // throws DuplicateLabelError, naming the holder
    }
    wf.store.assertStorable?.(`task:${id}.args`, encoded.args);
    const handle = new Task<R>(wf, id);
    entry.handle = handle;
    entry.pinned = options.pinned;
    if (wf.stateOf(id) === 'succeeded') return handle; // restored: served from the store
    entry.fn = fn;
    entry.snapshot = captureContext();
    entry.cancel = (reason) => this.cancelTask(id, reason);
    for (const input of encoded.inputs) retain(entryOf(wf, input));
    this.outstanding++;
    wf.dispatch({
      type: 'submit',
      task: {
        id,
        kind: spec.kind,
        name: spec.name,
        args: encoded.args,
        requirements,
        label: spec.label,
        key: spec.key,
        executor: this.id,
        parent: options.parent,
        inputs: encoded.inputs,
      },
      now: wf.now(),
    });
    const problem = this.unsatisfiable(requirements);
    if (problem !== undefined) {
      const err = new UnsatisfiableRequirementsError(`task ${spec.label ?? spec.name} (${id}) can never run on executor ${this.id}: ${problem}`);
      entry.error = err;
      wf.dispatch({ type: 'fail', id, error: recordError(err), now: wf.now() });
    }
    return handle;
  }

  /** Stops taking work. With `wait`, resolves once every task of this executor has settled and its resources are released. */
  shutdown(options: { wait?: boolean } = {}): Promise<void> {
    this.accepting = false;
    this.closing ??= new Promise<void>((resolve) => {
      this.drained = resolve;
      this.maybeDrained();
    }).then(async () => {
      for (const stop of this.unlisten) stop();
      if (this.workflow.executors.get(this.name) === this) this.workflow.executors.delete(this.name);
      await this.backend.close();
    });
    return options.wait === true ? this.closing : Promise.resolve();
  }

  /** `await using ex = executor(...)`: shutdown without waiting. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown({ wait: false });
  }

  /** True once `shutdown` was called. */
  get isShutdown(): boolean {
    return !this.accepting;
  }

  private unsatisfiable(req: TaskRequirements): string | undefined {
    const need = footprint(req);
    const ranks = req.ranks ?? 1;
    if (need.cores > this.capacity.cores) {
      return `it needs ${need.cores} cores (ranks ${ranks} × coresPerRank ${req.coresPerRank ?? 1}) but the executor has ${this.capacity.cores}`;
    }
    if (need.gpus > this.capacity.gpus) return `it needs ${need.gpus} GPUs (ranks ${ranks} × gpusPerRank ${req.gpusPerRank ?? 0}) but the executor has ${this.capacity.gpus}`;
    if (need.memoryMB > this.capacity.memoryMB) return `it needs ${need.memoryMB} MB of memory but the executor has ${this.capacity.memoryMB} MB`;
    return undefined;
  }

  private onReady(rec: TaskRecord): void {
    const due = this.notBefore.get(rec.id);
    if (due !== undefined) {
      this.notBefore.delete(rec.id);
      const delay = due - this.workflow.now();
      if (delay > 0) {
        asyncScheduler.schedule(() => this.enqueue(rec.id), delay);
        return;
      }
    }
    this.enqueue(rec.id);
  }

  private enqueue(id: string): void {
    this.admission.enqueue(id);
  }

  private pump(): void {
    this.admission.pump();
  }

  /** The queued task `id`, if it is still to be started. */
  private candidate(id: string): Candidate | undefined {
    if (this.workflow.stateOf(id) !== 'ready' || this.attempts.has(id)) return undefined;
    const rec = taskRecord(this.workflow.state, id)!;
    const need = footprint(rec.requirements);
    return { need, start: () => this.start(rec, need) };
  }

  private onSettled(rec: TaskRecord): void {
    const entry = entryOf(this.workflow, rec.id);
    entry.snapshot = undefined;
    entry.fn = undefined;
    entry.cancel = undefined;
    const attempt = this.attempts.get(rec.id);
    if (attempt !== undefined) this.stopAttempt(rec.id, attempt, undefined);
    for (const input of rec.inputs) release(entryOf(this.workflow, input));
    this.outstanding--;
    this.maybeDrained();
    this.pump();
  }

  private maybeDrained(): void {
    if (!this.accepting && this.outstanding === 0 && this.drained !== undefined) {
      const done = this.drained;
      this.drained = undefined;
      done();
    }
  }

  private start(rec: TaskRecord, need: Footprint): void {
    const wf = this.workflow;
    const id = rec.id;
    const entry = entryOf(wf, id);
    const attempt = new Attempt(rec.attempts + 1, need);
    this.admission.take(attempt);
    this.attempts.set(id, attempt);
    wf.dispatch({ type: 'start', id, now: wf.now() });
    const args = rec.inputs.length === 0 ? rec.args : resolveArgs(rec.args, (input) => taskRecord(wf.state, input)?.result);
    const job: Job = {
      id,
      label: rec.label,
      kind: rec.kind,
      name: rec.name,
      args,
      requirements: rec.requirements,
      attempt: attempt.number,
      get signal() {
        return attempt.signal;
      },
      workflow: wf,
      invoke: (extra) => this.invoke(entry, rec, args, attempt, extra),
    };
    const walltime = rec.requirements.walltime;
    if (walltime !== undefined) {
      attempt.timer = asyncScheduler.schedule(() => {
        this.finish(id, attempt, { ok: false, error: new WalltimeExceededError(`task ${rec.label ?? rec.name} (${id}) exceeded its walltime of ${walltime} s and was stopped`) });
      }, walltime * 1000);
    }
    let value: unknown;
    const sub = this.backend.run(job).subscribe({
      next: (v) => (value = v),
      error: (error: unknown) => this.finish(id, attempt, { ok: false, error }),
      complete: () => this.finish(id, attempt, { ok: true, value }),
    });
    if (attempt.finished) sub.unsubscribe();
    else attempt.sub = sub;
  }

  private invoke(entry: TaskEntry, rec: TaskRecord, args: readonly unknown[], attempt: Attempt, extra?: { comm?: Communicator; workdir?: string }): unknown {
    const fn = entry.fn ?? lookupTask(rec.name);
    if (fn === undefined) {
      throw new UnknownTaskError(`no function named "${rec.name}" is registered in this process: define it with defineTask("${rec.name}", fn) in a module this program imports`);
    }
    const context: TaskContext = {
      id: rec.id,
      label: taskRecord(this.workflow.state, rec.id)?.label ?? rec.label,
      get signal() {
        return attempt.signal;
      },
      attempt: attempt.number,
      submit: ((fnOrSpec: AnyFunction | TaskSpec, ...more: unknown[]) => {
        const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(more as []));
        return this.submitSpec(spec, { pinned: true, parent: rec.id });
      }) as TaskContext['submit'],
      ...(extra?.comm !== undefined ? { comm: extra.comm } : {}),
      ...(extra?.workdir !== undefined ? { workdir: extra.workdir } : {}),
    };
    const scope: RunningTaskScope = { entry, context, awaitOther: (settled) => this.awaitOther(attempt, settled) };
    const run = (): unknown => runInScope({ task: scope, executor: this, workflow: this.workflow }, () => invocable(fn)(...args));
    return entry.snapshot !== undefined ? entry.snapshot(run) : run();
  }

  /** A running task waits for another: give its resources back until the wait is over, then take them again. */
  private awaitOther<R>(attempt: Attempt, settled: Promise<R>): Promise<R> {
    if (attempt.finished) return settled;
    attempt.waits++;
    if (attempt.waits === 1 && attempt.holding) {
      this.admission.release(attempt);
      this.pump();
    }
    const resume = (): Promise<void> => {
      attempt.waits--;
      if (attempt.waits > 0 || attempt.finished) return Promise.resolve();
      return this.admission.resume(attempt);
    };
    return settled.then(
      async (value) => {
        await resume();
        return value;
      },
      async (err: unknown) => {
        await resume();
        throw err;
      },
    );
  }

  private finish(id: string, attempt: Attempt, outcome: { ok: true; value: unknown } | { ok: false; error: unknown }): void {
    if (attempt.finished) return;
    this.stopAttempt(id, attempt, outcome.ok ? undefined : outcome.error);
    const wf = this.workflow;
    if (outcome.ok) {
      try {
        if (outcome.value !== undefined) wf.store.assertStorable?.(`task:${id}.result`, outcome.value);
      } catch (err) {
        // a result the store cannot keep fails its task (no retry: it would be the same result)
        entryOf(wf, id).error = err;
        wf.dispatch({ type: 'fail', id, error: recordError(err), now: wf.now() });
        this.pump();
        return;
      }
      const artifacts = wf.stateOf(id) === 'running' && taskRecord(wf.state, id)?.kind === 'executable' ? artifactsOf(outcome.value) : undefined;
      wf.dispatch({ type: 'succeed', id, result: outcome.value, ...(artifacts !== undefined ? { artifacts } : {}), now: wf.now() });
    } else {
      const rec = wf.record(id);
      const policy = retryPolicy(rec?.requirements ?? {});
      if (attempt.number <= policy.max) {
        const delay = policy.backoff * 1000 * policy.factor ** (attempt.number - 1);
        if (delay > 0) this.notBefore.set(id, wf.now() + delay);
        wf.dispatch({ type: 'retry', id, error: recordError(outcome.error), now: wf.now() });
      } else {
        entryOf(wf, id).error = outcome.error;
        wf.dispatch({ type: 'fail', id, error: recordError(outcome.error), now: wf.now() });
      }
    }
    this.pump();
  }

  /** Ends an attempt: stops its timer, tells the work to stop if it is still going, frees its resources. */
  private stopAttempt(id: string, attempt: Attempt, reason: unknown): void {
    attempt.finished = true;
    this.attempts.delete(id);
    attempt.timer?.unsubscribe();
    if (reason !== undefined) attempt.abort(reason);
    attempt.sub?.unsubscribe();
    this.admission.release(attempt);
  }

  private cancelTask(id: string, reason: Error): void {
    const state = this.workflow.stateOf(id);
    if (state === undefined || state === 'succeeded' || state === 'failed' || state === 'cancelled') return;
    const attempt = this.attempts.get(id);
    if (attempt !== undefined) this.stopAttempt(id, attempt, reason);
    entryOf(this.workflow, id).error = reason;
    this.workflow.dispatch({ type: 'cancel', id, reason: recordError(reason), now: this.workflow.now() });
    this.pump();
  }
}
