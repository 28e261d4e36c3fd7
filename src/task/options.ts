/**
 * The options object of a backend (`threads()`, `processes()`, `slurm()`, `bullmq()`): every key known, every value of
 * the kind its rule allows, checked where the options are given. One `InvalidOptionsError` lists every problem, each
 * naming the option, what was given and what is allowed (a typo names the option it is near).
 */
import { InvalidOptionsError } from '../errors';
import { isPlainObject, nearest, show } from './requirements';

export interface OptionRule {
  /** what is allowed, for messages: "a positive integer" */
  readonly allowed: string;
  readonly ok: (value: unknown) => boolean;
  /** the rules of the keys of an object value (`mpi: { command, args, slots }`) */
  readonly fields?: OptionRules;
}
export type OptionRules = Readonly<Record<string, OptionRule>>;
/** A rule for every option of `T`, and no other: `const RULES = {...} satisfies RulesOf<ThreadsOptions>`. */
export type RulesOf<T> = { readonly [K in keyof T]-?: OptionRule };

/** Throws `InvalidOptionsError` unless `options` (given to `call`, e.g. "processes") passes `rules`. */
export function checkOptions(call: string, options: unknown, rules: OptionRules): void {
  if (!isPlainObject(options))
    throw new InvalidOptionsError(`${call}(options): expected an object, got ${show(options)}`);
  const problems: string[] = [];
  collect(call, options, rules, [], problems);
  if (problems.length > 0) throw new InvalidOptionsError(problems.join('; '), problems);
}

function collect(
  call: string,
  given: Record<string, unknown>,
  rules: OptionRules,
  path: readonly string[],
  problems: string[],
): void {
  const known = Object.keys(rules);
  for (const [key, value] of Object.entries(given)) {
    const at = [...path, key];
    const where = `${call}({ ${at.join(': { ')}${' }'.repeat(at.length - 1)} })`;
    const rule = Object.hasOwn(rules, key) ? rules[key] : undefined;
    if (rule === undefined) {
      const near = nearest(key, known);
      const did = near === undefined ? '' : `did you mean "${near}"?; `;
      problems.push(`${where}: unknown option (${did}allowed: ${known.join(', ')})`);
    } else if (value !== undefined) {
      if (!rule.ok(value)) problems.push(`${where}: expected ${rule.allowed}, got ${show(value)}`);
      else if (rule.fields !== undefined) collect(call, value as Record<string, unknown>, rule.fields, at, problems);
    }
  }
}

/** Rules most options use. */
export const rules = {
  flag: { allowed: 'true or false', ok: (v: unknown) => typeof v === 'boolean' },
  positiveInteger: {
    allowed: 'a positive integer',
    ok: (v: unknown) => Number.isSafeInteger(v) && (v as number) > 0,
  },
  seconds: (positive = false): OptionRule => ({
    allowed: positive ? 'a positive number of seconds' : 'a non-negative number of seconds',
    ok: (v) => typeof v === 'number' && Number.isFinite(v) && (positive ? v > 0 : v >= 0),
  }),
  text: (what: string): OptionRule => ({ allowed: what, ok: (v) => typeof v === 'string' && v !== '' }),
  /** a path: a non-empty string without NUL (no system call takes one) */
  path: (what: string): OptionRule => ({
    allowed: `${what} (a non-empty string without NUL)`,
    ok: (v) => typeof v === 'string' && v !== '' && !v.includes('\0'),
  }),
  strings: (what = 'an array of strings'): OptionRule => ({
    allowed: what,
    ok: (v) => Array.isArray(v) && v.every((s) => typeof s === 'string'),
  }),
  oneOf: (...values: readonly string[]): OptionRule => ({
    allowed: values.map((v) => `'${v}'`).join(' or '),
    ok: (v) => values.includes(v as string),
  }),
  object: (what: string, fields: OptionRules): OptionRule => ({ allowed: what, ok: isPlainObject, fields }),
} as const;
