/**
 * The submit-time check of a function task for a backend that runs it elsewhere (threads, slurm): only
 * a `defineTask` function its modules define can be found there by name, and its arguments must travel
 * on the backend's wire. Refused with a typed error naming what to do; nothing is recorded.
 */
import { UnknownTaskError, UnregisteredFunctionError, UnserializableValueError } from '../../errors';
import { SPEC_FN, registeredName, type TaskSpec } from '../../task/spec';
import type { Wire } from './wire';

export interface RemoteFunctions {
  /** the backend, for messages: "threads" */
  readonly backend: string;
  /** where functions run, for messages: "a worker thread", "a Slurm job step" */
  readonly where: string;
  /** absolute paths of its task modules */
  readonly modules: readonly string[];
  /** the task names the modules define, if they could be loaded here (`probeModules`) */
  readonly defined: ReadonlySet<string> | undefined;
  readonly wire: Wire;
  /**
   * The remote side was started with modules of its own (`scalems worker --modules`): none need be given here, and
   * only a name the modules given here (if any) do not define is refused.
   */
  readonly ownModules?: boolean;
}

/** Throws unless the function task `spec` can run on the backend's remote side. */
export function acceptFunction(spec: TaskSpec, remote: RemoteFunctions): void {
  const fn = spec[SPEC_FN];
  const moduleList = remote.modules.join(', ') || 'none';
  const option = `${remote.backend}({ modules })`;
  const what =
    fn !== undefined && fn.name !== ''
      ? `function ${fn.name}`
      : spec.name !== 'anonymous'
        ? `function ${spec.name}`
        : 'an anonymous function';
  if (fn !== undefined && registeredName(fn) === undefined) {
    throw new UnregisteredFunctionError(
      `${what} cannot be sent to ${remote.where}: ${remote.backend}() runs only functions registered with ` +
        `defineTask(name, fn) in one of its modules (${moduleList}). Move it into such a module, wrap it with ` +
        `defineTask, export it, and list the module in ${option}.`,
    );
  }
  if (remote.modules.length === 0 && remote.ownModules !== true) {
    throw new UnregisteredFunctionError(
      `${what} cannot run on ${remote.backend}(): no modules were given to ${option} to load its defineTask ` +
        `functions from`,
    );
  }
  if (remote.defined !== undefined && !remote.defined.has(spec.name)) {
    throw new UnknownTaskError(
      `no task named "${spec.name}" is defined by the modules given to ${option} (${moduleList}): define it with ` +
        `defineTask("${spec.name}", fn) in one of them and export it, or list the module that defines it`,
    );
  }
  for (let i = 0; i < spec.args.length; i++) {
    const problem = remote.wire.problem(spec.args[i], `argument ${i}`);
    if (problem !== undefined) {
      throw new UnserializableValueError(
        `task ${spec.label ?? spec.name}: ${problem}; arguments of ${remote.backend}() tasks travel ` +
          `to ${remote.where} by ${remote.wire.name}. Pass plain data.`,
      );
    }
  }
}
