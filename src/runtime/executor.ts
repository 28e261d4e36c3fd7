/**
 * `Executor`: a scope of requirements on a runtime; submission, admission, attempts, retries, walltime,
 * cancellation and shutdown of its tasks.
 */
import { asyncScheduler, type Subscription } from 'rxjs';
import type { Workflow } from './workflow';
import {
  SPEC_FN,
  call,
  invocable,
  isTaskSpec,
  lookupTask,
  registeredName,
  type AnyFunction,
  type TaskArgs,
  type TaskSpec,
} from '../task/spec';
import {
  MAX_TIMER_SECONDS,
  footprint,
  nearest,
  show,
  retryPolicy,
  validateTaskRequirements,
  validateWorkerGroups,
  type TaskRequirements,
  type WorkerRequirements,
} from '../task/requirements';
import { checkOptions, rules, type RulesOf } from '../task/options';
import {
  AmbiguousTaskError,
  ExecutorShutdownError,
  InvalidOptionsError,
  InvalidTaskDescriptionError,
  ScalemsError,
  UnknownTaskError,
  UnsatisfiableRequirementsError,
  UnserializableValueError,
  WalltimeExceededError,
  WorkerCrashedError,
} from '../errors';
import type { Capacity, Communicator } from './backend';
import { Attempt, RunningTask, type AttemptOwner } from './attempt';
import { captureContext, detached, runInScope } from '../context/ambient';
import { contentAtSubmit, entryOf, entryOfSlot, type TaskEntry, type TaskOwner } from './entry';
import { isThenable } from '../util';
import type { TaskSlot } from '../store/slot';
import { isFinal, type TaskRecord } from '../store/state';
import { checkLabel } from '../store/graph';
import { encodeArgs, functionIdentity, resolveArgs, taskId } from './identity';
import { objectToken } from '../task/hash';
import type { SubmittedTask } from '../store/reducer';
import { artifactsOf } from '../task/executable';
import { frozenResult } from '../store/frozen';
import { recordError } from '../recorded-error';
import type { Need } from './admission';
import { WorkerGroups, type Group, type WorkerGroup } from './groups';
import { Task, retain, release } from './task';
import type { Runtime } from './runtime';
import { isInterrupted } from './interrupt';

export interface ExecutorOptions {
  /**
   * A name to refer to it by (`workflow.submitDescription({ executor })`).
   * @default its id, `executor-<n>`
   */
  readonly name?: string;
  /**
   * What the executor scope provisions (cores, gpus, memory, ...): validated at creation. A list makes worker groups,
   * each provisioned on its own (on slurm(): an allocation each, with its agents) and named by its `name` (default
   * `group-<index>`); a task runs on the group its `group` requirement names, else on one whose capacity it fits.
   * @default what the backend gives one executor (for local backends: this machine's cores)
   */
  readonly worker?: WorkerRequirements | readonly WorkerRequirements[];
  /**
   * Defaults for every task of this executor, under each task's own: validated at creation.
   * @default {} (one rank of one core)
   */
  readonly task?: TaskRequirements;
}

let executors = 0;

/** How many `{ pure: false }` submissions of each work each workflow has had (the n-th is keyed `#n`). */
const impureCounts = new WeakMap<Workflow, Map<string, number>>();

/**
 * Per workflow, the tasks that had succeeded and run again under the same id (`Executor.lost`: files they made are
 * gone, or files they read changed): their new result may differ, so a task that takes it is not served its own
 * earlier result either, and runs again too.
 */
const runAgain = new WeakMap<Workflow, Set<string>>();

/**
 * A scope of homogeneous requirements on a runtime, like `concurrent.futures.Executor`: tasks submitted
 * to it run on its backend within its capacity. Disposing it (`await using`) is `shutdown({ wait: false })`:
 * it takes no new work, its tasks still finish, and its resources are released once they have.
 */
