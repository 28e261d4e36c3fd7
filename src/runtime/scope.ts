/** The ambient scope as users see it: `withWorkflow`, `withExecutor`, `submit()`, `currentTask()`. */
import { NoAmbientScopeError } from '../errors';
import type { Workflow } from './workflow';
import { call, isTaskSpec, type AnyFunction, type TaskArgs, type TaskSpec } from '../task/spec';
import { ambient, runInScope } from '../context/ambient';
import type { RunningTaskScope, TaskContext } from './attempt';
import type { Executor } from './executor';
import type { Task } from './task';

/** Runs `fn` with `workflow` as the ambient workflow (see `currentWorkflow()`). */
export function withWorkflow<R>(workflow: Workflow, fn: () => R): R {
  return runInScope({ workflow }, fn);
}

/** Runs `fn` with `executor` as the ambient executor, so that `submit()` inside it (and in what it awaits) uses it. */
export function withExecutor<R>(executor: Executor, fn: () => R): R {
  return runInScope({ executor, workflow: executor.workflow }, fn);
}

export function currentWorkflow(): Workflow {
  const wf = ambient().workflow as Workflow | undefined;
  if (wf === undefined)
    throw new NoAmbientScopeError(
      'no ambient workflow: call this inside withWorkflow(workflow, fn), withExecutor(executor, fn) or a running task',
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
        'or use executor.submit(fn, ...args)',
    );
  }
  const spec = isTaskSpec(fnOrSpec) ? fnOrSpec : call(fnOrSpec, ...(args as []));
  // inside a running task of the same workflow, the task is the child's parent, as with currentTask().submit
  const scope = ambient();
  const task = scope.task as RunningTaskScope | undefined;
  const parent = task !== undefined && scope.workflow === ex.workflow ? task.id : undefined;
  return ex.submitSpec(spec, { pinned: true, parent });
}

/** The running task's context: id, label, signal, attempt, submit (and comm/workdir where the backend gives them). */
export function currentTask(): TaskContext {
  const scope = ambient().task as RunningTaskScope | undefined;
  if (scope === undefined)
    throw new NoAmbientScopeError(
      'currentTask() is only available inside a running task: call it from the task function, before it returns',
    );
  return scope.context;
}
