/**
 * Fuzzing what users hand to scalems: `executable(argv, options)` and `workflow.submitDescription(json)` get random
 * and near-valid input (wrong types, unknown keys, NUL bytes, huge numbers, nested junk, `$task` references to
 * unknown ids, labels of every type). Each must give a task or a typed error (a `ScalemsError`), never a raw
 * TypeError/RangeError, and a refusal must leave the workflow's store and state exactly as they were.
 *
 * Seeded: a failure prints the seed and the path of the counterexample. FUZZ_SEED explores other seeds, FUZZ_SCALE
 * runs more (or fewer) cases, FUZZ_STATS prints how the submissions ended.
 */
import fc from 'fast-check';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { inspect } from 'node:util';
import { NEVER } from 'rxjs';
import {
  ScalemsError,
  defineTask,
  executable,
  executor,
  file,
  launch,
  memoryStore,
  openWorkflow,
  type Backend,
  type Executor,
  type Store,
  type Task,
  type Workflow,
} from 'scalems';
import { sqliteStore } from 'scalems/node';
import { validateDescription } from '../src/task/executable';

const SEED = Number(process.env.FUZZ_SEED ?? 0x5ca1e);
/** Runs per property (times FUZZ_SCALE): about 3 000 submissions in all, in about 5 s on an idle machine. */
const RUNS = Object.fromEntries(
  Object.entries({ executable: 1000, descriptions: 600, sqlite: 150 }).map(([k, n]) => [
    k,
    Math.ceil(n * Number(process.env.FUZZ_SCALE ?? 1)),
  ]),
) as Record<'executable' | 'descriptions' | 'sqlite', number>;
const params = (numRuns: number): fc.Parameters<unknown> => ({ seed: SEED, numRuns });

defineTask('fuzz.add', (a: number, b: number) => a + b);

/**
 * A backend that takes every task and never ends it: the fuzz is about what is accepted, not what runs. It takes the
 * walltime on itself (and ignores it), so that no timer changes the store while a refusal is being checked.
 */
const idle = (): Backend => ({
  kind: 'idle',
  open: () => ({
    capacity: { cores: 64, gpus: 8, memoryMB: Infinity },
    enforcesWalltime: true,
    run: () => NEVER,
    close: async () => {},
  }),
});

/** Placeholders for what exists only in a workflow: its tasks, as handles or `{ $task }`, and their outputs. */
class Upstream {
  constructor(readonly kind: 'handle' | 'ref' | 'output' | 'stdout' | 'undeclared') {}
  [inspect.custom](): string {
    return `<upstream ${this.kind}>`;
  }
}

interface Scene {
  readonly wf: Workflow;
  readonly ex: Executor;
  readonly upstream: Task<unknown>;
}

async function scene(store: Store): Promise<Scene> {
  const wf = await openWorkflow({ store });
  const ex = executor(launch(wf, idle()), { name: 'fuzz' });
  const upstream = ex.submit(executable(['true'], { outputs: ['out.txt'], label: 'upstream' }));
  return { wf, ex, upstream };
}

/** `value` with its placeholders replaced by the scene's upstream task (plain objects and arrays only). */
function place(value: unknown, s: Scene): unknown {
  if (value instanceof Upstream) {
    const ref = { $task: s.upstream.id };
    if (value.kind === 'handle') return s.upstream;
    if (value.kind === 'ref') return ref;
    return { $output: { output: 'out.txt', stdout: 'stdout', undeclared: 'nope.txt' }[value.kind], of: ref };
  }
  if (Array.isArray(value)) return value.map((v) => place(v, s));
  if (typeof value === 'object' && value !== null) {
    const proto: unknown = Object.getPrototypeOf(value);
    if (proto !== Object.prototype && proto !== null) return value;
    const out: Record<string, unknown> = proto === null ? Object.create(null) : {};
    for (const [k, v] of Object.entries(value)) Object.defineProperty(out, k, { value: place(v, s), enumerable: true });
    return out;
  }
  return value;
}

