// Every error scalems raises on purpose is a ScalemsError subclass (README "Errors: what bad input gets", DESIGN §8):
// the mistakes of the public calls below once got a raw TypeError or RangeError, which `instanceof ScalemsError` and
// `err.code` missed. The last test keeps new ones out of the sources.
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import {
  ExecutableFailedError,
  InvalidOptionsError,
  InvalidRequirementsError,
  InvalidTaskDescriptionError,
  ScalemsError,
  StoreAccessError,
  StoreClosedError,
  TaskDefinitionError,
  call,
  currentTask,
  defineTask,
  executable,
  executor,
  inProcess,
  labelled,
  launch,
  idbStore,
  memoryStore,
  openWorkflow,
  submitOn,
  taskByLabel,
  withExecutor,
  withWorkflow,
  type Executor,
  type SubmitInput,
  type Workflow,
} from 'scalems';
import {
  bullmq,
  defaultStorePath,
  processes,
  progressLine,
  readBytes,
  readText,
  slurm,
  sqliteStore,
  workflowDir,
} from 'scalems/node';
import { virtual } from 'scalems/testing';
import { lastValueFrom, of, toArray } from 'rxjs';

const double = (x: number): number => 2 * x;

let wf: Workflow;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore(), name: 'typed-errors' });
});
afterEach(async () => {
  await wf.close();
});

/** What `make` throws (synchronously). */
function thrown(make: () => unknown): unknown {
  try {
    make();
  } catch (err) {
    return err;
  }
  throw new Error('nothing was thrown');
}

test.each([
  [
    'labelled(null)',
    () => labelled(null as never),
    /labelled\(label\): label must be a non-empty string or a function .* got null/,
  ],
  ['labelled(42)', () => labelled(42 as never), /got number/],
  [
    'call(42)',
    () => (call as (fn: unknown) => unknown)(42),
    /call\(fn, \.\.\.args\): fn must be a function, got number/,
  ],
])('%s: InvalidTaskDescriptionError', (_, make, why) => {
  const err = thrown(make);
  expect(err).toBeInstanceOf(InvalidTaskDescriptionError);
  expect(err).toMatchObject({ code: 'INVALID_TASK_DESCRIPTION', message: expect.stringMatching(why) as string });
});

test('submitting what is not a task spec: InvalidTaskDescriptionError, and nothing recorded', () => {
  const ex = executor(launch(wf, inProcess()));
  const err = thrown(() => ex.submit({ kind: 'nonsense' } as never));
  expect(err).toBeInstanceOf(InvalidTaskDescriptionError);
  expect((err as Error).message).toBe(
    'submit(fn, ...args) or submit(spec): expected a function or a TaskSpec (from call(fn, ...args) or ' +
      'executable(...)), got object',
  );
  expect(wf.state.tasks.size).toBe(0);
});

test('a task of another workflow as an argument: InvalidTaskDescriptionError naming it, and nothing recorded', async () => {
  const other = await openWorkflow({ store: memoryStore(), name: 'other' });
  try {
    const upstream = executor(launch(other, inProcess())).submit(call(double, 1));
    await upstream;
    const ex = executor(launch(wf, inProcess()));
    const err = thrown(() => ex.submit(call(double, { x: upstream } as never)));
    expect(err).toBeInstanceOf(InvalidTaskDescriptionError);
    expect((err as Error).message).toBe(
      `task ${upstream.id} belongs to another workflow; tasks can only take inputs from their own workflow`,
    );
    expect(wf.state.tasks.size).toBe(0);
  } finally {
    await other.close();
  }
});

test('a second open executor of the same name: InvalidOptionsError saying what to do', () => {
  executor(launch(wf, inProcess()), { name: 'md' });
  const err = thrown(() => executor(launch(wf, inProcess()), { name: 'md' }));
  expect(err).toBeInstanceOf(InvalidOptionsError);
  expect((err as Error).message).toBe(
    'an executor named "md" is already open on workflow "typed-errors": give this one another name, or shut that ' +
      'one down first',
  );
});

test('a function that returns a Promise on virtual(): the task fails with InvalidTaskDescriptionError', async () => {
  const ex = executor(launch(wf, virtual({ durations: { later: 1 } })));
  const later = async (): Promise<number> => 1;
  const err = await ex.submit(call(later)).then(
    () => undefined,
    (e: unknown) => e,
  );
  // the task's error as the handle gives it, or the cause it wraps
  const cause = (err as { cause?: unknown }).cause ?? err;
  expect(cause).toBeInstanceOf(InvalidTaskDescriptionError);
  expect((cause as Error).message).toMatch(/virtual\(\): task later returned a Promise/);
});

