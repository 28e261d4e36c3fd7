/** Task and worker requirements: the io-ts codecs that validate them, and what a task occupies. */
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { InvalidRequirementsError } from '../errors';

/** A type that also rejects properties it does not declare, reporting each by path. */
function closed<P extends t.Props>(
  props: P,
  name: string,
): t.Type<t.TypeOf<t.PartialC<P>>, t.OutputOf<t.PartialC<P>>, unknown> {
  const partial = t.partial(props);
  const known = new Set(Object.keys(props));
  return new t.Type<t.TypeOf<t.PartialC<P>>, t.OutputOf<t.PartialC<P>>, unknown>(
    name,
    (u): u is t.TypeOf<t.PartialC<P>> => partial.is(u) && Object.keys(u as object).every((k) => known.has(k)),
    (u, c) => {
      if (!isPlainObject(u)) return t.failure(u, c);
      const unknownKeys = Object.keys(u).filter((k) => !known.has(k));
      if (unknownKeys.length > 0) {
        return t.failures(
          unknownKeys.map((k) => ({
            value: (u as Record<string, unknown>)[k],
            context: [...c, { key: k, type: t.never, actual: (u as Record<string, unknown>)[k] }],
            message: unknownField(k, [...known]),
          })),
        );
      }
      return partial.validate(u, c);
    },
    (a) => partial.encode(a),
  );
}

function refined(name: string, test: (n: number) => boolean): t.Type<number, number, unknown> {
  return new t.Type<number, number, unknown>(
    name,
    (u): u is number => typeof u === 'number' && test(u),
    (u, c) => (typeof u === 'number' && test(u) ? t.success(u) : t.failure(u, c)),
    t.identity,
  );
}

// integers beyond 2^53 are not exact: no count of ranks, cores or retries is that large
const PositiveInt = refined('a positive integer', (n) => Number.isSafeInteger(n) && n > 0);
/** @internal also the job data of bullmq() (its attempt number) */
export const NonNegativeInt = refined('a non-negative integer', (n) => Number.isSafeInteger(n) && n >= 0);
const PositiveNumber = refined('a positive finite number', (n) => Number.isFinite(n) && n > 0);
const GroupName = new t.Type<string, string, unknown>(
  'a non-empty string (a worker group name)',
  (u): u is string => typeof u === 'string' && u.trim() !== '',
  (u, c) => (typeof u === 'string' && u.trim() !== '' ? t.success(u) : t.failure(u, c)),
  t.identity,
);
/** The longest delay a JavaScript timer keeps (2^31 - 1 ms, about 24.8 days): a longer one fires at once. */
export const MAX_TIMER_SECONDS = (2 ** 31 - 1) / 1000;
const TimerSeconds = refined(
  `a positive number of seconds up to ${Math.floor(MAX_TIMER_SECONDS)} (about 24.8 days)`,
  (n) => Number.isFinite(n) && n > 0 && n <= MAX_TIMER_SECONDS,
);
const BackoffSeconds = refined(
  `a non-negative number of seconds up to ${Math.floor(MAX_TIMER_SECONDS)} (about 24.8 days)`,
  (n) => Number.isFinite(n) && n >= 0 && n <= MAX_TIMER_SECONDS,
);

/**
 * Why `name=value` cannot be in a program's environment, if it cannot: the operating system takes names up to the
 * first `=` and strings up to the first NUL, so such a name or value would not be what the program gets.
 * @internal shared by the `env` requirement and an executable's `env`
 */
export function envProblem(name: string, value: unknown): string | undefined {
  if (name === '') return 'an environment variable needs a non-empty name';
  if (name.includes('=')) return `the name ${show(name)} contains "=", which ends a name in the environment`;
  if (name.includes('\0')) return `the name ${show(name)} contains a NUL character`;
  if (typeof value !== 'string') return `expected a string value, got ${show(value)}`;
  if (value.includes('\0')) return `the value ${show(value)} contains a NUL character, which no program can receive`;
  return undefined;
}

