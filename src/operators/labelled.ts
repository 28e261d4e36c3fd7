/** `labelled(label)`: the operator that names each task spec of a pipeline. */
import { map, type OperatorFunction } from 'rxjs';
import { InvalidTaskDescriptionError } from '../errors';
import { assertTaskSpec, type TaskSpec } from '../task/spec';
import { show } from '../task/requirements';

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
    if (typeof label === 'string') return { ...spec, label };
    const given: unknown = label(spec, index);
    // an undefined from the function dropped the label without a word (other values are refused at submit)
    if (typeof given !== 'string' || given === '')
      throw new InvalidTaskDescriptionError(
        `labelled(fn): fn must return a non-empty string, got ${show(given)} for the spec at index ${index}`,
      );
    return { ...spec, label: given };
  });
}