test.each([
  ['launch(null, backend)', () => launch(null as never, inProcess()), /workflow must be a Workflow .*got null/],
  ['launch(workflow, null)', () => launch(wf, null as never), /backend must be a backend \(inProcess\(\).*got null/],
  ['executor(undefined)', () => executor(undefined as never), /runtime must be a Runtime .*got undefined/],
  ['executor(runtime, null)', () => executor(launch(wf, inProcess()), null as never), /options must be an object/],
  ['submitOn(undefined)', () => submitOn(undefined as never), /executor must be an Executor .*got undefined/],
  ['submitOn({})', () => submitOn({} as never), /executor must be an Executor/],
  [
    'submitOn(ex, 42)',
    () => submitOn(executor(launch(wf, inProcess())), 42 as never),
    /submitOn\(executor, fn\?, options\?\): expected a function or an options object after the executor, got 42/,
  ],
  [
    'submitOn(ex, fn, { ordred })',
    () => submitOn(executor(launch(wf, inProcess())), double, { ordred: true } as never),
    /submitOn\(\{ ordred \}\): unknown option \(did you mean "ordered"\?/,
  ],
  [
    'submitOn(ex, { settle: "yes" })',
    () => submitOn(executor(launch(wf, inProcess())), { settle: 'yes' } as never),
    /settle.*expected true or false/,
  ],
  // before: null was taken as no options, the options after undefined were dropped, and two option objects too
  [
    'submitOn(ex, null)',
    () => submitOn(executor(launch(wf, inProcess())), null as never),
    /expected a function or an options object after the executor, got null/,
  ],
  [
    'submitOn(ex, undefined, { setle })',
    () => submitOn(executor(launch(wf, inProcess())), undefined, { setle: true } as never),
    /submitOn\(\{ setle \}\): unknown option \(did you mean "settle"\?/,
  ],
  [
    'submitOn(ex, {}, { settle })',
    () => submitOn(executor(launch(wf, inProcess())), {} as never, { settle: true } as never),
    /one options object, after the function if there is one/,
  ],
  // before: taken (NaN cores: no task ever started), and null a raw TypeError
  ['virtual({ cores: NaN })', () => virtual({ cores: NaN }), /virtual\(\{ cores \}\): expected a positive integer/],
  ['virtual({ durations: { f: -5 } })', () => virtual({ durations: { f: -5 } }), /durations \}\): expected durations/],
  ['virtual({ duration: 3 })', () => virtual({ duration: 3 } as never), /did you mean "durations"\?/],
  ['virtual(null)', () => virtual(null as never), /virtual\(options\): expected an object, got null/],
  ['sqliteStore(123)', () => sqliteStore(123 as never), /file must be a path .*got 123/],
  ['sqliteStore(file, { verify: "no" })', () => sqliteStore('x.sqlite', { verify: 'no' } as never), /verify/],
])('%s: InvalidOptionsError where it is called, naming what it takes', (_, make, why) => {
  const err = thrown(make);
  expect(err).toBeInstanceOf(InvalidOptionsError);
  expect((err as Error).message).toMatch(why);
});

test.each([
  ['a key that is not a string', { key: 5 }, /key must be a non-empty string, got 5/],
  ['an empty key', { key: '' }, /key must be a non-empty string/],
  ['pure that is not a boolean', { pure: 'no' }, /pure must be true or false/],
])('%s: InvalidTaskDescriptionError at submit, nothing recorded', (_, extra, why) => {
  const ex = executor(launch(wf, inProcess()));
  const err = thrown(() => ex.submit({ ...call(double, 1), ...extra } as never));
  expect(err).toBeInstanceOf(InvalidTaskDescriptionError);
  expect((err as Error).message).toMatch(why);
  expect(wf.state.tasks.size).toBe(0);
});

test('an error keeps its name in an app bundle that renames classes (minified), as its code', async () => {
  // new.target.name was the minified one: "_e: indexeddb:x/scalems is in use..." in an esbuild --minify bundle
  const esbuild = require('esbuild') as typeof import('esbuild');
  const bundle = await esbuild.build({
    stdin: {
      contents:
        "import { TaskCancelledError, PathEscapeError } from './src/errors';\n" +
        'export const made = [TaskCancelledError, PathEscapeError]\n' +
        '  .map((C) => [C.name, new C("m").name, String(new C("m"))]);',
      resolveDir: join(__dirname, '..'),
      loader: 'ts',
    },
    bundle: true,
    minify: true,
    write: false,
    format: 'cjs',
    platform: 'neutral',
    logLevel: 'silent',
  });
  const module = { exports: {} as { made?: Array<[string, string, string]> } };
  new Function('module', 'exports', bundle.outputFiles[0]!.text)(module, module.exports);
  const made = module.exports.made!;
  expect(made.map(([cls]) => cls)).not.toContain('TaskCancelledError'); // the bundle did rename the classes
  expect(made.map(([, name, text]) => [name, text])).toEqual([
    ['TaskCancelledError', 'TaskCancelledError: m'],
    ['PathEscapeError', 'PathEscapeError: m'],
  ]);
});

describe('mistakes found by an audit of bad input: each was accepted, or failed later with a raw error', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-bad-input-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));
  const ex = (): Executor => executor(launch(wf, inProcess()));
  class Model {
    constructor(readonly x: number) {}
  }
  const one = async (): Promise<number> => 1;
  type Case = [what: string, make: () => unknown, error: new (...a: never[]) => Error, why: RegExp];

  const cases = (): Case[] => [
    // the name is how messages and submitDescription name an executor
    [
      'executor({ nme })',
      () => executor(ex().runtime, { nme: 'x' } as never),
      InvalidOptionsError,
      /did you mean "name"/,
    ],
    ['executor({ name: 5 })', () => executor(ex().runtime, { name: 5 as never }), InvalidOptionsError, /name.*got 5/],
    ['executor({ name: "a\\0b" })', () => executor(ex().runtime, { name: 'a\0b' }), InvalidOptionsError, /printable/],
    ['withExecutor(null, fn)', () => withExecutor(null as never, one), InvalidOptionsError, /must be an Executor/],
    [
      'withExecutor(ex(), 5)',
      () => withExecutor(ex(), 5 as never),
      InvalidOptionsError,
      /fn must be a function, got 5/,
    ],
    ['withWorkflow({}, fn)', () => withWorkflow({} as never, one), InvalidOptionsError, /must be a Workflow/],
    [
      'call(class)',
      () => (call as (fn: unknown) => unknown)(Model),
      InvalidTaskDescriptionError,
      /fn is a class \(Model\).*new TheClass/,
    ],
    [
      'submit(class)',
      () => {
        const e = ex();
        return (e.submit as (fn: unknown) => unknown).call(e, Model);
      },
      InvalidTaskDescriptionError,
      /is a class/,
    ],
    [
      'defineTask(name, class)',
      () => defineTask('bad.k', Model as never),
      TaskDefinitionError,
      /is a class.*when the class changes.*\(\.\.\.args\) => new Model\(\.\.\.args\), \{ version: '1' \}\)/,
    ],
    [
      'defineTask({ verison })',
      () => defineTask('bad.v', one, { verison: '2' } as never),
      TaskDefinitionError,
      /"verison"/,
    ],
    ['defineTask(name, fn, "2")', () => defineTask('bad.s', one, '2' as never), TaskDefinitionError, /got string/],
    ['defineTask(name, fn, null)', () => defineTask('bad.n', one, null as never), TaskDefinitionError, /got null/],
    [
      'defineTask("a\\nb", fn)',
      () => defineTask('a\nb', one),
      TaskDefinitionError,
      /printable characters, got "a\\nb"/,
    ],
    // a padded or blank name, or one with an invisible character, looks like another and is not
    ...[' m.pad ', 'm.pad ', '   ', 'm\u200b.pad'].map((name): Case => [
      `defineTask(${JSON.stringify(name)}, fn)`,
      () => defineTask(name, one),
      TaskDefinitionError,
      /got ".*" \(a name has no space at either end and no invisible character/,
    ]),
    ['labelled("")', () => labelled(''), InvalidTaskDescriptionError, /non-empty string.*got an empty string/],
    ['executable({ key: "" })', () => executable(['true'], { key: '' }), InvalidTaskDescriptionError, /options\.key/],
    ['shutdown({ wiat })', () => ex().shutdown({ wiat: true } as never), InvalidOptionsError, /did you mean "wait"/],
    // a union (a count or a policy) said what both of its members expected, one of them by an internal type name
    [
      'retries: -1',
      () => ex().submit({ ...call(one), requirements: { retries: -1 } }),
      InvalidRequirementsError,
      /^Invalid task requirements:\n {2}task requirements\.retries: expected a non-negative integer or \{ max, backoff, factor \}, got -1$/,
    ],
    [
      'retries: { backoff: -1 }',
      () => ex().submit({ ...call(one), requirements: { retries: { max: 2, backoff: -1 } } }),
      InvalidRequirementsError,
      /^Invalid task requirements:\n {2}task requirements\.retries\.backoff: expected a non-negative number[^\n]*$/,
    ],
    ['sqliteStore(NUL)', () => sqliteStore(join(dir, 'a\0b')), InvalidOptionsError, /without NUL/],
    // before: taken, and each task then failed with a raw ERR_INVALID_ARG_VALUE
    ['processes({ root: NUL })', () => processes({ root: 'r\0x' }), InvalidOptionsError, /root \}\).*without NUL/],
    ['slurm({ root: NUL })', () => slurm({ root: 'r\0x' }), InvalidOptionsError, /root \}\).*without NUL/],
    ['bullmq({ root: NUL })', () => bullmq({ root: 'r\0x' }), InvalidOptionsError, /root \}\).*without NUL/],
    ['a store name too long', () => sqliteStore(join(dir, 'x'.repeat(300))), StoreAccessError, /the path is too long/],
    [
      'a directory where the lock goes',
      () => {
        mkdirSync(join(dir, 'state.sqlite.lock'));
        return sqliteStore(join(dir, 'state.sqlite'));
      },
      StoreAccessError,
      /cannot lock the store .*a directory is in the way/,
    ],
    [
      // before: "has 2 hard links (other names for the same file)", and advice to find them
      'a directory where the store goes',
      () => {
        mkdirSync(join(dir, 'here.sqlite'));
        return sqliteStore(join(dir, 'here.sqlite'));
      },
      StoreAccessError,
      /cannot open the store .*here\.sqlite: a directory is in the way/,
    ],
  ];

  it.each(cases().map((c) => [c[0], c] as const))('%s', (_, [, make, error, why]) => {
    const err = thrown(make);
    expect(err).toBeInstanceOf(error);
    expect((err as Error).message).toMatch(why);
  });

  it('taskByLabel(null), readText(5), and a description submitted to a closed workflow: each its typed error', async () => {
    // before: raw "Cannot read properties of null", ERR_INVALID_ARG_TYPE "Received undefined", and "no executor is
    // open ... open one with executor(...)", whose advice then met StoreClosedError
    expect(() => taskByLabel(null as never, 'x')).toThrow(InvalidOptionsError);
    expect(() => taskByLabel(null as never, 'x')).toThrow(/state must be a workflow state .*got null/);
    for (const read of [readText, readBytes]) {
      await expect(read(5 as never)).rejects.toThrow(InvalidOptionsError);
      await expect(read({} as never)).rejects.toThrow(/expected a file reference .* or a path, got \{\}/);
    }
    const closed = await openWorkflow({ store: memoryStore() });
    executor(launch(closed, inProcess()));
    await closed.close();
    expect(() => closed.submitDescription({ name: 'x', args: [] })).toThrow(StoreClosedError);
  });

  it('a second audit: a label, counts, a cwd, an encoding or a store name of the wrong kind is a typed error', async () => {
    // before: raw "Cannot read properties of undefined", "Cannot convert a Symbol value to a string", Node's
    // ERR_INVALID_ARG_TYPE; progressLine({}) printed "undefined/undefined done"
    for (const label of [undefined, null, 5, Symbol('x'), {}])
      expect(() => taskByLabel(wf.state, label as never)).toThrow(
        /taskByLabel\(state, label\): label must be a string/,
      );
    const counts = { total: 4, done: 1, failed: 0, cancelled: 0, running: 2 };
    expect(progressLine(counts)).toBe('[scalems] 1/4 done (0 failed, 2 running)');
    for (const bad of [undefined, null, {}, { ...counts, total: 'x' }, { ...counts, running: NaN }])
      expect(() => progressLine(bad as never)).toThrow(InvalidOptionsError);
    expect(() => progressLine({ ...counts, done: -1 })).toThrow(/counts must be .* \(done wrong\)/);
    expect(() => progressLine(counts, Symbol('p') as never)).toThrow(/prefix must be a string, got Symbol\(p\)/);
    for (const call of [defaultStorePath, workflowDir]) {
      expect(() => call('x', 0 as never)).toThrow(/\(name, cwd\?\): cwd must be a directory's path, got 0/);
      expect(() => call('x', null as never)).toThrow(InvalidOptionsError);
      // the message names the call made, not openWorkflow
      expect(() => call(0 as never)).toThrow(new RegExp(`^${call.name}\\(name, cwd\\?\\): 0 is not a workflow name`));
    }
    const file = join(dir, 'text');
    writeFileSync(file, 'abc');
    await expect(readText(file, 'latin1')).resolves.toBe('abc');
    for (const encoding of [0, 'abc', null])
      await expect(readText(file, encoding as never)).rejects.toThrow(/encoding must be one of Node's text encodings/);
    for (const name of [Symbol('x'), 0, ''])
      expect(() => idbStore(name as never)).toThrow(
        /idbStore\(dbName, storeName\?, options\?\): dbName must be a name/,
      );
    expect(() => idbStore('db', null as never)).toThrow(/storeName must be a name, got null/);
  });

  it('submitOn fed a BigInt or NaN, a cancel reason that is no string, a label function giving none', async () => {
    const ex = executor(launch(wf, inProcess()));
    // before: a raw "Do not know how to serialize a BigInt", and NaN shown as "got null"
    for (const [value, shown] of [
      [10n, 'got 10n'],
      [NaN, 'got NaN'],
      [Infinity, 'got Infinity'],
    ] as const)
      await expect(lastValueFrom(of(value as unknown as SubmitInput<unknown>).pipe(submitOn(ex)))).rejects.toThrow(
        expect.objectContaining({ name: 'InvalidTaskDescriptionError', message: expect.stringContaining(shown) }),
      );
    // before: cancel(Symbol()) threw a raw TypeError, and the task ran on and succeeded
    const slow = async (ms: number): Promise<number> =>
      new Promise((resolve, reject) => {
        const signal = currentTask().signal;
        const timer = setTimeout(() => resolve(ms), ms);
        signal.addEventListener('abort', () => (clearTimeout(timer), reject(signal.reason)));
      });
    for (const [reason, message] of [
      [Symbol('why'), 'Symbol(why)'],
      [new Error('because'), 'because'],
      [0, '0'],
    ] as const) {
      const t = ex.submit({ ...call(slow, 60_000), key: String(message) });
      t.cancel(reason as never);
      await expect(t).rejects.toThrow(expect.objectContaining({ name: 'TaskCancelledError', message }));
    }
    // before: a label function that returned undefined left the task without a label, silently
    await expect(
      lastValueFrom(
        of(call(double, 1), call(double, 2)).pipe(
          labelled((_spec, i) => (i === 0 ? 'first' : (undefined as never))),
          submitOn(ex),
          toArray(),
        ),
      ),
    ).rejects.toThrow(/labelled\(fn\): fn must return a non-empty string, got undefined for the spec at index 1/);
  });

  it('a processes() root where no directory can be made: the task fails with ExecutableFailedError saying so', async () => {
    writeFileSync(join(dir, 'a-file'), '');
    const own = await openWorkflow({ store: memoryStore() });
    const rt = launch(own, processes({ root: join(dir, 'a-file', 'runs') }));
    try {
      // before: a raw SpawnFailure (ENOTDIR), recorded as such
      const failed = await Promise.resolve(executor(rt).submit(executable(['true']))).catch((e: unknown) => e);
      expect(failed).toBeInstanceOf(ExecutableFailedError);
      expect((failed as Error).message).toMatch(
        /its working directory .* cannot be made \(ENOTDIR.*\); the program was not started: check that the backend's root/,
      );
    } finally {
      await own.close();
    }
  });
});