/** Environment variables, `{ NAME: "value" }`: names without `=` or NUL, string values without NUL. */
export const EnvVars = new t.Type<Record<string, string>, Record<string, string>, unknown>(
  'an object of environment variables { NAME: "value" }',
  (u): u is Record<string, string> =>
    isPlainObject(u) && Object.entries(u).every(([k, v]) => envProblem(k, v) === undefined),
  (u, c) => {
    if (!isPlainObject(u)) {
      const hint = typeof u === 'string' && u.includes('=') ? ` (write { ${envExample(u)} })` : '';
      return t.failure(u, c, `expected an object of environment variables { NAME: "value" }, got ${show(u)}${hint}`);
    }
    const errors: t.ValidationError[] = [];
    for (const [k, v] of Object.entries(u)) {
      const message = envProblem(k, v);
      if (message !== undefined)
        errors.push({ value: v, context: [...c, { key: k, type: t.string, actual: v }], message });
    }
    return errors.length > 0 ? t.failures(errors) : t.success({ ...(u as Record<string, string>) });
  },
  t.identity,
);
const Env = EnvVars;

/** `A=1\nB=2` → `A: "1", B: "2"`, for hints. */
function envExample(text: string): string {
  return text
    .split(/\s+/)
    .filter((line) => line.includes('='))
    .slice(0, 3)
    .map(
      (line) =>
        `${JSON.stringify(line.slice(0, line.indexOf('=')))}: ${JSON.stringify(line.slice(line.indexOf('=') + 1))}`,
    )
    .join(', ');
}

/** Slurm options passed through to `salloc`/`srun` (validated; see the Slurm backend). */
export const SlurmOptions = closed(
  {
    partition: t.string,
    account: t.string,
    constraint: t.string,
    qos: t.string,
    reservation: t.string,
    exclusive: t.boolean,
  },
  'SlurmOptions',
);
export type SlurmOptions = t.TypeOf<typeof SlurmOptions>;

export const RetryPolicy = closed(
  {
    /** extra attempts after the first */
    max: NonNegativeInt,
    /** seconds before the first retry (later retries wait longer, by `factor`, up to about 24.8 days) */
    backoff: BackoffSeconds,
    /** multiplier of the backoff per further retry (default 2) */
    factor: PositiveNumber,
  },
  'RetryPolicy',
);
export type RetryPolicy = t.TypeOf<typeof RetryPolicy>;

export const TaskRequirements = closed(
  {
    ranks: PositiveInt,
    coresPerRank: PositiveInt,
    gpusPerRank: NonNegativeInt,
    /** memory for the whole task, in MB */
    memoryMB: PositiveNumber,
    /** seconds, up to about 24.8 days (the longest JavaScript timer) */
    walltime: TimerSeconds,
    env: Env,
    /** a number is the count of extra attempts (no backoff) */
    retries: t.union([NonNegativeInt, RetryPolicy], 'a non-negative integer or { max, backoff, factor }'),
    slurm: SlurmOptions,
    /** the name of the executor's worker group the task must run on (default: any group it fits) */
    group: GroupName,
  },
  'TaskRequirements',
);
export type TaskRequirements = t.TypeOf<typeof TaskRequirements>;

export const WorkerRequirements = closed(
  {
    /** the name of this worker group, unique among the executor's groups (default `group-<index>`) */
    name: GroupName,
    /** cores the executor may use at once */
    cores: PositiveInt,
    gpus: NonNegativeInt,
    memoryMB: PositiveNumber,
    nodes: PositiveInt,
    /** seconds: lifetime of the executor's allocation, where the backend has one */
    walltime: PositiveNumber,
    env: Env,
    slurm: SlurmOptions,
  },
  'WorkerRequirements',
);
export type WorkerRequirements = t.TypeOf<typeof WorkerRequirements>;

