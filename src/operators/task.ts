/** `task(fn, ...args)`: one task spec as a cold observable. */
import { Observable, defer, of } from 'rxjs';
import { call, type AnyFunction, type TaskArgs, type TaskSpec } from '../task/spec';

/**
 * A cold observable of one task spec: nothing is submitted, let alone run, until something subscribes to a pipeline
 * that submits it.
 */
export function task<F extends AnyFunction>(
  fn: F,
  ...args: TaskArgs<Parameters<F>>
): Observable<TaskSpec<Awaited<ReturnType<F>>>> {
  return defer(() => of(call(fn, ...args)));
}
