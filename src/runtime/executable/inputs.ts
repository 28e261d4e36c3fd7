/**
 * Checking an executable spec at submit, and turning its resolved inputs into host paths at run time.
 */
import { resolve } from 'node:path';
import {
  ExecutableFailedError,
  InvalidTaskDescriptionError,
  PathEscapeError,
  UnregisteredFunctionError,
} from '../../errors';
import type { Workflow } from '../workflow';
import { isTaskHandle, isTaskRef } from '../../task/hash';
import {
  RESERVED_NAMES,
  isFileRef,
  isOutputOf,
  validateDescription,
  type ExecutableDescription,
} from '../../task/executable';
import type { TaskSpec } from '../../task/spec';
import type { StagingMode } from './workdir';

/**
 * Refuses, at submit, what this backend can never run: function tasks, ill-formed descriptions, paths
 * that escape the working directory (`PathEscapeError`), and `outputOf(task, name)` for an output the
 * upstream executable does not declare.
 */
export function acceptExecutable(spec: TaskSpec, workflow: Workflow, staging: StagingMode): void {
  if (spec.kind !== 'executable') {
    throw new UnregisteredFunctionError(
      `task ${spec.label ?? spec.name}: the processes() backend runs executables (executable(argv, ...)), not ` +
        `functions; submit functions to an executor of inProcess() or threads()`,
    );
  }
  const where = `task ${spec.label ?? spec.name}`;
  if (spec.args.length !== 1)
    throw new InvalidTaskDescriptionError(`${where}: an executable task has exactly one argument, its description`);
  const d = validateDescription(spec.args[0], where);
  for (const [name, source] of Object.entries(d.inputs ?? {}))
    checkUpstreamOutput(source, `${where}: input "${name}"`, workflow);
  if (d.stdin !== undefined) checkUpstreamOutput(d.stdin, `${where}: stdin`, workflow);
  if (staging === 'symlink') {
    for (const output of d.outputs ?? []) {
      const input = Object.keys(d.inputs ?? {}).find((i) => output === i || output.startsWith(`${i}/`));
      if (input !== undefined) {
        throw new PathEscapeError(
          `${where}: output "${output}" is inside input "${input}", which is staged as a symbolic link to a file ` +
            `outside the working directory; stage with 'copy' or name another output`,
        );
      }
    }
  }
}

function checkUpstreamOutput(source: unknown, where: string, workflow: Workflow): void {
  if (!isOutputOf(source) || RESERVED_NAMES.includes(source.$output)) return;
  const of: unknown = source.of;
  const id = isTaskHandle(of) ? of.id : isTaskRef(of) ? of.$task : undefined;
  if (id === undefined) return;
  const rec = workflow.record(id);
  if (rec === undefined || rec.kind !== 'executable') return;
  const declared = (rec.args[0] as ExecutableDescription | undefined)?.outputs ?? [];
  if (!declared.includes(source.$output)) {
    throw new InvalidTaskDescriptionError(
      `${where}: outputOf(${rec.label ?? rec.name}, "${source.$output}") names an output that task does not ` +
        `declare (it declares: ${[...declared, ...RESERVED_NAMES].join(', ')})`,
    );
  }
}

/** A resolved input: a file on the host, or (stdin only) text. */
export type ResolvedSource = { readonly path: string } | { readonly text: string };

/**
 * An input as it is at run time (upstream results substituted) → where it is on the host. Strings are
 * host paths (relative to `hostCwd`) for inputs, and text for stdin.
 */
export function resolveSource(value: unknown, where: string, hostCwd: string, stdin: boolean): ResolvedSource {
  if (typeof value === 'string') return stdin ? { text: value } : { path: resolve(hostCwd, value) };
  if (isFileRef(value)) return { path: resolve(hostCwd, value.$file) };
  if (isOutputOf(value)) {
    const result = value.of as unknown;
    const outputs = (result as { outputs?: Record<string, unknown> } | null)?.outputs;
    const found =
      value.$output === 'stdout' || value.$output === 'stderr'
        ? (result as Record<string, unknown> | null)?.[value.$output]
        : outputs?.[value.$output];
    if (isFileRef(found)) return { path: resolve(hostCwd, found.$file) };
    const listed =
      outputs !== undefined && outputs !== null
        ? Object.keys(outputs).join(', ') || 'none'
        : 'not an executable result';
    throw new ExecutableFailedError(
      `${where}: the upstream task's result has no file "${value.$output}" (its outputs: ${listed})`,
      null,
      null,
      '',
    );
  }
  throw new ExecutableFailedError(
    `${where}: the upstream task's result is neither a file reference nor a path (got ${typeof value}); use ` +
      `outputOf(task, name) for an executable's output`,
    null,
    null,
    '',
  );
}