/** Formats io-ts errors as `where.path: expected <type>, got <value>` lines. */
export function describeErrors(where: string, errors: t.Errors): string[] {
  // members of intersections and unions appear in the context as "0", "1"...: not part of the path
  const pathOf = (context: t.Context): string =>
    [
      where,
      ...context.filter((c, i) => c.key !== '' && !(i > 0 && isCombinator(context[i - 1]!.type))).map((c) => c.key),
    ].join('.');
  const lines: string[] = [];
  for (const e of errors) {
    // A union (`retries`: a count or a policy) has each member's errors: only those of the member of the value's
    // kind tell what is wrong. A value that is not an object gets the union's own line, once; an object, its
    // members' errors inside it (a member that refused the object as a whole says nothing more).
    const u = e.context.findLastIndex((c) => c.type instanceof t.UnionType);
    if (u >= 0) {
      const actual = e.context[u]!.actual;
      if (!isPlainObject(actual)) {
        const line = `${pathOf(e.context.slice(0, u + 1))}: expected ${e.context[u]!.type.name}, got ${show(actual)}`;
        if (!lines.includes(line)) lines.push(line);
        continue;
      }
      if (e.context.length === u + 2 && errors.some((o) => o !== e && o.context.length > u + 2)) continue;
    }
    const path = pathOf(e.context);
    if (e.message) lines.push(`${path}: ${e.message}`);
    else
      lines.push(
        `${path}: expected ${e.context[e.context.length - 1]?.type.name ?? 'a valid value'}, got ${show(e.value)}`,
      );
  }
  return lines;
}

function isCombinator(type: t.Decoder<unknown, unknown>): boolean {
  return type instanceof t.IntersectionType || type instanceof t.UnionType;
}

/**
 * A value as a message shows it: JSON where it has one, shortened; never throws (BigInts, symbols, objects without a
 * prototype, cycles).
 * @internal
 */
export function show(value: unknown, max = 80): string {
  if (value === undefined) return 'undefined';
  if (typeof value === 'function') return 'a function';
  if (typeof value === 'symbol') return value.toString();
  if (typeof value === 'bigint') return `${value}n`;
  if (typeof value === 'number') return String(value); // JSON would show NaN and Infinity as null
  let s: string | undefined;
  try {
    s = JSON.stringify(value);
  } catch {
    s = undefined;
  }
  if (typeof value === 'object' && value !== null && !Array.isArray(value) && !isPlainObject(value)) {
    const kind = Object.prototype.toString.call(value).slice(8, -1);
    s = `${/^[AEIOU]/.test(kind) ? 'an' : 'a'} ${kind}${s === undefined || s === '{}' ? '' : ` ${s}`}`;
  }
  if (s === undefined && Array.isArray(value)) s = `an array of ${value.length}`;
  else if (s === undefined && isPlainObject(value)) s = `an object with the keys ${Object.keys(value).join(', ')}`;
  if (s === undefined) s = Object.prototype.toString.call(value);
  return s.length > max ? `${s.slice(0, max - 3)}...` : s;
}

/** An object literal (or JSON object, or one without a prototype): not an array, class instance, Map, boxed value... */
export function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto: unknown = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}

/** `unknown field "input" (did you mean "inputs"?; known: ...)`: the message for a field not in `known`. */
export function unknownField(
  key: string,
  known: readonly string[],
  hints: Readonly<Record<string, string>> = {},
): string {
  const hint = Object.prototype.hasOwnProperty.call(hints, key) ? hints[key] : undefined;
  const near = hint ?? nearest(key, known);
  const did = near === undefined ? '' : hint !== undefined ? `${hint}; ` : `did you mean "${near}"?; `;
  return `unknown field ${show(key)} (${did}known: ${known.join(', ')})`;
}

/** The known name closest to `key` (a typo, a missing plural, another case), if one is close enough. */
export function nearest(key: string, known: readonly string[]): string | undefined {
  const k = key.toLowerCase();
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const name of known) {
    const n = name.toLowerCase();
    const d = n === k ? 0 : n.startsWith(k) || k.startsWith(n) ? Math.abs(n.length - k.length) : distance(k, n);
    if (d < bestDistance) [best, bestDistance] = [name, d];
  }
  return bestDistance <= Math.min(2, Math.floor(key.length / 3)) || (best !== undefined && bestDistance === 0)
    ? best
    : undefined;
}

