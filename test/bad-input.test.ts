// Mistakes a user makes with the public API, each refused where it is made with a typed error saying what was wrong
// (README, "Errors: what bad input gets"): before, each was accepted (and ignored, or failed later, elsewhere) or
// surfaced as a raw TypeError / Error from inside the library.
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  InvalidOptionsError,
  InvalidRequirementsError,
  InvalidTaskDescriptionError,
  StoreAccessError,
  TaskDefinitionError,
  call,
  defineTask,
  executable,
  executor,
  inProcess,
  labelled,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  withExecutor,
  withWorkflow,
  type Executor,
  type Workflow,
} from 'scalems';
import { sqliteStore } from 'scalems/node';

let wf: Workflow;
let ex: Executor;
let dir: string;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  ex = executor(launch(wf, inProcess()));
  dir = mkdtempSync(join(tmpdir(), 'scalems-bad-input-'));
});
afterEach(async () => {
  await wf.close();
  rmSync(dir, { recursive: true, force: true });
});

class Model {
  constructor(readonly x: number) {}
}
const one = async (): Promise<number> => 1;

type Case = [what: string, make: () => unknown, error: new (...a: never[]) => Error, why: RegExp];

const cases = (): Case[] => [
  // the name is how messages and submitDescription name an executor
  ['executor({ nme })', () => executor(ex.runtime, { nme: 'x' } as never), InvalidOptionsError, /did you mean "name"/],
  ['executor({ name: 5 })', () => executor(ex.runtime, { name: 5 as never }), InvalidOptionsError, /name.*got 5/],
  ['executor({ name: "a\\0b" })', () => executor(ex.runtime, { name: 'a\0b' }), InvalidOptionsError, /printable/],
  ['withExecutor(null, fn)', () => withExecutor(null as never, one), InvalidOptionsError, /must be an Executor/],
  ['withExecutor(ex, 5)', () => withExecutor(ex, 5 as never), InvalidOptionsError, /fn must be a function, got 5/],
  ['withWorkflow({}, fn)', () => withWorkflow({} as never, one), InvalidOptionsError, /must be a Workflow/],
  [
    'call(class)',
    () => (call as (fn: unknown) => unknown)(Model),
    InvalidTaskDescriptionError,
    /fn is a class \(Model\).*new TheClass/,
  ],
  [
    'submit(class)',
    () => (ex.submit as (fn: unknown) => unknown).call(ex, Model),
    InvalidTaskDescriptionError,
    /is a class/,
  ],
  ['defineTask(name, class)', () => defineTask('bad.k', Model as never), TaskDefinitionError, /is a class/],
  [
    'defineTask({ verison })',
    () => defineTask('bad.v', one, { verison: '2' } as never),
    TaskDefinitionError,
    /"verison"/,
  ],
  ['defineTask(name, fn, "2")', () => defineTask('bad.s', one, '2' as never), TaskDefinitionError, /got string/],
  ['defineTask(name, fn, null)', () => defineTask('bad.n', one, null as never), TaskDefinitionError, /got null/],
  ['defineTask("a\\nb", fn)', () => defineTask('a\nb', one), TaskDefinitionError, /printable characters, got "a\\nb"/],
  ['labelled("")', () => labelled(''), InvalidTaskDescriptionError, /non-empty string.*got an empty string/],
  ['executable({ key: "" })', () => executable(['true'], { key: '' }), InvalidTaskDescriptionError, /options\.key/],
  [
    'submitOn(ex, 5)',
    () => submitOn(ex, 5 as never),
    InvalidOptionsError,
    /submitOn\(executor, fn\?, options\?\): expected a function or an options object .* got 5/,
  ],
  ['shutdown({ wiat })', () => ex.shutdown({ wiat: true } as never), InvalidOptionsError, /did you mean "wait"/],
  // a union (a count or a policy) said what both of its members expected, one of them by an internal type name
  [
    'retries: -1',
    () => ex.submit({ ...call(one), requirements: { retries: -1 } }),
    InvalidRequirementsError,
    /^Invalid task requirements:\n {2}task requirements\.retries: expected a non-negative integer or \{ max, backoff, factor \}, got -1$/,
  ],
  [
    'retries: { backoff: -1 }',
    () => ex.submit({ ...call(one), requirements: { retries: { max: 2, backoff: -1 } } }),
    InvalidRequirementsError,
    /^Invalid task requirements:\n {2}task requirements\.retries\.backoff: expected a non-negative number[^\n]*$/,
  ],
  ['sqliteStore(NUL)', () => sqliteStore(join(dir, 'a\0b')), InvalidOptionsError, /without NUL/],
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
];

describe('bad input', () => {
  it.each(cases().map((c) => [c[0], c] as const))('%s', (_, [, make, error, why]) => {
    let thrown: unknown;
    try {
      make();
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(error);
    expect((thrown as Error).message).toMatch(why);
  });
});