export class Executor implements AsyncDisposable {
  readonly id: string;
  readonly name: string;
  readonly workflow: Workflow;
  /** the worker requirements as validated: one worker's, or the list of its worker groups' */
  readonly worker: WorkerRequirements | readonly WorkerRequirements[];
  readonly defaults: TaskRequirements;
  /** what the executor provides at once: with worker groups, the sum of theirs (a task still runs within one group) */
  readonly capacity: Capacity;
  /** Its worker groups (one, unless `worker` was a list), in the order given: name, worker requirements, capacity. */
  readonly groups: readonly WorkerGroup[];
  private readonly workers: WorkerGroups;
  /** whether a backend of a group calls `job.invoke()` (then each submitter's context is captured) */
  private readonly invokes: boolean;
  /** groups whose backend refused a task at submit (`accept`), by task id: the task goes to the others */
  private readonly refused = new Map<string, ReadonlySet<Group>>();
  /** what a task with the executor's default requirements needs */
  private readonly defaultNeed: Need;
  private readonly notBefore = new Map<string, number>();
  /**
   * Tasks waiting out their backoff, ready: their route at its end. A task cancelled meanwhile drops it, so that the
   * backoff of that submission never starts the attempt of a later one (`task.retry()`) early.
   */
  private readonly backingOff = new Map<string, Subscription>();
  /**
   * Tasks whose last attempt was stopped and is still ending (`Job.holdUntil`): the next attempt waits for it, also on
   * another worker group (whose cores the stopped one does not hold), so that two attempts of one task never run side
   * by side.
   */
  private readonly ending = new Map<string, Promise<unknown>>();
  private outstanding = 0;
  private accepting = true;
  /** a pump is due after the current synchronous work (see `pumpSoon`) */
  private pumpDue = false;
  private drained: (() => void) | undefined;
  private closing: Promise<void> | undefined;
  private readonly unlisten: Array<() => void>;
  /** what this executor's attempts call back */
  private readonly owner: AttemptOwner = {
    invoke: (attempt, extra) => this.invoke(attempt, extra),
    succeed: (attempt, value) => this.succeed(attempt, value),
    fail: (attempt, error) => this.fail(attempt, error),
  };

  /** @internal use `executor(runtime, options)` */
  constructor(
    readonly runtime: Runtime,
    options: ExecutorOptions = {},
  ) {
    this.id = `executor-${++executors}`;
    this.name = options.name ?? this.id;
    this.workflow = runtime.workflow;
    const clash = this.workflow.executors.get(this.name);
    if (clash !== undefined && !clash.isShutdown)
      throw new InvalidOptionsError(
        `an executor named "${this.name}" is already open on workflow "${this.workflow.name}": ` +
          'give this one another name, or shut that one down first',
      );
    const named = validateWorkerGroups(options.worker ?? {});
    this.worker = Array.isArray(options.worker) ? named.map((g) => g.worker) : named[0]!.worker;
    this.defaults = validateTaskRequirements(options.task ?? {}, 'executor task requirements');
    this.workers = new WorkerGroups(
      runtime.backend,
      named,
      { workflow: this.workflow, executorId: this.id, executorName: this.name },
      { need: (slot) => this.need(slot), start: (group, slot, need) => this.start(group, slot, need) },
    );
    this.capacity = this.workers.capacity;
    this.groups = Object.freeze(
      this.workers.list.map(({ name, worker, capacity }): WorkerGroup => Object.freeze({ name, worker, capacity })),
    );
    this.invokes = this.workers.list.some((g) => g.backend.invokes !== false);
    this.defaultNeed = needOf(this.defaults);
    const problem = this.workers.problem(this.defaults);
    if (problem !== undefined) {
      void this.workers.close(() => undefined).catch(() => undefined);
      throw new UnsatisfiableRequirementsError(`executor task requirements can never be met: ${problem}`);
    }
    this.unlisten = [
      this.workflow.onReady(this.id, (slot) => this.onReady(slot)),
      this.workflow.onSettled(this.id, (slot) => this.onSettled(slot)),
    ];
    this.workflow.executors.set(this.name, this);
    const log = this.workflow.log;
    if (log.enabled('info')) {
      const figures = (c: Capacity): string => `${c.cores} cores, ${c.gpus} GPUs, ${c.memoryMB} MB`;
      const list = this.workers.list;
      log.info(
        `executor ${this.display} opened on ` +
          `${runtime.backend.kind}(): ` +
          (list.length === 1
            ? figures(this.capacity)
            : `worker groups ${list.map((g) => `"${g.name}" (${figures(g.capacity)})`).join(', ')}`),
      );
    }
  }