/** Edit distance (a swap of two neighbours counts as one edit), for short names. */
function distance(a: string, b: string): number {
  if (a.length > 64 || b.length > 64) return Infinity;
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 0; j <= b.length; j++) d[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1);
      d[i]![j] = v;
    }
  }
  return d[a.length]![b.length]!;
}

export function decodeOrThrow<A>(codec: t.Type<A, unknown, unknown>, value: unknown, where: string): A {
  const result = codec.decode(value);
  if (isLeft(result)) {
    const problems = [...new Set(describeErrors(where, result.left))];
    throw new InvalidRequirementsError(`Invalid ${where}:\n  ${problems.join('\n  ')}`, problems);
  }
  return result.right;
}

export const validateTaskRequirements = (value: unknown, where = 'task requirements'): TaskRequirements =>
  decodeOrThrow(TaskRequirements as t.Type<TaskRequirements, unknown, unknown>, value, where);

export const validateWorkerRequirements = (value: unknown, where = 'worker requirements'): WorkerRequirements =>
  decodeOrThrow(WorkerRequirements as t.Type<WorkerRequirements, unknown, unknown>, value, where);

/** One validated worker group of an executor: its name (given, or `group-<index>`) and its requirements. */
export interface NamedWorker {
  readonly name: string;
  readonly worker: WorkerRequirements;
}

/**
 * Validates an executor's `worker` option: one worker's requirements, or a non-empty list of them (worker groups),
 * each named uniquely. Problems are reported together, by path (`worker[1].cores`), as `InvalidRequirementsError`.
 */
export function validateWorkerGroups(value: unknown, where = 'executor worker requirements'): NamedWorker[] {
  if (!Array.isArray(value)) {
    const worker = validateWorkerRequirements(value, where);
    return [{ name: worker.name ?? 'group-0', worker }];
  }
  const problems: string[] = [];
  if (value.length === 0)
    problems.push(
      "worker: expected one worker's requirements or a non-empty list of them (worker groups), got [] " +
        '(leave worker out for what the backend gives one executor)',
    );
  const groups: NamedWorker[] = [];
  const named = new Map<string, number>();
  value.forEach((entry: unknown, i) => {
    const decoded = (WorkerRequirements as t.Type<WorkerRequirements, unknown, unknown>).decode(entry);
    if (isLeft(decoded)) problems.push(...describeErrors(`worker[${i}]`, decoded.left));
    // the name of an entry with other problems is checked too: the list is validated whole
    const given = isLeft(decoded) ? (entry as { name?: unknown } | null)?.name : decoded.right.name;
    const name = typeof given === 'string' ? given : `group-${i}`;
    const first = named.get(name);
    if (first !== undefined)
      problems.push(
        `worker[${i}].name: the group name ${show(name)}${given === undefined ? ' (its default)' : ''} is ` +
          `already worker[${first}]'s: give each worker group its own name`,
      );
    else named.set(name, i);
    if (first === undefined && !isLeft(decoded)) groups.push({ name, worker: decoded.right });
  });
  if (problems.length > 0) {
    const unique = [...new Set(problems)];
    throw new InvalidRequirementsError(`Invalid ${where}:\n  ${unique.join('\n  ')}`, unique);
  }
  return groups;
}

/** The resources one task occupies while it runs. */
export interface Footprint {
  readonly cores: number;
  readonly gpus: number;
  readonly memoryMB: number;
}

export function footprint(req: TaskRequirements): Footprint {
  const ranks = req.ranks ?? 1;
  return { cores: ranks * (req.coresPerRank ?? 1), gpus: ranks * (req.gpusPerRank ?? 0), memoryMB: req.memoryMB ?? 0 };
}

export function retryPolicy(req: TaskRequirements): { max: number; backoff: number; factor: number } {
  const r = req.retries;
  if (r === undefined) return { max: 0, backoff: 0, factor: 2 };
  if (typeof r === 'number') return { max: r, backoff: 0, factor: 2 };
  return { max: r.max ?? 0, backoff: r.backoff ?? 0, factor: r.factor ?? 2 };
}
