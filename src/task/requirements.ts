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
      if (typeof u !== 'object' || u === null || Array.isArray(u)) return t.failure(u, c);
      const unknownKeys = Object.keys(u).filter((k) => !known.has(k));
      if (unknownKeys.length > 0) {
        return t.failures(
          unknownKeys.map((k) => ({
            value: (u as Record<string, unknown>)[k],
            context: [...c, { key: k, type: t.never, actual: (u as Record<string, unknown>)[k] }],
            message: `unknown field "${k}" (known: ${[...known].join(', ')})`,
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

const PositiveInt = refined('a positive integer', (n) => Number.isInteger(n) && n > 0);
/** @internal also the job data of bullmq() (its attempt number) */
export const NonNegativeInt = refined('a non-negative integer', (n) => Number.isInteger(n) && n >= 0);
const PositiveNumber = refined('a positive finite number', (n) => Number.isFinite(n) && n > 0);
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
const Env = t.record(t.string, t.string, 'an object of string values');

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
  },
  'TaskRequirements',
);
export type TaskRequirements = t.TypeOf<typeof TaskRequirements>;

export const WorkerRequirements = closed(
  {
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
  return errors.map((e) => {
    // members of intersections and unions appear in the context as "0", "1"...: not part of the path
    const keys = e.context
      .filter((c, i) => c.key !== '' && !(i > 0 && isCombinator(e.context[i - 1]!.type)))
      .map((c) => c.key);
    const path = [where, ...keys].join('.');
    if (e.message) return `${path}: ${e.message}`;
    const expected = e.context[e.context.length - 1]?.type.name ?? 'a valid value';
    return `${path}: expected ${expected}, got ${show(e.value)}`;
  });
}

function isCombinator(type: t.Decoder<unknown, unknown>): boolean {
  return type instanceof t.IntersectionType || type instanceof t.UnionType;
}

function show(value: unknown): string {
  if (value === undefined) return 'undefined';
  try {
    const s = JSON.stringify(value);
    return s.length > 60 ? `${s.slice(0, 57)}...` : s;
  } catch {
    return String(value);
  }
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