/** The store's content (and the workflow's counts), as text: compared before and after a refused submission. */
async function snapshot(wf: Workflow): Promise<string> {
  await wf.flushed();
  const entries = (await wf.store.entries()).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([entries, wf.state.counts], (_, v: unknown) =>
    typeof v === 'bigint' || typeof v === 'symbol' || typeof v === 'function'
      ? `<${typeof v} ${String(v)}>`
      : v instanceof Map || v instanceof Set
        ? [v.constructor.name, ...v]
        : v === undefined
          ? '<undefined>'
          : v,
  );
}

/**
 * The snapshot once the tasks accepted so far have stopped moving (submitted, ready, then running for ever): before
 * a submission, and after a refusal, so that a change it would make a turn later is seen too.
 */
async function settled(wf: Workflow): Promise<string> {
  let last = await snapshot(wf);
  for (let turn = 0; turn < 100; turn++) {
    await new Promise((resolve) => setImmediate(resolve));
    const now = await snapshot(wf);
    if (now === last) return now;
    last = now;
  }
  throw new Error('the workflow did not settle in 100 turns');
}

/** How the submissions of a property ended: `task`, or the code of the typed error. */
type Tally = Record<string, number>;

/**
 * Runs `act` against the scene: it returns a task, or throws a typed error and leaves the store as it was. Raw
 * errors are rethrown as they are, so that the counterexample shows them.
 */
async function expectTaskOrTypedRefusal(s: Scene, tally: Tally, act: () => unknown): Promise<void> {
  const before = await settled(s.wf);
  let result: unknown;
  try {
    result = act();
  } catch (err) {
    if (!(err instanceof ScalemsError)) throw err;
    const after = await settled(s.wf);
    if (after !== before) throw new Error(`a refused submission (${err.message}) changed the store`);
    tally[err.code] = (tally[err.code] ?? 0) + 1;
    return;
  }
  expect(s.wf.record((result as Task<unknown>).id)).toBeDefined();
  tally.task = (tally.task ?? 0) + 1;
}

/** The fuzz is worth its time only if it reaches both sides: valid tasks, and the refusals of each kind. */
function expectBothSides(tally: Tally, runs: number): void {
  if (process.env.FUZZ_STATS !== undefined) console.log(tally);
  expect(tally.task ?? 0).toBeGreaterThan(runs / 20);
  expect(tally.INVALID_TASK_DESCRIPTION ?? 0).toBeGreaterThan(runs / 20);
}

// ---------------------------------------------------------------------------------------------- arbitraries
// Near-valid input: each field is well-formed most of the time and wild (junk) now and then, so that the runs
// reach both valid tasks and each kind of refusal, one mistake at a time as well as many at once.

const nul = fc.constantFrom('\0', 'a\0', '\0b', 'x\0y', 'A\0=1');
const specialString = fc.constantFrom(
  '',
  ' ',
  '.',
  '..',
  '/',
  'a/',
  './a',
  'a//b',
  '/etc/hosts',
  '../x',
  'a/../..',
  'a/b/../c',
  'stdout',
  'stderr/x',
  'A=1',
  '=',
  '=A',
  '__proto__',
  'constructor',
  'toString',
  'hasOwnProperty',
  '$task',
  '$file',
  'x'.repeat(300),
);
const text = fc.oneof(fc.string({ maxLength: 12 }), fc.string({ unit: 'binary', maxLength: 8 }), nul, specialString);
const hugeNumber = fc.oneof(
  fc.constantFrom(0, -0, -1, 1, 2, 1.5, NaN, Infinity, -Infinity, 2 ** 31, 2 ** 53, 2 ** 53 + 2, 1e21, 1e308),
  fc.double(),
  fc.integer(),
);
const exotic = fc.constantFrom<unknown>(
  () => 1,
  Symbol('s'),
  10n,
  new Map([['a', 1]]),
  new Set([1]),
  new Date(0),
  /re/,
  new Uint8Array(2),
  Object.create(null),
  Object.assign(Object.create(null), { a: '1' }),
  [, 'hole'], // eslint-disable-line no-sparse-arrays
  new String('boxed'),
  new Error('e'),
  Promise.resolve(1),
);
const anything = fc.anything({
  maxDepth: 2,
  maxKeys: 3,
  withBigInt: true,
  withNullPrototype: true,
  withBoxedValues: true,
  withMap: true,
  withSet: true,
  withDate: true,
  withTypedArray: true,
  withSparseArray: true,
  withObjectString: true,
});
const junk: fc.Arbitrary<unknown> = fc.oneof(
  { weight: 3, arbitrary: anything },
  { weight: 1, arbitrary: exotic },
  { weight: 1, arbitrary: hugeNumber },
  { weight: 1, arbitrary: text },
);
/** Mostly `good`, sometimes `wild` (by default, junk of every sort). */
const field = <T>(good: fc.Arbitrary<T>, wild: fc.Arbitrary<unknown> = junk): fc.Arbitrary<unknown> =>
  fc.oneof({ weight: 8, arbitrary: good }, { weight: 1, arbitrary: wild });
