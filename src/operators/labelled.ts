/** `labelled(label)`: the operator that names each task spec of a pipeline. */
import { map, type OperatorFunction } from 'rxjs';
import { InvalidTaskDescriptionError } from '../errors';
import { assertTaskSpec, type TaskSpec } from '../task/spec';

/**
 * Gives each spec a label: a fixed string (for a single task) or `(spec, index) => label`. Labels are unique per
 * workflow.
 */
export function labelled<T extends TaskSpec<unknown>>(
  label: string | ((spec: T, index: number) => string),
): OperatorFunction<T, T> {
  if ((typeof label !== 'string' || label === '') && typeof label !== 'function')
    throw new InvalidTaskDescriptionError(
      'labelled(label): label must be a non-empty string or a function (spec, index) => string; ' +
        `got ${label === '' ? 'an empty string' : label === null ? 'null' : typeof label}`,
    );
  return map((spec: T, index): T => {
    assertTaskSpec(spec, 'labelled(...)');
    return { ...spec, label: typeof label === 'string' ? label : label(spec, index) };
  });
}
