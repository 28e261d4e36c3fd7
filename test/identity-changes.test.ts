// A resumed run after each kind of change gets fresh results, never a stale one served from the store:
// the function's code, an input file's content, an argument mutated after submit, closures met in
// another order. (What makes two submissions the same task: README, "Task identity".)
import { spawnSync } from 'node:child_process';
import {
  chmodSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
  type BigIntStats,
  type StatSyncOptions,
} from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  AmbiguousTaskError,
  DuplicateLabelError,
  ExecutableFailedError,
  InvalidTaskDescriptionError,
  StoreVersionError,
  call,
  defineTask,
  executable,
  executor,
  file,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  outputOf,
  type Executor,
  type TaskRecord,
  type Workflow,
} from 'scalems';
import { processes, sqliteStore } from 'scalems/node';
import Database from 'better-sqlite3';
import { changedInputs, inputsIdentity } from '../src/runtime/executable/digest';

const repo = join(__dirname, '..');
let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'scalems-identity-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

/** Runs test/fixtures/identity/program.ts on `store` with `compute` from `source` (a CommonJS module's text). */
function runProgram(store: string, source: string): { result: number; served: boolean } {
  const module = join(dir, `variant-${Math.random().toString(36).slice(2)}.js`);
  writeFileSync(module, source);
  const out = spawnSync(
    join(repo, 'node_modules', '.bin', 'tsx'),
    [
      '--tsconfig',
      join(repo, 'tsconfig.json'),
      join(repo, 'test', 'fixtures', 'identity', 'program.ts'),
      store,
      module,
    ],
    { encoding: 'utf8', timeout: 60_000 },
  );
  if (out.status !== 0) throw new Error(`program failed (${out.status}): ${out.stderr}`);
  return JSON.parse(out.stdout.trim()) as { result: number; served: boolean };
}

/** The task records a closed store holds, read as `scalems status` reads them (read-only, decoded). */
async function storedRecords(file: string): Promise<TaskRecord[]> {
  const store = sqliteStore(file, { readonly: true });
  try {
    return (await store.entries<TaskRecord>()).filter(([key]) => key.startsWith('task:')).map(([, r]) => r);
  } finally {
    await store.close();
  }
}

async function open(store: string): Promise<{ wf: Workflow; ex: Executor }> {
  const wf = await openWorkflow({ store: sqliteStore(store), name: 'changes' });
  return { wf, ex: executor(launch(wf, inProcess())) };
}

