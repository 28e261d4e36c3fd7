/** The ambient scope as users see it: `withWorkflow`, `withExecutor`, `submit()`, `currentTask()`. */
import { InvalidOptionsError, NoAmbientScopeError } from '../errors';
import { show } from '../task/requirements';
import type { Workflow } from './workflow';
import { call, isTaskSpec, type AnyFunction, type TaskArgs, type TaskSpec } from '../task/spec';
import { ambient, captureContext, carriesAcrossAwaits, runInScope, type ContextSnapshot } from '../context/ambient';
import type { RunningTaskScope, TaskContext } from './attempt';
import type { Executor } from './executor';
import type { Task } from './task';

/** Runs `fn` with `workflow` as the ambient workflow (see `currentWorkflow()`). */
export function withWorkflow<R>(workflow: Workflow, fn: () => R): R {
  checkScope('withWorkflow(workflow, fn)', 'workflow', 'a Workflow (from await openWorkflow(...))', workflow, fn);
  return runInScope({ workflow }, fn);
}

/** Throws `InvalidOptionsError` unless `given` has `method` (a workflow or executor, duck-typed) and `fn` is one. */
function checkScope(call: string, what: string, expected: string, given: unknown, fn: unknown): void {
  const method = what === 'workflow' ? 'submitDescription' : 'submitSpec';
  if (typeof given !== 'object' || given === null || typeof (given as Record<string, unknown>)[method] !== 'function')
    throw new InvalidOptionsError(`${call}: ${what} must be ${expected}, got ${show(given)}`);
  if (typeof fn !== 'function') throw new InvalidOptionsError(`${call}: fn must be a function, got ${show(fn)}`);
}

/** Runs `fn` with `executor` as the ambient executor, so that `submit()` inside it (and in what it awaits) uses it. */
export function withExecutor<R>(executor: Executor, fn: () => R): R {
  checkScope('withExecutor(executor, fn)', 'executor', 'an Executor (from executor(runtime, options))', executor, fn);
  return runInScope({ executor, workflow: executor.workflow }, fn);
}

/**
 * Where the ambient scope ends at the first await (browsers), what to do instead: added to the messages of
 * `currentTask()`, `submit()` and `currentWorkflow()` there.
 */
const BROWSER_ADVICE =
  'In a browser (no AsyncLocalStorage) the context is only available until the first await: in a task, capture ' +
  'it first, at the top of the task function (const task = currentTask()), and after awaits use task.submit(...), ' +
  'task.signal, task.id';
const advice = (): string => (carriesAcrossAwaits() ? '' : `. ${BROWSER_ADVICE}`);

export function currentWorkflow(): Workflow {
  const wf = ambient().workflow as Workflow | undefined;
  if (wf === undefined)
    throw new NoAmbientScopeError(
      'no ambient workflow: call this inside withWorkflow(workflow, fn), withExecutor(executor, fn) or a running ' +
        `task${advice()}`,
    );
  return wf;
}

/** Submits on the ambient executor (`withExecutor`, or the executor of the running task). */
export function submit<F extends AnyFunction>(fn: F, ...args: TaskArgs<Parameters<F>>): Task<Awaited<ReturnType<F>>>;
export function submit<R>(spec: TaskSpec<R>): Task<R>;
export function submit(fnOrSpec: AnyFunction | TaskSpec, ...args: unknown[]): Task<unknown> {
  const ex = ambient().executor as Executor | undefined;
  if (ex === undefined) {
    throw new NoAmbientScopeError(
      'submit() needs an ambient executor: call it inside withExecutor(executor, fn) or inside a running task, ' +
        `or use executor.submit(fn, ...args)${advice()}`,
    );
  }
  const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(args as []));
  // inside a running task of the same workflow, the task is the child's parent, as with currentTask().submit
  const scope = ambient();
  const task = scope.task as RunningTaskScope | undefined;
  const parent = task !== undefined && scope.workflow === ex.workflow ? task : undefined;
  const handle = ex.submitSpec(spec, { pinned: true, parent: parent?.id });
  // in a browser, awaited after the parent's first await, the handle itself knows who awaits it
  return parent === undefined || carriesAcrossAwaits() ? handle : handle.awaitedBy(parent);
}

/**
 * The running task's context: id, label, signal, attempt, submit (and comm/workdir where the backend gives them).
 *
 * On Node it is there for the whole task function, across awaits (AsyncLocalStorage). In a browser, which has no
 * AsyncLocalStorage, it is there only until the task function's first `await`; after it, `currentTask()` throws
 * `NoAmbientScopeError` saying so. Capture it first and use the captured context: awaiting what its `submit`
 * returns gives the task's slot back, as on Node, so nested submission cannot deadlock a full executor.
 *
 * @throws {NoAmbientScopeError} outside a running task (in a browser: also after the task's first await)
 *
 * ## Example
 * ```ts
 * const simulate = async (n: number) => {
 *   const task = currentTask();                  // before the first await (needed in a browser)
 *   const deck = await fetchDeck(n, { signal: task.signal });
 *   return await task.submit(run, deck);         // gives the slot back while `run` runs
 * };
 * ```
 */
export function currentTask(): TaskContext {
  const scope = ambient().task as RunningTaskScope | undefined;
  if (scope === undefined) {
    throw new NoAmbientScopeError(
      carriesAcrossAwaits()
        ? 'currentTask() is only available inside a running task: call it from the task function, before it returns'
        : `currentTask() found no running task: it is only available inside one. ${BROWSER_ADVICE}`,
    );
  }
  return scope.context;
}

/**
 * @internal The whole async context of the caller, to run later work in (`submitOn`'s members and results): see
 * `captureContext`.
 */
export const captureCallerContext = (): ContextSnapshot => captureContext();