/** `record`, now and then with fields it does not have (typos, `cwd`, requirements given as options...). */
const loose = <T>(record: fc.Arbitrary<T>): fc.Arbitrary<unknown> => {
  const extraKey = fc.oneof(text, fc.constantFrom('input', 'output', 'cwd', 'ranks', 'Env', 'lable', 'argv'));
  const extra = fc.dictionary(extraKey, junk, { minKeys: 1, maxKeys: 2 });
  return fc
    .tuple(record, fc.oneof({ weight: 8, arbitrary: fc.constant(undefined) }, { weight: 1, arbitrary: extra }))
    .map(([r, more]) => (more === undefined ? r : { ...more, ...r }));
};
const optional = { requiredKeys: [] as never[] };

const upstream = fc
  .constantFrom('handle', 'ref', 'output', 'stdout', 'undeclared')
  .map((k) => new Upstream(k as Upstream['kind']));
const hex = fc.constantFrom(...'0123456789abcdef');
const unknownTask = fc.oneof(text, fc.string({ unit: hex, minLength: 32, maxLength: 32 })).map(($task) => ({ $task }));
const wildSource = fc.oneof(
  text,
  fc.record({ $file: text, name: text }),
  unknownTask,
  fc.record({ $output: text, of: fc.oneof(upstream, unknownTask, junk) }),
  junk,
);
const goodSource = fc.oneof(fc.constantFrom('/etc/hosts', 'rel/in.dat'), fc.constant(file('/etc/hosts')), upstream);
const source = field(goodSource, wildSource);
const path = field(fc.constantFrom('a', 'b.txt', 'dir/x', 'in/./c', 'd/e/f', '__proto__'), text);
const envName = field(fc.constantFrom('A', 'B_2', 'OMP_NUM_THREADS', 'lower'), text);
const envValue = field(fc.string({ maxLength: 8 }), fc.oneof(text, junk));
const env = fc.dictionary(envName as fc.Arbitrary<string>, envValue, { maxKeys: 3 });
const retries = fc.oneof(
  fc.integer({ min: 0, max: 3 }),
  fc.record({ max: field(fc.nat(3), hugeNumber), backoff: field(fc.nat(5), hugeNumber) }, optional),
);
const slurm = fc.record({ partition: field(fc.string({ maxLength: 5 })), exclusive: field(fc.boolean()) }, optional);
const requirements = loose(
  fc.record(
    {
      ranks: field(fc.integer({ min: 1, max: 4 }), hugeNumber),
      coresPerRank: field(fc.integer({ min: 1, max: 2 }), hugeNumber),
      gpusPerRank: field(fc.nat(1), hugeNumber),
      memoryMB: field(fc.integer({ min: 1, max: 4096 }), hugeNumber),
      walltime: field(fc.integer({ min: 1, max: 3600 }), hugeNumber),
      env: field(env),
      retries: field(retries),
      slurm: field(loose(slurm)),
    },
    optional,
  ),
);
const argv = field(
  fc
    .tuple(
      field(fc.constantFrom('true', '/bin/echo', './run'), text),
      fc.array(field(fc.constantFrom('-n', 'x y', '', '--flag=1'), text), { maxLength: 3 }),
    )
    .map(([program, args]) => [program, ...args]),
);
const io = {
  inputs: field(fc.dictionary(path as fc.Arbitrary<string>, source, { maxKeys: 3 })),
  outputs: field(fc.array(path, { maxLength: 3 }), fc.oneof(path, junk)),
  env: field(env, fc.oneof(fc.constantFrom('A=1', 'A=1 B=2'), junk)),
  stdin: field(fc.oneof(fc.string({ maxLength: 8 }), source), fc.oneof(text, wildSource)),
};
const identity = {
  requirements: field(requirements),
  label: field(fc.string({ minLength: 1, maxLength: 8 }), fc.oneof(text, junk)),
  key: field(fc.string({ maxLength: 8 })),
  pure: field(fc.boolean()),
};
const options = field(loose(fc.record({ ...io, ...identity }, optional)));
const executableDescription = loose(fc.record({ argv, ...io }, { requiredKeys: ['argv'] }));
const functionDescription = loose(
  fc.record(
    {
      name: field(fc.constant('fuzz.add'), text),
      kind: field(fc.constant('function')),
      args: field(fc.tuple(field(fc.integer(), fc.oneof(upstream, unknownTask, junk)), fc.integer())),
      executor: field(fc.constant('fuzz')),
      ...identity,
    },
    { requiredKeys: ['name'] },
  ),
);
const executableTask = loose(
  fc.record(
    {
      name: field(fc.constant('executable:true'), text),
      kind: fc.constant('executable'),
      args: field(fc.tuple(executableDescription), fc.oneof(fc.array(executableDescription, { maxLength: 3 }), junk)),
      ...identity,
    },
    { requiredKeys: ['name', 'kind', 'args'] },
  ),
);
const description = field(fc.oneof(functionDescription, executableTask));