describe('a resumed run after a change gets fresh results', () => {
  jest.setTimeout(60_000);

  it('the code of a defineTask function changed: it runs again (unchanged: served from the store)', () => {
    const store = join(dir, 'state.sqlite');
    const v1 = 'exports.compute = (x) => x + 1;\n';
    expect(runProgram(store, v1)).toEqual({ result: 6, served: false });
    expect(runProgram(store, v1)).toEqual({ result: 6, served: true });
    expect(runProgram(store, 'exports.compute = (x) => x + 2;\n')).toEqual({ result: 7, served: false });
  });

  it('an explicit version is the identity instead: the same version is served, a new one runs', () => {
    const store = join(dir, 'state.sqlite');
    const variant = (body: string, version: string): string =>
      `exports.compute = (x) => ${body};\nexports.options = { version: ${JSON.stringify(version)} };\n`;
    expect(runProgram(store, variant('x + 1', 'v1'))).toEqual({ result: 6, served: false });
    // a change the user declares does not matter (a comment, a faster way to the same result)
    expect(runProgram(store, variant('1 + x', 'v1'))).toEqual({ result: 6, served: true });
    expect(runProgram(store, variant('x + 3', 'v2'))).toEqual({ result: 8, served: false });
  });

  it('a bound function hides its code: defineTask wants a version for it, which then decides what is served', () => {
    const store = join(dir, 'state.sqlite');
    // `impl.bind(null, 10)` reads "function () { [native code] }" whatever `impl` is: a default version would be
    // the same for both of these, and the second run would be served the first's 50
    const bound = (body: string, version?: string): string =>
      `const impl = (k, x) => ${body};\nexports.compute = impl.bind(null, 10);\n` +
      (version === undefined ? '' : `exports.options = { version: ${JSON.stringify(version)} };\n`);
    expect(() => runProgram(store, bound('k * x'))).toThrow(
      /TaskDefinitionError.*does not show its source.*bound function or a Proxy.*\{ version: '1' \}/s,
    );
    expect(() => runProgram(store, bound('k * x + 1000'))).toThrow(/TaskDefinitionError/);
    expect(runProgram(store, bound('k * x', 'v1'))).toEqual({ result: 50, served: false });
    expect(runProgram(store, bound('k * x + 1000', 'v2'))).toEqual({ result: 1050, served: false });
  });

  it('an input file’s content changed: the executable runs again (unchanged: served)', async () => {
    const store = join(dir, 'state.sqlite');
    const input = join(dir, 'deck.txt');
    const catDeck = async (): Promise<{ text: string; served: boolean }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'files' });
      const ex = executor(launch(wf, processes({ root: join(dir, 'runs') })));
      const task = ex.submit(executable(['cat', 'deck.txt'], { inputs: { 'deck.txt': input } }));
      const served = task.state === 'succeeded';
      const result = await task;
      const text = readFileSync(result.stdout.$file, 'utf8');
      await wf.close();
      return { text, served };
    };
    writeFileSync(input, 'temperature 300\n');
    expect(await catDeck()).toEqual({ text: 'temperature 300\n', served: false });
    expect(await catDeck()).toEqual({ text: 'temperature 300\n', served: true });
    writeFileSync(input, 'temperature 310\n'); // same size, same path
    expect(await catDeck()).toEqual({ text: 'temperature 310\n', served: false });
  });

  it('the environment it is given changed (its env requirement, its worker env): it runs again (unchanged: served)', async () => {
    const store = join(dir, 'state.sqlite');
    const printenv = async (
      worker: Record<string, string> | undefined,
      env: Record<string, string> | undefined,
    ): Promise<{ text: string; served: boolean }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'env' });
      const ex = executor(launch(wf, processes({ root: join(dir, 'runs') })), {
        worker: { cores: 1, ...(worker !== undefined && { env: worker }) },
      });
      const spec = executable(['sh', '-c', 'echo "$A $B"']);
      const task = ex.submit(env === undefined ? spec : { ...spec, requirements: { env } });
      const served = task.state === 'succeeded';
      const text = readFileSync((await task).stdout.$file, 'utf8').trim();
      await wf.close();
      return { text, served };
    };
    // before: the env requirement and the worker env were left out of the id: each change below was served 'one'
    expect(await printenv(undefined, { A: 'one' })).toEqual({ text: 'one', served: false });
    expect(await printenv(undefined, { A: 'one' })).toEqual({ text: 'one', served: true });
    expect(await printenv(undefined, { A: 'two' })).toEqual({ text: 'two', served: false });
    expect(await printenv({ B: 'x' }, { A: 'two' })).toEqual({ text: 'two x', served: false });
    expect(await printenv({ B: 'y' }, { A: 'two' })).toEqual({ text: 'two y', served: false });
    expect(await printenv({ B: 'y' }, { A: 'two' })).toEqual({ text: 'two y', served: true });
    // none at all: the id it always had
    expect(await printenv(undefined, undefined)).toEqual({ text: '', served: false });
    const ids = new Set((await storedRecords(store)).map((r) => r.id));
    expect(ids.size).toBe(5);
  });

  it('an input file’s executable bit changed, also inside an input directory: the executable runs again', async () => {
    const store = join(dir, 'state.sqlite');
    const tools = join(dir, 'tools');
    mkdirSync(tools);
    const script = join(tools, 'step.sh');
    writeFileSync(script, '#!/bin/sh\necho stepped\n', { mode: 0o644 });
    const check = async (): Promise<string> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'modes' });
      const rt = launch(wf, processes({ root: join(dir, 'runs') }));
      const ex = executor(rt);
      const t = ex.submit(
        executable(['sh', '-c', 'test -x tools/step.sh && echo runnable || echo plain'], { inputs: { tools } }),
      );
      const out = readFileSync((await t).stdout.$file, 'utf8').trim();
      await rt.shutdown();
      await wf.close();
      return out;
    };
    expect(await check()).toBe('plain');
    chmodSync(script, 0o755);
    // before: the same task, served 'plain'
    expect(await check()).toBe('runnable');
  });

  it('an input file changed between submit and start: the task fails saying so, and never runs on it', async () => {
    const store = join(dir, 'state.sqlite');
    const input = join(dir, 'deck.txt');
    const big = join(dir, 'big.dat'); // over 1 MiB: checked by its stat, as at submit
    const run = async (
      deck: string,
      edit?: { deck?: string; big?: string },
    ): Promise<{ id: string; out?: string; error?: string }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'race' });
      const rt = launch(wf, processes({ root: join(dir, 'runs') }));
      const ex = executor(rt, { worker: { cores: 1 } });
      writeFileSync(input, deck);
      const blocker = ex.submit(executable(['sleep', '0.3'], { pure: false }));
      const task = ex.submit(
        executable(['sh', '-c', 'cat deck.txt; head -c 4 big.dat'], {
          inputs: { 'deck.txt': input, 'big.dat': file(big) },
        }),
      );
      if (edit?.deck !== undefined) writeFileSync(input, edit.deck); // while the task waits for the core
      if (edit?.big !== undefined) writeFileSync(big, edit.big);
      await blocker;
      const outcome = await task.then(
        (r) => ({ id: task.id, out: readFileSync(r.stdout.$file, 'utf8') }),
        (e: unknown) => ({ id: task.id, error: (e as Error).message }),
      );
      await rt.shutdown();
      await wf.close();
      return outcome;
    };
    writeFileSync(big, 'AAAA' + 'x'.repeat(2 << 20));
    // before, this task ran on "BBBB" and was filed under the id of "AAAA", which a resumed run was then served
    const raced = await run('AAAA', { deck: 'BBBB' });
    expect(raced.out).toBeUndefined();
    expect(raced.error).toMatch(
      new RegExp(`input "deck.txt" \\(${input}\\) changed since the task was submitted; .* submit it again`),
    );
    // the deck as it was at submit: the same task, which runs now (a failed task runs again), on that content
    expect(await run('AAAA')).toEqual({ id: raced.id, out: 'AAAAAAAA' });
    // a large input changed in place is seen too
    const bigRaced = await run('DDDD', { big: 'CCCC' + 'x'.repeat(2 << 20) });
    expect(bigRaced.error).toMatch(/input "big.dat" .* changed since the task was submitted/);
  });

  it('the check reads back the names of the inputs, whatever they hold (quotes, ;, =, stdin), and only those', () => {
    const odd = join(dir, 'odd');
    const plain = join(dir, 'plain');
    const deck = join(dir, 'stdin.txt');
    for (const f of [odd, plain, deck]) writeFileSync(f, 'v1');
    const names = { 'a;b="c".txt': odd, plain: plain };
    const spec = executable(['true'], { inputs: names, stdin: file(deck) });
    const atSubmit = inputsIdentity(spec, dir);
    expect(changedInputs(atSubmit, names, deck)).toEqual([]);
    writeFileSync(odd, 'v2');
    writeFileSync(deck, 'v2');
    expect(changedInputs(atSubmit, names, deck)).toEqual(['a;b="c".txt', '<stdin>']);
    // an input the text does not name (an upstream output, resolved at run time) is not looked at
    expect(changedInputs(atSubmit, { ...names, upstream: join(dir, 'none') }, undefined)).toEqual(['a;b="c".txt']);
  });

  it('an input directory with links back into itself: digested at once, and its files still count', () => {
    const data = join(dir, 'data');
    mkdirSync(join(data, 'sub'), { recursive: true });
    writeFileSync(join(data, 'sub', 'f.txt'), 'one');
    // before: every link was followed again inside each other, 2^64 times over (submit never returned)
    symlinkSync('.', join(data, 'self'));
    symlinkSync('..', join(data, 'sub', 'up'));
    symlinkSync(data, join(data, 'sub', 'top'));
    const spec = executable(['true'], { inputs: { data } });
    const first = inputsIdentity(spec, dir);
    expect(inputsIdentity(spec, dir)).toBe(first);
    writeFileSync(join(data, 'sub', 'f.txt'), 'two');
    expect(inputsIdentity(spec, dir)).not.toBe(first);
  });

  describe('a large input, whose digest is kept while its stat stays the same', () => {
    // the module object itself (an `import * as` copy would not reach digest.ts's calls)
    const fs = require('node:fs') as typeof import('node:fs');
    const realStat = fs.statSync;
    /** Every stat of `path` says `frozen`: what the file system shows when it is written again within one tick. */
    const freeze = (path: string, frozen: BigIntStats): void => {
      jest
        .spyOn(fs, 'statSync')
        .mockImplementation(((p: string, o?: StatSyncOptions) =>
          p === path ? frozen : realStat(p, o)) as typeof fs.statSync);
    };
    afterEach(() => jest.restoreAllMocks());

    it('written again just after it changed, within the tick of the stat: it is read again, never served as before', () => {
      const big = join(dir, 'big.dat');
      const spec = executable(['true'], { inputs: { 'big.dat': big } });
      writeFileSync(big, 'A'.repeat(2 << 20));
      freeze(big, realStat(big, { bigint: true }));
      const first = inputsIdentity(spec, dir);
      writeFileSync(big, 'B'.repeat(2 << 20)); // same size, and (frozen) the same times
      // kept, the digest of the A's would have named the B's: a task run on them, filed under the A's id
      expect(inputsIdentity(spec, dir)).not.toBe(first);
      writeFileSync(big, 'A'.repeat(2 << 20));
      expect(inputsIdentity(spec, dir)).toBe(first);
    });

    it('unchanged for longer than a tick, it is read once, then known by its stat', () => {
      const big = join(dir, 'old.dat');
      const spec = executable(['true'], { inputs: { 'old.dat': big } });
      writeFileSync(big, 'C'.repeat(2 << 20));
      const stat = realStat(big, { bigint: true });
      const hourAgo = stat.ctimeNs - 3_600_000_000_000n;
      freeze(
        big,
        Object.assign(Object.create(Object.getPrototypeOf(stat) as object) as BigIntStats, stat, {
          ctimeNs: hourAgo,
          mtimeNs: hourAgo,
        }),
      );
      const opened = jest.spyOn(fs, 'openSync');
      const reads = (): number => opened.mock.calls.filter(([p]) => p === big).length;
      const first = inputsIdentity(spec, dir);
      expect(reads()).toBe(1);
      expect(inputsIdentity(spec, dir)).toBe(first);
      expect(reads()).toBe(1);
    });
  });

  it('a succeeded executable whose files are gone runs again instead of being served', async () => {
    const store = join(dir, 'state.sqlite');
    const run = async (): Promise<{ attempts: number; text: string; outputs: string[] }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'gone' });
      const rt = launch(wf, processes({ root: join(dir, 'runs') }));
      const ex = executor(rt);
      const made = ex.submit(executable(['sh', '-c', 'echo made > out.txt'], { outputs: ['out.txt'] }));
      const result = await made;
      const text = readFileSync(result.outputs['out.txt']!.$file, 'utf8');
      const attempts = made.record!.attempts;
      await rt.shutdown();
      await wf.close();
      return { attempts, text, outputs: Object.keys(result.outputs) };
    };
    const first = await run();
    expect(first).toEqual({ attempts: 1, text: 'made\n', outputs: ['out.txt'] });
    expect(await run()).toEqual(first); // served
    const artifacts = (await storedRecords(store)).find((r) => r.artifacts !== undefined)!.artifacts!;
    rmSync(artifacts['out.txt']!);
    // before: served, with a result whose out.txt did not exist (and a downstream failed staging it, retry or not)
    expect(await run()).toEqual({ attempts: 2, text: 'made\n', outputs: ['out.txt'] });
  });

  it('a task retried after the upstream output it takes is gone says which task made it, and what to do', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const rt = launch(wf, processes({ root: join(dir, 'runs') }));
    const ex = executor(rt);
    const made = ex.submit(executable(['sh', '-c', 'echo made > out.txt'], { outputs: ['out.txt'] }));
    const uses = ex.submit(
      executable(['sh', '-c', 'cat in.txt; exit 1'], {
        inputs: { 'in.txt': outputOf(made, 'out.txt') },
        label: 'uses',
      }),
    );
    await expect(uses).rejects.toThrow(ExecutableFailedError);
    rmSync((await made).outputs['out.txt']!.$file);
    uses.retry();
    await expect(uses).rejects.toThrow(
      new RegExp(
        `^task uses \\(${uses.id}\\): input "in.txt": .* cannot be read \\(ENOENT\\): it is an output of task ` +
          `${made.id}, gone from disk since it ran; submit that task again`,
      ),
    );
    await rt.shutdown();
    await wf.close();
  });

  it('an object argument with its keys in another order runs again; an executable’s inputs in another order do not', async () => {
    const store = join(dir, 'state.sqlite');
    const header = async (row: Record<string, number>): Promise<string> => Object.keys(row).join(',');
    const first = await open(store);
    expect(await first.ex.submit(header, { a: 1, b: 2 })).toBe('a,b');
    await first.wf.close();
    // the function reads its keys in order: it was served 'a,b' for { b, a }
    const second = await open(store);
    const reordered = second.ex.submit(header, { b: 2, a: 1 });
    expect(reordered.state).not.toBe('succeeded');
    expect(await reordered).toBe('b,a');
    await second.wf.close();
    // what reaches a program has no order: files are found by name
    writeFileSync(join(dir, 'a.txt'), 'A\n');
    writeFileSync(join(dir, 'b.txt'), 'B\n');
    const wf2 = await openWorkflow({ store: sqliteStore(store), name: 'files' });
    const ex2 = executor(launch(wf2, processes({ root: join(dir, 'runs') })));
    const cat = (inputs: Record<string, string>) => ex2.submit(executable(['cat', 'a.txt', 'b.txt'], { inputs }));
    const ab = cat({ 'a.txt': join(dir, 'a.txt'), 'b.txt': join(dir, 'b.txt') });
    expect(cat({ 'b.txt': join(dir, 'b.txt'), 'a.txt': join(dir, 'a.txt') })).toBe(ab);
    expect(readFileSync((await ab).stdout.$file, 'utf8')).toBe('A\nB\n');
    await wf2.close();
  });

  it('a file outside the workflow named by an upstream task’s result changed: the executable runs again', async () => {
    // its identity has the upstream's id, not the file's content: an audit's catalogue lookup returned the path of a
    // file it then edited, and the resumed run was served the old output. Its record now keeps the content it read.
    const store = join(dir, 'state.sqlite');
    const data = join(dir, 'data.txt');
    const locate = async (name: string): Promise<string> => join(dir, name);
    const catLocated = async (): Promise<{ text: string; served: boolean; read: unknown }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'located' });
      const fx = executor(launch(wf, inProcess()), { name: 'fx' });
      const px = executor(launch(wf, processes({ root: join(dir, 'runs') })), { name: 'px' });
      const task = px.submit(executable(['cat', 'in'], { inputs: { in: fx.submit(locate, 'data.txt') } }));
      const served = task.state === 'succeeded';
      const text = readFileSync((await task).stdout.$file, 'utf8');
      const read = task.record?.read;
      await wf.close();
      return { text, served, read };
    };
    writeFileSync(data, 'old\n');
    const first = await catLocated();
    expect(first).toMatchObject({ text: 'old\n', served: false });
    expect(Object.keys(first.read as object)).toEqual([data]);
    expect(await catLocated()).toMatchObject({ text: 'old\n', served: true });
    writeFileSync(data, 'new\n'); // same size, same path
    expect(await catLocated()).toMatchObject({ text: 'new\n', served: false });
    expect(await catLocated()).toMatchObject({ text: 'new\n', served: true });
    // an upstream's own output (in the workflow's directory) still counts by the task that made it: nothing kept
    const wf = await openWorkflow({ store: memoryStore(), name: 'own' });
    const px = executor(launch(wf, processes({ root: join(dir, 'runs') })));
    const made = px.submit(executable(['sh', '-c', 'echo made > out.txt'], { outputs: ['out.txt'] }));
    const uses = px.submit(executable(['cat', 'x'], { inputs: { x: outputOf(made, 'out.txt') } }));
    await uses;
    expect(uses.record?.read).toBeUndefined();
    await wf.close();
  });

  it('a FIFO as stdin: what the program read cannot be known, so a resumed run runs it again', async () => {
    // its identity holds the FIFO's path and kind, not what was written into it: the second run was served the first
    // run's output
    const store = join(dir, 'state.sqlite');
    const fifo = join(dir, 'fifo');
    expect(spawnSync('mkfifo', [fifo]).status).toBe(0);
    const catFifo = async (word: string): Promise<{ text: string; served: boolean }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'fifo' });
      const px = executor(launch(wf, processes({ root: join(dir, 'runs') })));
      const task = px.submit(executable(['cat'], { stdin: file(fifo) }));
      const served = task.state === 'succeeded';
      // the writer's open waits for the program's reader (sh opens the FIFO, then execs cat)
      if (!served) await writeFile(fifo, `${word}\n`);
      const text = readFileSync((await task).stdout.$file, 'utf8');
      await wf.close();
      return { text, served };
    };
    expect(await catFifo('first')).toEqual({ text: 'first\n', served: false });
    expect(await catFifo('second')).toEqual({ text: 'second\n', served: false });
  });

  it('a task that runs again under its id (a file it read changed): the tasks that take its result run again too', async () => {
    // they kept their ids (their input's id did not change), and were served what they made of its old output
    const store = join(dir, 'state.sqlite');
    const data = join(dir, 'data.txt');
    const locate = async (name: string): Promise<string> => join(dir, name);
    const shout = async (r: { stdout: { $file: string } }): Promise<string> =>
      readFileSync(r.stdout.$file, 'utf8').toUpperCase();
    const chain = async (): Promise<{ texts: string[]; served: boolean[] }> => {
      const wf = await openWorkflow({ store: sqliteStore(store), name: 'chain' });
      const fx = executor(launch(wf, inProcess()), { name: 'fx' });
      const px = executor(launch(wf, processes({ root: join(dir, 'runs') })), { name: 'px' });
      const e = px.submit(executable(['cat', 'in'], { inputs: { in: fx.submit(locate, 'data.txt') } }));
      const f = fx.submit(shout, e);
      const g = px.submit(executable(['sh', '-c', 'cat x; echo via-g'], { inputs: { x: outputOf(e, 'stdout') } }));
      const served = [e, f, g].map((t) => t.state === 'succeeded');
      const texts = [
        readFileSync((await e).stdout.$file, 'utf8'),
        await f,
        readFileSync((await g).stdout.$file, 'utf8'),
      ];
      await wf.close();
      return { texts, served };
    };
    writeFileSync(data, 'old\n');
    expect(await chain()).toEqual({ texts: ['old\n', 'OLD\n', 'old\nvia-g\n'], served: [false, false, false] });
    expect(await chain()).toEqual({ texts: ['old\n', 'OLD\n', 'old\nvia-g\n'], served: [true, true, true] });
    writeFileSync(data, 'new\n');
    expect(await chain()).toEqual({ texts: ['new\n', 'NEW\n', 'new\nvia-g\n'], served: [false, false, false] });
    expect(await chain()).toEqual({ texts: ['new\n', 'NEW\n', 'new\nvia-g\n'], served: [true, true, true] });
  });

  it('an argument mutated after submit: the task runs, and is stored, with the value it was submitted with', async () => {
    const store = join(dir, 'state.sqlite');
    const sum = async (o: { xs: number[] }): Promise<number> => o.xs.reduce((a, b) => a + b, 0);
    const first = await open(store);
    const params = { xs: [1, 2, 3] };
    const task = first.ex.submit(sum, params);
    params.xs.push(100); // while the task is queued
    expect(await task).toBe(6);
    expect(task.record?.args).toEqual([{ xs: [1, 2, 3] }]);
    await first.wf.close();
    // the rerun submits the mutated value: another task, computed afresh
    const second = await open(store);
    const again = second.ex.submit(sum, params);
    expect(again.id).not.toBe(task.id);
    expect(await again).toBe(106);
    expect(second.ex.submit(sum, { xs: [1, 2, 3] }).state).toBe('succeeded');
    await second.wf.close();
  });

  it('a labelled member whose input changed takes its label from the task an earlier run left', async () => {
    const store = join(dir, 'state.sqlite');
    const simulate = async (deck: string): Promise<string> => `result of ${deck}`;
    const first = await open(store);
    const a = first.ex.submit({ ...call(simulate, 'deck A'), label: 'sim-1' });
    const d = first.ex.submit({ ...call(simulate, 'deck D'), label: 'sim-2' });
    expect(await Promise.all([a, d])).toEqual(['result of deck A', 'result of deck D']);
    await first.wf.close();
    // the decks changed: new tasks, under the labels of the old ones
    const second = await open(store);
    const b = second.ex.submit({ ...call(simulate, 'deck B'), label: 'sim-1' });
    expect(b.id).not.toBe(a.id);
    expect(await b).toBe('result of deck B');
    const e = second.ex.submit(simulate, 'deck E');
    e.label = 'sim-2'; // set on the handle, it moves the same way
    await e;
    expect([second.wf.labelled('sim-1'), second.wf.labelled('sim-2')]).toEqual([b.id, e.id]);
    expect([second.wf.record(a.id)?.label, second.wf.record(d.id)?.label]).toEqual([undefined, undefined]);
    // within one run a label is still one task's
    expect(() => second.ex.submit({ ...call(simulate, 'deck C'), label: 'sim-1' })).toThrow(DuplicateLabelError);
    await second.wf.close();
    // and so the store keeps it
    const third = await open(store);
    expect([third.wf.labelled('sim-1'), third.wf.labelled('sim-2')]).toEqual([b.id, e.id]);
    expect(third.wf.record(a.id)).toMatchObject({ state: 'succeeded' });
    expect(third.wf.record(a.id)?.label).toBeUndefined();
    await third.wf.close();
  });

  it('a label given to a task served from the store is its own: another task of the run cannot take it', async () => {
    const store = join(dir, 'state.sqlite');
    const simulate = async (deck: string): Promise<string> => `result of ${deck}`;
    const first = await open(store);
    const plain = first.ex.submit(simulate, 'deck A'); // unlabelled in the first run
    const named = first.ex.submit({ ...call(simulate, 'deck B'), label: 'sim-b' });
    await Promise.all([plain, named]);
    await first.wf.close();
    // the second run labels the first run's tasks: served, and labelled
    const second = await open(store);
    const served = second.ex.submit({ ...call(simulate, 'deck A'), label: 'sim-a' });
    expect(served.id).toBe(plain.id);
    expect(served.state).toBe('succeeded');
    expect(served.label).toBe('sim-a');
    expect(second.wf.labelled('sim-a')).toBe(served.id);
    expect(() => second.ex.submit({ ...call(simulate, 'deck C'), label: 'sim-a' })).toThrow(DuplicateLabelError);
    // another label for a task the first run labelled is refused, as within a run; the same one is the same task
    expect(() => second.ex.submit({ ...call(simulate, 'deck B'), label: 'other' })).toThrow(
      /already labelled "sim-b"; a label can be set once/,
    );
    expect(second.ex.submit({ ...call(simulate, 'deck B'), label: 'sim-b' }).id).toBe(named.id);
    await second.wf.close();
    const third = await open(store);
    expect(third.wf.labelled('sim-a')).toBe(plain.id);
    await third.wf.close();
  });

  it('closures with the same source and arguments are refused on a persistent store, whatever the order', async () => {
    const store = join(dir, 'state.sqlite');
    const make = (a: number) => async (x: number) => a * x;
    for (const order of [
      [10, 20],
      [20, 10],
    ]) {
      const { wf, ex } = await open(store);
      const first = ex.submit(make(order[0]!), 1);
      expect(() => ex.submit(make(order[1]!), 1)).toThrow(AmbiguousTaskError);
      expect(() => ex.submit(make(order[1]!), 1)).toThrow(
        /defineTask\(name, fn\).*or give each submission its own key/,
      );
      await first;
      // a key tells them apart, in either order
      const keyed = ex.submit({ ...call(make(order[1]!), 1), key: `a=${order[1]}` });
      expect(await keyed).toBe(order[1]);
      await wf.close();
    }
  });

  it('the same closure submitted again, and closures of the same source with other arguments, are fine', async () => {
    const { wf, ex } = await open(join(dir, 'state.sqlite'));
    const double = async (x: number): Promise<number> => 2 * x;
    expect(ex.submit(double, 1)).toBe(ex.submit(double, 1));
    const tasks = [1, 2, 3].map((i) => ex.submit(async (x: number) => x + 1, i));
    expect(await Promise.all(tasks)).toEqual([2, 3, 4]);
    await wf.close();
  });

  it('a bound function or a Proxy as a closure is refused on a persistent store: its source says nothing', async () => {
    const { wf, ex } = await open(join(dir, 'state.sqlite'));
    const scale = async (k: number, x: number): Promise<number> => k * x;
    const hidden: Array<(x: number) => Promise<number>> = [
      scale.bind(null, 10),
      new Proxy(async (x: number) => 10 * x, {}),
    ];
    for (const fn of hidden) {
      expect(() => ex.submit(fn, 5)).toThrow(InvalidTaskDescriptionError);
      expect(() => ex.submit(fn, 5)).toThrow(
        /does not show its source.*bound function or a Proxy.*defineTask\(name, fn, \{ version \}\)/,
      );
    }
    // a built-in shows its name, and its code is the engine's; a function defined with a version is fine
    expect(await ex.submit(Math.max, 1, 2)).toBe(2);
    const tenfold = defineTask('identity-changes.tenfold', scale.bind(null, 10), { version: '1' });
    expect(await ex.submit(tenfold, 5)).toBe(50);
    await wf.close();
    // on a memory store, whose identities never leave the process, they run
    const mem = await openWorkflow({ store: memoryStore() });
    const mx = executor(launch(mem, inProcess()));
    expect(await Promise.all(hidden.map((fn) => mx.submit(fn, 5)))).toEqual([50, 50]);
    await mem.close();
  });

  it('a memory store tells such closures apart (identity never leaves the process)', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const ex = executor(launch(wf, inProcess()));
    const make = (a: number) => async (x: number) => a * x;
    expect(await Promise.all([ex.submit(make(10), 1), ex.submit(make(20), 1)])).toEqual([10, 20]);
  });
});

