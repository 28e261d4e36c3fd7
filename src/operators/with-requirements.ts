/** `withRequirements(req)`: the operator that adds requirements to each task spec of a pipeline. */
import { map, type OperatorFunction } from 'rxjs';
import { validateTaskRequirements, type TaskRequirements } from '../task/requirements';
import { assertTaskSpec, type TaskSpec } from '../task/spec';

/**
 * Adds requirements to every spec that passes (over what the spec already has). The requirements are
 * validated here, when the pipeline is built: a bad field throws `InvalidRequirementsError` naming it.
 */
export function withRequirements<T extends TaskSpec<unknown>>(requirements: TaskRequirements): OperatorFunction<T, T> {
  const valid = validateTaskRequirements(requirements, 'withRequirements(...)');
  return map((spec: T): T => {
    assertTaskSpec(spec, 'withRequirements(...)');
    return {
      ...spec,
      requirements: spec.requirements === undefined ? valid : { ...spec.requirements, ...valid },
    };
  });
}