// ---------------------------------------------------------------------------------------------- properties

describe(`fuzz (seed ${SEED})`, () => {
  it('executable(argv, options) gives a task, or a typed error; a refused submission leaves the store as it was', async () => {
    const tally: Tally = {};
    await fc.assert(
      fc.asyncProperty(argv, options, async (rawArgv, rawOptions) => {
        const s = await scene(memoryStore());
        try {
          await expectTaskOrTypedRefusal(s, tally, () => {
            const spec = executable(place(rawArgv, s) as string[], place(rawOptions, s) as object);
            // what executable() makes is a valid description as it is (normalising it again changes nothing)
            expect(validateDescription(spec.args[0], 'again')).toEqual(spec.args[0]);
            return s.ex.submit(spec);
          });
        } finally {
          await s.wf.close();
        }
      }),
      params(RUNS.executable),
    );
    expectBothSides(tally, RUNS.executable);
  });

  it('workflow.submitDescription(json) gives a task, or a typed error; a refusal leaves the store as it was', async () => {
    const tally: Tally = {};
    await fc.assert(
      fc.asyncProperty(fc.array(description, { minLength: 1, maxLength: 4 }), async (descriptions) => {
        const s = await scene(memoryStore());
        try {
          for (const d of descriptions)
            await expectTaskOrTypedRefusal(s, tally, () => s.wf.submitDescription(place(d, s)));
        } finally {
          await s.wf.close();
        }
      }),
      params(RUNS.descriptions),
    );
    expectBothSides(tally, RUNS.descriptions);
  });

  it('the same holds on a SQLite store (values it cannot store are refused before anything is written)', async () => {
    const tally: Tally = {};
    const dir = mkdtempSync(join(tmpdir(), 'scalems-fuzz-'));
    const s = await scene(sqliteStore(join(dir, 'state.sqlite')));
    try {
      await fc.assert(
        fc.asyncProperty(description, options, async (d, o) => {
          await expectTaskOrTypedRefusal(s, tally, () => s.wf.submitDescription(place(d, s)));
          await expectTaskOrTypedRefusal(s, tally, () => s.ex.submit(executable(['true'], place(o, s) as object)));
        }),
        params(RUNS.sqlite),
      );
      expectBothSides(tally, RUNS.sqlite);
    } finally {
      await s.wf.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