  /** Submits `fn(...args)` (or a spec) now, like `asyncio.create_task`: it runs whether or not anybody awaits it. */
  submit<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): Task<Awaited<ReturnType<F>>>;
  submit<R>(spec: TaskSpec<R>): Task<R>;
  submit(fnOrSpec: AnyFunction | TaskSpec, ...args: unknown[]): Task<unknown> {
    if (!isTaskSpec(fnOrSpec) && typeof fnOrSpec !== 'function')
      throw new InvalidTaskDescriptionError(
        `submit(fn, ...args) or submit(spec): expected a function or a TaskSpec (from call(fn, ...args) or ` +
          `executable(...)), got ${fnOrSpec === null ? 'null' : typeof fnOrSpec}`,
      );
    const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(args as []));
    return this.submitSpec(spec, { pinned: true });
  }

  /**
   * @internal `pinned: false` tasks are cancelled when nobody awaits them any more (see `submitOn`).
   * The same work submitted again is the same task: its handle, as it is; a failed or cancelled one runs again.
   */
  submitSpec<R>(spec: TaskSpec<R>, options: { pinned: boolean; parent?: string }): Task<R> {
    this.workflow.assertOpen();
    if (!this.accepting && !this.runs(options.parent))
      throw new ExecutorShutdownError(
        `executor ${this.display} has been shut down and accepts no new tasks; submit to a new executor`,
      );
    if (!isTaskSpec(spec))
      throw new InvalidTaskDescriptionError(
        `expected a TaskSpec (from call(fn, ...args) or executable(...)), got ${String(spec)}`,
      );
    // a spec spread with a misspelt field ({ ...call(fn), requirement: { walltime } }) ran without it
    for (const field in spec)
      if (!SPEC_FIELDS.includes(field)) {
        const near = nearest(field, SPEC_FIELDS);
        throw new InvalidTaskDescriptionError(
          `task ${spec.label ?? spec.name}: its spec has an unknown field "${field}"` +
            `${near === undefined ? '' : ` (did you mean "${near}"?)`}; a spec has ${SPEC_FIELDS.join(', ')}`,
        );
      }
    // a key is part of the task's id: a number would be hashed as its text, the same task as the string
    if (spec.key !== undefined && (typeof spec.key !== 'string' || spec.key === ''))
      throw new InvalidTaskDescriptionError(
        `task ${spec.label ?? spec.name}: key must be a non-empty string, got ${show(spec.key)}`,
      );
    if (spec.pure !== undefined && typeof spec.pure !== 'boolean')
      throw new InvalidTaskDescriptionError(
        `task ${spec.label ?? spec.name}: pure must be true or false, got ${show(spec.pure)}`,
      );
    const requirements: TaskRequirements =
      spec.requirements === undefined
        ? this.defaults
        : { ...this.defaults, ...validateTaskRequirements(spec.requirements) };
    const refused = this.workers.accept(spec, requirements, this.id);
    const wf = this.workflow;
    if (spec.label !== undefined) checkLabel(spec.label, `task ${spec.name}`);
    // the arguments as they are now (a copy: a later change to the caller's objects changes nothing)
    const encoded = encodeArgs(spec.args, wf, spec.kind === 'function');
    for (const input of encoded.inputs) {
      const upstream = wf.record(input);
      if (upstream === undefined)
        throw new InvalidTaskDescriptionError(
          `task ${spec.label ?? spec.name}: its arguments refer to task ${input} ({ $task: "${input}" }), which ` +
            `workflow "${wf.name}" does not have; pass the Task handle of a task submitted to this workflow`,
        );
      // a task of an earlier run that did not finish, and that this run has not submitted: nothing would ever run it,
      // and this one would wait for its result for good
      if (!isFinal(upstream.state) && entryOf(wf, input).handle === undefined)
        throw new InvalidTaskDescriptionError(
          `task ${spec.label ?? spec.name}: its arguments refer to task ${upstream.label ?? input} ` +
            `({ $task: "${input}" }), which an earlier run of workflow "${wf.name}" left ${upstream.state}, and ` +
            'which this run has not submitted, so nothing would run it. Submit it again first (the same call gives ' +
            'the same task), and pass its Task handle',
        );
    }
    const fn = spec[SPEC_FN];
    const persistent = wf.store.persistent !== false;
    const fnId = functionIdentity(spec.name, fn, !persistent);
    // what else a result depends on (input files) is the backend's, the same for each of its executors
    const content = this.workers.list[0]!.backend.identity?.(spec) ?? '';
    // and the environment it is given (its env requirement, its worker env): it may change the result as well
    const env = this.workers.envIdentity(requirements);
    // and, of its requirements, the number of its ranks: the size of an MPI program's world, or of a function's `comm`
    // (a task of one rank keeps the id it always had)
    const ranks = requirements.ranks ?? 1;
    const extra = (env === '' ? content : `${content}\u0001${env}`) + (ranks === 1 ? '' : `\u0002ranks=${ranks}`);
    let id = taskId(spec, encoded.canonical, fnId, extra);
    if (spec.pure === false && spec.key === undefined) {
      // numbered per workflow: the same work submitted impure on two of its executors is two tasks
      let impure = impureCounts.get(wf);
      if (impure === undefined) impureCounts.set(wf, (impure = new Map()));
      const n = (impure.get(id) ?? 0) + 1;
      impure.set(id, n);
      id = taskId({ ...spec, key: `#${n}` }, encoded.canonical, fnId, extra);
    }
    const entry = entryOf(wf, id);
    if (content !== '') contentAtSubmit.set(entry, content);
    const maker = persistent && fn !== undefined && registeredName(fn) === undefined ? objectToken(fn) : undefined;
    if (maker !== undefined && entry.maker !== undefined && entry.maker !== maker) {
      throw new AmbiguousTaskError(
        `task ${spec.label ?? spec.name} (${id}): another function of the same name ("${spec.name}") and source was ` +
          'submitted with the same arguments in this workflow. The two may close over different values, which ' +
          'cannot be part of a task’s identity, so one could be served the other’s result from the store. Define ' +
          'the function once with defineTask(name, fn) and pass what it closes over as arguments, or give each ' +
          'submission its own key: { ...call(fn, ...args), key }',
      );
    }
    let handle = entry.handle as Task<R> | undefined;
    if (handle !== undefined) {
      if (options.pinned) entry.pinned = true;
      if (spec.label !== undefined) wf.setLabel(id, spec.label);
      const state = entry.record?.state;
      if (state !== 'failed' && state !== 'cancelled' && !(state === 'succeeded' && this.lost(entry.record!, false)))
        return handle;
    } else {
      if (spec.label !== undefined) {
        const holder = wf.labelled(spec.label);
        // throws DuplicateLabelError, naming the holder, unless it is a task of an earlier run that this one has not
        // submitted: then the label goes to this task when it is entered (its record is new). A task of an earlier
        // run (served from the store, or run again) takes it now, as one of this run does: none is given twice, and
        // a record labelled otherwise by that run keeps its label (DuplicateLabelError: a label is set once)
        if ((holder !== undefined && holder !== id) || entry.record !== undefined) wf.setLabel(id, spec.label);
      }
      wf.store.assertStorable?.(`task:${id}.args`, encoded.args);
      handle = new Task<R>(wf, id, entry);
      entry.handle = handle;
      entry.pinned = options.pinned;
      entry.maker = maker;
      // restored: served from the store, unless files it made are gone
      if (entry.record?.state === 'succeeded' && !this.lost(entry.record, true)) return handle;
    }
    if (refused !== undefined) this.refused.set(id, refused);
    else if (this.refused.size > 0) this.refused.delete(id);
    this.enter(
      entry,
      {
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
      fn,
    );
    return handle;
  }

  /**
   * Whether files a succeeded task made (an executable's outputs, stdout, stderr: its record's `artifacts`) are gone:
   * its result would point at nothing, and the tasks that take them would fail; or whether files it read that its
   * identity names by an upstream task, not by content (its record's `read`), changed: its result is of other
   * content. It runs again instead.
   */
  private lost(rec: TaskRecord, restored: boolean): boolean {
    const why = this.staleBecause(rec, restored);
    if (why === undefined) return false;
    this.workflow.log.warn(`task ${rec.label ?? rec.name} (${rec.id}) succeeded, but ${why}: it runs again`);
    const again = runAgain.get(this.workflow) ?? new Set<string>();
    runAgain.set(this.workflow, again.add(rec.id));
    return true;
  }

  /**
   * Why a succeeded task's result is not to be served (see `lost`), or undefined. `restored`: its record is of an
   * earlier run, and this is its first submission in this one (then a task it takes that runs again in this run, under
   * the same id, makes it stale too; one it ran in this run ran on that task's new result).
   */
  private staleBecause(rec: TaskRecord, restored: boolean): string | undefined {
    const { artifacts, read } = rec;
    const backend = this.workers.list[0]!.backend;
    const gone = artifacts === undefined ? [] : (backend.missing?.(artifacts) ?? []);
    if (gone.length > 0)
      return `files it made are gone (${gone.map((name) => `${name}: ${artifacts![name]}`).join(', ')})`;
    const changed = read === undefined ? [] : (backend.changed?.(read) ?? []);
    if (changed.length > 0)
      return (
        'files it read that its identity does not hold by content (named by its upstream tasks, or a FIFO or device ' +
        `as its stdin, which is never known) read otherwise now (${changed.join(', ')})`
      );
    const again = restored ? runAgain.get(this.workflow) : undefined;
    const upstream = again === undefined ? undefined : rec.inputs.find((input) => again.has(input));
    if (upstream !== undefined) return `a task it takes (${upstream}) runs again, and its result may differ`;
    return undefined;
  }

  /**
   * @internal Runs a failed or cancelled task of this process again (`task.retry()`), as it was submitted: its
   * record's description, the function it was submitted with.
   */
  rerun(entry: TaskEntry): void {
    const rec = entry.record!;
    this.enter(
      entry,
      {
        id: rec.id,
        kind: rec.kind,
        name: rec.name,
        args: rec.args,
        requirements: rec.requirements,
        label: rec.label,
        key: rec.key,
        executor: this.id,
        parent: rec.parent,
        inputs: rec.inputs,
      },
      entry.fn,
    );
  }

  /** Makes this executor the owner of the task and submits it to the workflow (again, for a failed one). */
  private enter(entry: TaskEntry, task: SubmittedTask, fn: AnyFunction | undefined): void {
    const wf = this.workflow;
    // a failure not committed yet: its owner's bookkeeping for it is done now, before the task runs again
    if (entry.open) entry.owner?.settleTask(entry);
    entry.owner = this.asOwner;
    entry.open = true;
    entry.error = undefined;
    entry.attemptBase = entry.record?.attempts ?? 0;
    entry.fn = fn;
    if (this.invokes) entry.snapshot = captureContext(); // the context the function runs in, here
    for (const input of task.inputs) retain(entryOf(wf, input));
    this.outstanding++;
    wf.dispatch({ type: 'submit', task, now: wf.now(), slot: entry });
    const requirements = task.requirements;
    // the defaults were checked at creation
    const problem =
      requirements === this.defaults
        ? undefined
        : this.workers.problem(requirements, this.refused.size === 0 ? undefined : this.refused.get(task.id));
    if (problem !== undefined) {
      const err = new UnsatisfiableRequirementsError(
        `task ${task.label ?? task.name} (${task.id}) can never run on executor ${this.id}: ${problem}`,
      );
      entry.error = err;
      wf.dispatch({ type: 'fail', id: task.id, error: recordError(err), now: wf.now() });
    }
  }

  /**
   * Stops taking work. With `wait`, resolves once every task of this executor has settled and its resources are
   * released.
   */
  shutdown(options: { wait?: boolean } = {}): Promise<void> {
    checkOptions('shutdown', options, SHUTDOWN_OPTIONS);
    this.accepting = false;
    this.closing ??= new Promise<void>((resolve) => {
      this.drained = resolve;
      this.maybeDrained();
    }).then(async () => {
      for (const stop of this.unlisten) stop();
      if (this.workflow.executors.get(this.name) === this) this.workflow.executors.delete(this.name);
      const log = this.workflow.log;
      const several = this.workers.list.length > 1;
      await this.workers.close((group, error) =>
        log.error(
          `executor ${this.id}: ${several ? `the backend of its group "${group.name}"` : 'its backend'} failed to ` +
            `close: ${error instanceof Error ? error.message : String(error)}`,
        ),
      );
      log.info(`executor ${this.id} closed`);
      this.runtime.closed(this);
      this.asOwner.closed();
    });
    return options.wait === true ? this.closing : Promise.resolve();
  }

  /** `await using ex = executor(...)`: shutdown without waiting. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown({ wait: false });
  }

  /** @internal How messages name it: its id, or its name and id. */
  get display(): string {
    return this.name === this.id ? this.id : `"${this.name}" (${this.id})`;
  }

  /**
   * Whether task `id` runs on this executor now: shut down, it still takes that task's children (its tasks finish,
   * and one may need them to), until it has drained.
   */
  private runs(id: string | undefined): boolean {
    if (id === undefined) return false;
    const entry = entryOf(this.workflow, id);
    return entry.open && entry.owner === this.asOwner && entry.record?.state === 'running';
  }

  /** True once `shutdown` was called. */
  get isShutdown(): boolean {
    return !this.accepting;
  }

  /**
   * What its tasks' entries hold of it (`TaskEntry.owner`): it, until it has shut down and closed; then only what
   * messages say of it. The workflow keeps its tasks' entries: they must not keep every executor a long driver opened.
   */
  private readonly asOwner = new OwnerOf(this);

  private onReady(slot: TaskSlot): void {
    const before = this.ending.size === 0 ? undefined : this.ending.get(slot.id);
    if (before !== undefined) {
      const again = (): void => this.onReady(slot);
      void before.then(again, again); // after its release (see stopAttempt), which was chained first
      return;
    }
    const due = this.notBefore.size === 0 ? undefined : this.notBefore.get(slot.id);
    if (due !== undefined) {
      this.notBefore.delete(slot.id);
      const delay = due - this.workflow.now();
      if (delay > 0) {
        const id = slot.id;
        this.backingOff.get(id)?.unsubscribe();
        this.backingOff.set(
          id,
          asyncScheduler.schedule(() => {
            this.backingOff.delete(id);
            this.route(slot);
          }, delay),
        );
        return;
      }
    }
    this.route(slot);
  }

  private route(slot: TaskSlot): void {
    const rec = slot.record;
    if (rec === undefined) return;
    this.workers.route(slot, rec.requirements, this.refused.size === 0 ? undefined : this.refused.get(rec.id));
  }

  private pump(): void {
    this.workers.pump();
  }

  /**
   * Pumps once the current synchronous work is done, on the scheduler commits follow (virtual time under the virtual
   * backend), else in a microtask. For a cancel: tasks are cancelled in runs (a pipeline's teardown cancels its
   * window in submission order, a user cancels a list), and pumping after each would start the next queued task of
   * the run, only for the next cancel to stop it once its function (or program) had begun.
   */
  private pumpSoon(): void {
    if (this.pumpDue) return;
    this.pumpDue = true;
    const run = (): void => {
      this.pumpDue = false;
      this.pump();
    };
    const scheduler = this.runtime.backend.commitScheduler;
    // outside the canceller's async context, as a commit is
    detached(() => (scheduler !== undefined ? scheduler.schedule(run) : queueMicrotask(run)));
  }

  /** What the queued task needs, if it is still to be started. */
  private need(slot: TaskSlot): Need | undefined {
    const rec = slot.record;
    if (rec === undefined || rec.state !== 'ready' || entryOfSlot(slot).attempt !== undefined) return undefined;
    return rec.requirements === this.defaults ? this.defaultNeed : needOf(rec.requirements);
  }

  private onSettled(slot: TaskSlot): void {
    this.settleTask(entryOfSlot(slot));
  }

  /** @internal The bookkeeping for a settled task, once per submission (see `TaskOwner`). */
  settleTask(entry: TaskEntry): void {
    if (!entry.open) return;
    entry.open = false;
    const rec = entry.record!;
    // the context it ran in, released as it settles, whatever the outcome: a run again (task.retry(), the same work
    // submitted again) runs in the context it is asked for in (see `enter`)
    entry.snapshot = undefined;
    if (rec.state === 'succeeded') {
      // what running it again would need: kept for failed and cancelled tasks (task.retry())
      entry.fn = undefined;
    } else if (rec.state === 'failed' && rec === entry.committed) {
      // a failure for good, committed (not one settled early because the task runs again): was it received?
      this.workflow.unobserved.failed(entry, rec);
    }
    const attempt = entry.attempt as Attempt | undefined;
    if (attempt !== undefined) this.stopAttempt(attempt, undefined);
    for (const input of rec.inputs) release(entryOf(this.workflow, input));
    if (this.refused.size > 0 && rec.state === 'succeeded') this.refused.delete(rec.id);
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

  private start(group: Group, slot: TaskSlot, need: Need): void {
    if (isInterrupted()) return; // this process is ending its work before it dies (interrupt.ts)
    const wf = this.workflow;
    const rec = slot.record!;
    const entry = entryOfSlot(slot);
    const args = rec.inputs.length === 0 ? rec.args : resolveArgs(rec.args, (input) => wf.record(input)?.result);
    const attempt = new Attempt(entry, rec, args, need, wf, this.owner, group);
    // the content of the files its upstream tasks name (and a FIFO or device as its stdin), as it starts: it is served
    // later only on the same
    if (rec.kind === 'executable') attempt.read = group.backend.reads?.(rec.args, args);
    group.admission.take(attempt);
    entry.attempt = attempt;
    // which group ran it is recorded where there is a choice
    const several = this.workers.list.length > 1;
    wf.dispatch({ type: 'start', id: rec.id, now: wf.now(), slot, group: several ? group.name : undefined });
    const walltime = rec.requirements.walltime;
    if (walltime !== undefined && group.backend.enforcesWalltime !== true) {
      attempt.deadline = wf.now() + walltime * 1000;
      attempt.timer = asyncScheduler.schedule(() => {
        this.fail(
          attempt,
          new WalltimeExceededError(
            `task ${rec.label ?? rec.name} (${rec.id}) exceeded its walltime of ${walltime} s and was stopped`,
          ),
        );
      }, walltime * 1000);
    }
    // the attempt is the job the backend runs and the observer of that work
    const sub = group.backend.run(attempt).subscribe(attempt);
    if (attempt.finished) sub.unsubscribe();
    else attempt.sub = sub;
  }

  private invoke(attempt: Attempt, extra?: { comm?: Communicator; workdir?: string }): unknown {
    const entry = attempt.entry;
    const name = attempt.name;
    const fn = entry.fn ?? lookupTask(name);
    if (fn === undefined) {
      throw new UnknownTaskError(
        `no function named "${name}" is registered in this process: define it with defineTask("${name}", fn) in ` +
          `a module this program imports`,
      );
    }
    const running = new RunningTask(attempt, this, this, extra);
    const args = attempt.args;
    const run = (): unknown =>
      runInScope({ task: running, executor: this, workflow: this.workflow }, () => invocable(fn)(...args));
    return (attempt.invoked = entry.snapshot !== undefined ? entry.snapshot(run) : run());
  }

  /**
   * @internal A running task waits for another: give its resources back until the wait is over, then take them again.
   */
  awaitOther<R>(attempt: Attempt, settled: Promise<R>): Promise<R> {
    if (attempt.finished) return settled;
    attempt.waits++;
    if (attempt.waits === 1 && attempt.holding) {
      attempt.group.admission.release(attempt);
      this.pump();
    }
    const resume = (): Promise<void> => {
      attempt.waits--;
      if (attempt.waits > 0 || attempt.finished) return Promise.resolve();
      return attempt.group.admission.resume(attempt);
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

  /** The attempt's work completed with `value`. */
  private succeed(attempt: Attempt, value: unknown): void {
    if (attempt.finished) return;
    // ended by this process, interrupted: a program that exits 0 on SIGTERM has not done its work (interrupt.ts)
    if (isInterrupted()) {
      attempt.finished = true;
      return;
    }
    if (attempt.deadline !== Infinity && this.workflow.now() > attempt.deadline) {
      // a function that held the event loop (in this process) past its walltime: the timer could not fire meanwhile
      const rec = attempt.record;
      const ran = ((this.workflow.now() - attempt.deadline) / 1000 + rec.requirements.walltime!).toFixed(1);
      this.fail(
        attempt,
        new WalltimeExceededError(
          `task ${rec.label ?? rec.name} (${rec.id}) exceeded its walltime of ${rec.requirements.walltime} s: it ` +
            `ran ${ran} s without giving the event loop back, so it could not be stopped sooner (run such work on ` +
            'threads(), where it can be)',
        ),
      );
      return;
    }
    if (value === undefined && attempt.kind === 'executable') {
      // a program's result is always its files and exit: none is a backend that ended the attempt without one (a
      // remote side that was ending), never a success
      this.fail(
        attempt,
        new WorkerCrashedError(
          `task ${attempt.label ?? attempt.name} (${attempt.id}): its backend ended the attempt without the ` +
            "program's result",
        ),
      );
      return;
    }
    const entry = attempt.entry;
    this.stopAttempt(attempt, undefined);
    const wf = this.workflow;
    const id = entry.id;
    let result: unknown;
    let artifacts: ReturnType<typeof artifactsOf>;
    try {
      if (value !== undefined) wf.store.assertStorable?.(`task:${id}.result`, value);
      const rec = entry.record;
      artifacts = rec?.state === 'running' && rec.kind === 'executable' ? artifactsOf(value) : undefined;
      // every consumer gets the same frozen copy: one that changed it would change it for the others, and the store
      result = frozenResult(value, wf.store.assertStorable !== undefined);
    } catch (err) {
      // a result the store cannot keep, or that cannot be read (a getter that throws), fails its task (no retry: it
      // would be the same result). Before, a throwing getter was an uncaught error that ended the process.
      const error =
        err instanceof ScalemsError
          ? err
          : new UnserializableValueError(
              `task ${entry.record?.label ?? entry.record?.name ?? ''} (${id}) returned a value that cannot be read: ` +
                `reading it threw ${recordError(err).message}. Return plain data.`,
              { cause: err },
            );
      entry.error = error;
      wf.dispatch({ type: 'fail', id, error: recordError(error), now: wf.now() });
      this.pump();
      return;
    }
    wf.dispatch({ type: 'succeed', id, result, artifacts, read: attempt.read, now: wf.now(), slot: entry });
    this.pump();
  }

  /** The attempt failed with `error`: it is tried again if its retry policy allows, else the task fails. */
  private fail(attempt: Attempt, error: unknown): void {
    if (attempt.finished) return;
    // ended by this process, interrupted: no failure of the task's, and no retry (interrupt.ts)
    if (isInterrupted()) {
      attempt.finished = true;
      return;
    }
    const entry = attempt.entry;
    this.stopAttempt(attempt, error);
    const wf = this.workflow;
    const id = entry.id;
    const policy = retryPolicy(entry.record?.requirements ?? {});
    if (attempt.attempt - entry.attemptBase <= policy.max) {
      // at most the longest timer: a longer delay would fire at once
      const retry = attempt.attempt - entry.attemptBase; // 1 for the first retry since the task was submitted
      const delay = Math.min(policy.backoff * 1000 * policy.factor ** (retry - 1), MAX_TIMER_SECONDS * 1000);
      if (delay > 0) this.notBefore.set(id, wf.now() + delay);
      wf.dispatch({ type: 'retry', id, error: recordError(error), now: wf.now() });
    } else {
      entry.error = error;
      wf.dispatch({ type: 'fail', id, error: recordError(error), now: wf.now() });
    }
    this.pump();
  }

  /**
   * Ends an attempt: stops its timer, tells the work to stop if it is still going, frees its resources: at once, or,
   * if the backend said its work goes on a while (`Job.holdUntil`: a process tree in its grace period), once it has
   * ended. A retry of the task, or the next task, does not start beside it meanwhile.
   */
  private stopAttempt(attempt: Attempt, reason: unknown): void {
    attempt.finished = true;
    if (attempt.entry.attempt === attempt) attempt.entry.attempt = undefined;
    attempt.timer?.unsubscribe();
    if (reason !== undefined) {
      attempt.abort(reason);
      // its function, run here, goes on until it heeds its signal or settles: this process cannot end it (inProcess)
      if (isThenable(attempt.invoked)) attempt.holdUntil(Promise.resolve(attempt.invoked).then(ignore, ignore));
    }
    attempt.sub?.unsubscribe();
    if (attempt.ended === undefined || !attempt.holding) {
      attempt.group.admission.release(attempt);
      return;
    }
    const { id } = attempt.entry;
    const ended = attempt.ended;
    this.ending.set(id, ended);
    const release = (): void => {
      if (this.ending.get(id) === ended) this.ending.delete(id);
      attempt.group.admission.release(attempt);
      this.pump();
    };
    void ended.then(release, release);
  }

  /** @internal */
  cancelTask(entry: TaskEntry, reason: Error): void {
    const state = entry.record?.state;
    if (state === undefined || state === 'succeeded' || state === 'failed' || state === 'cancelled') return;
    const attempt = entry.attempt as Attempt | undefined;
    if (attempt !== undefined) this.stopAttempt(attempt, reason);
    if (this.backingOff.size > 0) {
      this.backingOff.get(entry.id)?.unsubscribe();
      this.backingOff.delete(entry.id);
    }
    this.notBefore.delete(entry.id);
    entry.error = reason;
    this.workflow.dispatch({ type: 'cancel', id: entry.id, reason: recordError(reason), now: this.workflow.now() });
    this.pumpSoon();
  }
}

const SHUTDOWN_OPTIONS = { wait: rules.flag } satisfies RulesOf<{ wait?: boolean }>;

/** The fields a `TaskSpec` may have (its symbol keys aside: `for...in` skips them). */
const SPEC_FIELDS: readonly string[] = ['kind', 'name', 'args', 'requirements', 'label', 'key', 'pure'];

/**
 * What a task needs of its executor. A walltime runs from the hand-over to the backend, so a task with one never waits
 * in a backend's queue.
 */
function needOf(req: TaskRequirements): Need {
  const need = footprint(req);
  return req.walltime === undefined ? need : { ...need, queueable: false };
}

/** An executor as the owner of its tasks (see `Executor.asOwner`). */
class OwnerOf implements TaskOwner {
  #executor: Executor | undefined;
  /** its id and display, kept once it has closed */
  #names: { id: string; display: string } | undefined;

  constructor(executor: Executor) {
    this.#executor = executor;
  }

  get id(): string {
    return this.#names?.id ?? this.#executor!.id;
  }

  get display(): string {
    return this.#names?.display ?? this.#executor!.display;
  }

  /** The executor has closed: none of its tasks is open, and it takes no more. */
  closed(): void {
    this.#names = { id: this.id, display: this.display };
    this.#executor = undefined;
  }

  get isShutdown(): boolean {
    return this.#executor?.isShutdown ?? true;
  }

  cancelTask(entry: TaskEntry, reason: Error): void {
    this.#executor?.cancelTask(entry, reason);
  }

  settleTask(entry: TaskEntry): void {
    this.#executor?.settleTask(entry);
  }

  rerun(entry: TaskEntry): void {
    if (this.#executor === undefined)
      throw new ExecutorShutdownError(`executor ${this.display} has been shut down and accepts no new tasks`);
    this.#executor.rerun(entry);
  }
}

const ignore = (): void => undefined;