test('no source file throws a raw TypeError or RangeError, but the argument parsers of internal programs', () => {
  const src = join(__dirname, '..', 'src');
  const files = (readdirSync(src, { recursive: true }) as string[]).filter((f) => f.endsWith('.ts'));
  // argv of programs scalems itself starts (a Slurm step's task entry, an agent), refused with their usage text
  const allowed = new Set(['cli/task-entry.ts:parseTaskEntryArgs', 'cli/agent-entry.ts']);
  const found: string[] = [];
  for (const f of files) {
    const text = readFileSync(join(src, f), 'utf8');
    const name = relative(src, join(src, f)).split('\\').join('/');
    text.split('\n').forEach((line, i) => {
      if (!/new (TypeError|RangeError)\(/.test(line)) return;
      if (allowed.has(name)) return;
      const inParser = name === 'cli/task-entry.ts' && within(text, i, 'export function parseTaskEntryArgs');
      if (inParser) return;
      found.push(`${name}:${i + 1}: ${line.trim()}`);
    });
  }
  expect(found).toEqual([]);
  expect(new InvalidOptionsError('x')).toBeInstanceOf(ScalemsError);
});

/** Whether line `i` of `text` lies in the top-level function that starts with `start` (up to the next `}` alone). */
function within(text: string, i: number, start: string): boolean {
  const lines = text.split('\n');
  const from = lines.findIndex((l) => l.startsWith(start));
  if (from < 0 || i < from) return false;
  const to = lines.findIndex((l, j) => j > from && l === '}');
  return i < to;
}
