/** Raw task descriptions (JSON) and their io-ts codec, for `workflow.submitDescription`. */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { InvalidTaskDescriptionError } from '../errors';
import { describeErrors, TaskRequirements } from './requirements';
import type { TaskSpec } from './spec';

const NonEmptyString = new t.Type<string, string, unknown>(
  'a non-empty string',
  (u): u is string => typeof u === 'string' && u.length > 0,
  (u, c) => (typeof u === 'string' && u.length > 0 ? t.success(u) : t.failure(u, c)),
  t.identity,
);

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
      label: NonEmptyString,
      key: t.string,
      pure: t.boolean,
      /** the name of the executor to run it on (see ExecutorOptions.name); default: the ambient or only one */
      executor: NonEmptyString,
    }),
  ],
  'TaskDescription',
);
export type TaskDescription = t.TypeOf<typeof TaskDescription>;

const KNOWN = new Set(['name', 'kind', 'args', 'requirements', 'label', 'key', 'pure', 'executor']);

/** Validates a raw description; errors name the path and the expected type. */
export function decodeDescription(json: unknown): { spec: TaskSpec; executor: string | undefined } {
  const problems: string[] = [];
  if (typeof json === 'object' && json !== null && !Array.isArray(json)) {
    for (const k of Object.keys(json))
      if (!KNOWN.has(k)) problems.push(`description.${k}: unknown field "${k}" (known: ${[...KNOWN].join(', ')})`);
  }
  const result = TaskDescription.decode(json);
  if (isLeft(result)) problems.push(...describeErrors('description', result.left));
  if (problems.length > 0 || isLeft(result)) {
    const unique = [...new Set(problems)];
    throw new InvalidTaskDescriptionError(
      `Invalid task description:\n  ${unique.length > 0 ? unique.join('\n  ') : 'description: expected an object'}`,
    );
  }
  const d = result.right;
  const spec: TaskSpec = {
    kind: d.kind ?? 'function',
    name: d.name,
    args: d.args ?? [],
    ...(d.requirements !== undefined ? { requirements: d.requirements } : {}),
    ...(d.label !== undefined ? { label: d.label } : {}),
    ...(d.key !== undefined ? { key: d.key } : {}),
    ...(d.pure !== undefined ? { pure: d.pure } : {}),
  };
  return { spec, executor: d.executor };
}
