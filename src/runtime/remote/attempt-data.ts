/**
 * One task attempt as pure data, as it travels to a remote side that runs it: a BullMQ job's data (`bullmq()`), a
 * message to a Slurm agent (`slurm()`). Only data: the remote side finds a function by its name in its registry and
 * runs a program in the working directory `place` says. Validated on arrival, before anything runs.
 */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { InvalidTaskDescriptionError } from '../../errors';
import {
  NonNegativeInt,
  TaskRequirements,
  describeErrors,
  type TaskRequirements as Requirements,
} from '../../task/requirements';

/** Where an executable attempt runs: paths of the driver's host, which the remote side shares (a shared filesystem). */
export const Place = t.type({
  /** `<root>/<workflow>`: attempts run in `tasks/<id>/attempt-<n>/` under it */
  workflowDir: t.string,
  /** the driver's working directory: relative input paths resolve against it */
  hostCwd: t.string,
  staging: t.keyof({ copy: null, symlink: null }),
  /** seconds between SIGTERM and SIGKILL */
  grace: t.number,
});
export type Place = t.TypeOf<typeof Place>;

export const AttemptData = t.intersection([
  t.type({
    kind: t.keyof({ function: null, executable: null }),
    name: t.string,
    args: t.array(t.unknown),
    id: t.string,
    attempt: NonNegativeInt,
    requirements: TaskRequirements as t.Type<Requirements, unknown, unknown>,
  }),
  t.partial({ label: t.string, place: Place, version: t.string }),
]);
export type AttemptData = t.TypeOf<typeof AttemptData>;

/**
 * `data` checked against `codec`; a malformed payload is an `InvalidTaskDescriptionError` that starts with `what` and
 * names each problem.
 */
export function decodeWith<A>(codec: t.Type<A, unknown, unknown>, data: unknown, what: string, where = 'data'): A {
  if (codec.is(data)) return data; // (checks without collecting errors: the common case, cheaply)
  const decoded = codec.decode(data);
  if (isLeft(decoded)) {
    throw new InvalidTaskDescriptionError(`${what}: ${describeErrors(where, decoded.left).join('; ')}`);
  }
  return decoded.right;
}
