/** Raw task descriptions (JSON) and their io-ts codec, for `workflow.submitDescription`. */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { InvalidTaskDescriptionError } from '../errors';
import { validateDescription } from './executable-validation';
import { describeErrors, isPlainObject, show, TaskRequirements, unknownField } from './requirements';
import { NonEmptyString, SpecFields, type TaskSpec } from './spec';

/**
 * A raw task description, as JSON: what `call(...)` / `executable(...)` produce, plus the executor to
 * run it on. Functions are named by their `defineTask` name; arguments are JSON values or upstream
 * tasks as `{ "$task": "<id>" }`.
 */
export const TaskDescription = t.intersection(
  [
    t.type({ name: NonEmptyString }),
    t.partial({
      kind: t.keyof({ function: null, executable: null }, '"function" or "executable"'),
      args: t.array(t.unknown, 'an array'),
      requirements: TaskRequirements,
      ...SpecFields,
      /** the name of the executor to run it on (see ExecutorOptions.name); default: the ambient or only one */
      executor: NonEmptyString,
    }),
  ],
  'TaskDescription',
);
export type TaskDescription = t.TypeOf<typeof TaskDescription>;

const KNOWN = ['name', 'kind', 'args', 'requirements', 'label', 'key', 'pure', 'executor'];

/**
 * Validates a raw description; errors name the path and the expected type. An executable's description
 * (`args: [{ argv, inputs?, outputs?, env?, stdin? }]`) is checked as `executable()` checks its options.
 */
export function decodeDescription(json: unknown): { spec: TaskSpec; executor: string | undefined } {
  if (!isPlainObject(json))
    throw new InvalidTaskDescriptionError(
      'Invalid task description:\n  description: expected an object { name, kind?, args?, ... } (JSON), got ' +
        show(json),
    );
  const problems: string[] = [];
  for (const k of Object.keys(json))
    if (!KNOWN.includes(k)) problems.push(`description.${k}: ${unknownField(k, KNOWN)}`);
  const result = TaskDescription.decode(json);
  if (isLeft(result)) problems.push(...describeErrors('description', result.left));
  if (problems.length > 0 || isLeft(result)) {
    const unique = [...new Set(problems)];
    throw new InvalidTaskDescriptionError(
      `Invalid task description:\n  ${unique.length > 0 ? unique.join('\n  ') : 'description: expected an object'}`,
    );
  }
  const d = result.right;
  const kind = d.kind ?? 'function';
  const spec: TaskSpec = {
    kind,
    name: d.name,
    args: kind === 'executable' ? [executableArgs(d.args)] : (d.args ?? []),
    ...(d.requirements !== undefined ? { requirements: d.requirements } : {}),
    ...(d.label !== undefined ? { label: d.label } : {}),
    ...(d.key !== undefined ? { key: d.key } : {}),
    ...(d.pure !== undefined ? { pure: d.pure } : {}),
  };
  return { spec, executor: d.executor };
}

function executableArgs(args: readonly unknown[] | undefined): unknown {
  if (args?.length !== 1)
    throw new InvalidTaskDescriptionError(
      `Invalid task description:\n  description.args: an executable has exactly one argument, its description ` +
        `[{ argv, inputs?, outputs?, env?, stdin? }], got ${args === undefined ? 'none' : `${args.length}`}`,
    );
  return validateDescription(args[0], 'description.args.0');
}