describe('results, as every consumer and a resumed run see them', () => {
  it('a consumer cannot change a result: not a task taking it as input, not a caller; the store keeps the original', async () => {
    const store = join(dir, 'state.sqlite');
    type Up = { v: string; list: number[] };
    const up = async (): Promise<Up> => ({ v: 'original', list: [1, 2] });
    const changes = async (x: Up): Promise<string> => {
      x.list.length = 0;
      return 'changed';
    };
    const reads = async (x: Up): Promise<string> => `${x.v} ${x.list.join(',')}`;
    for (const run of ['first', 'resumed']) {
      const { wf, ex } = await open(store);
      const u = ex.submit(up);
      // before, this succeeded and emptied the list for every other consumer, and for the store
      await expect(ex.submit(changes, u)).rejects.toThrow(/read only|not extensible|Cannot assign/);
      expect(await ex.submit(reads, u)).toBe('original 1,2');
      const r = await u;
      expect(() => ((r as { v: string }).v = 'edited')).toThrow(TypeError);
      expect(await u).toEqual({ v: 'original', list: [1, 2] });
      expect(u.record?.state).toBe('succeeded');
      expect(run === 'resumed' ? u.record?.attempts : 1).toBe(1); // the resumed run is served
      await wf.close();
    }
    const results = (await storedRecords(store)).map((r) => r.result);
    expect(results.filter((v) => JSON.stringify(v) === '{"v":"original","list":[1,2]}')).toHaveLength(1);
  });

  it('the function keeps its own object: the result is a copy as it was when the task ended', async () => {
    const { wf, ex } = await open(join(dir, 'state.sqlite'));
    const kept = { n: 0 };
    const count = async (): Promise<{ n: number }> => {
      kept.n++;
      return kept;
    };
    const a = await ex.submit({ ...call(count), key: 'a' });
    const b = await ex.submit({ ...call(count), key: 'b' });
    expect([a, b, kept]).toEqual([{ n: 1 }, { n: 2 }, { n: 2 }]);
    expect(Object.isFrozen(kept)).toBe(false);
    await wf.close();
  });

  it('-0, properties that are undefined, null prototypes: the first run gets what a resumed run is served', async () => {
    const store = join(dir, 'state.sqlite');
    const make = async (): Promise<{ a?: number; b: number; c: object }> => ({
      a: undefined,
      b: -0,
      c: Object.assign(Object.create(null) as object, { x: 1 }),
    });
    const seen: string[] = [];
    for (const run of ['first', 'resumed']) {
      const { wf, ex } = await open(store);
      const t = ex.submit(make);
      const r = await t;
      const proto = Object.getPrototypeOf(r.c) === null ? 'none' : 'Object';
      seen.push(`${run}: ${'a' in r ? 'has a' : 'no a'}, b is ${Object.is(r.b, -0) ? '-0' : String(r.b)}, c ${proto}`);
      await wf.close();
    }
    // before, the first run got { a: undefined, b: -0, c: (no prototype) } and the resumed one { b: 0, c: {} }
    expect(seen).toEqual(['first: no a, b is 0, c Object', 'resumed: no a, b is 0, c Object']);
  });

  it('on a memory store, a cycle and a shared part stay so among the copies, and other objects stay themselves', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const ex = executor(launch(wf, inProcess()));
    class Box {
      constructor(public n: number) {}
    }
    const box = new Box(1);
    const shared = { s: 1 };
    const make = async (): Promise<{ self?: unknown; a: object; b: object; box: Box }> => {
      const o: { self?: unknown; a: object; b: object; box: Box } = { a: shared, b: shared, box };
      o.self = o;
      return o;
    };
    const r = await ex.submit(make);
    expect(r.self).toBe(r);
    expect(r.a).toBe(r.b);
    expect(r.a).not.toBe(shared);
    expect(Object.isFrozen(r.a)).toBe(true);
    expect(r.box).toBe(box);
    expect(Object.isFrozen(box)).toBe(false);
    await wf.close();
  });
});

describe('stores written before identities had versions', () => {
  it('a version 1 SQLite store is refused with StoreVersionError saying why, and left untouched', async () => {
    const file = join(dir, 'old.sqlite');
    const store = sqliteStore(file);
    await store.set('task:x', { id: 'x', state: 'succeeded' });
    await store.close();
    const raw = new Database(file);
    raw.pragma('user_version = 1');
    raw.close();
    const error = (() => {
      try {
        sqliteStore(file);
      } catch (e) {
        return e;
      }
      return undefined;
    })();
    expect(error).toBeInstanceOf(StoreVersionError);
    expect((error as Error).message).toMatch(/older scalems store format \(version 1\).*not migrated.*another path/);
  });
});
