// A remote side runs a task only with the version of the function the task was submitted with: another
// version's result would be stored under this one's identity. (threads() here; Slurm job steps and
// `scalems worker` share the runner that checks it, and get the version the same way: see their tests.)
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FunctionVersionError, executor, launch, memoryStore, openWorkflow, type DefinedTask } from 'scalems';
import { threads } from 'scalems/node';
import { echo } from './fixtures/threads/versioned';
import { editableTaskModule } from './support/work';

const MODULE = join(__dirname, 'fixtures', 'threads', 'versioned.ts');

describe('function versions on a remote side', () => {
  jest.setTimeout(60_000);

  it('the same version runs; another is refused with FunctionVersionError naming both and what to do', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const same = launch(wf, threads({ modules: [MODULE], maxThreads: 1 }));
    expect(await executor(same).submit(echo, 1)).toBe(1);
    await same.shutdown();
    // the threads' environment gives them another version of versioned.echo than this process has
    const other = launch(wf, threads({ modules: [MODULE], maxThreads: 1 }));
    const ex = executor(other, { worker: { env: { SCALEMS_TEST_ECHO_VERSION: 'two' } } });
    const task = ex.submit(echo, 2);
    await expect(task).rejects.toThrow(FunctionVersionError);
    await expect(task).rejects.toThrow(/submitted with version "one".*has version "two".*so it was not run/);
    expect(task.record?.error?.code).toBe('FUNCTION_VERSION');
    await other.shutdown();
  });

  it('a module edited after this program loaded it, before the threads load it: not run as the code it has', async () => {
    // (the threads start with the first task, maybe hours into a run; the task's identity is its code as loaded here)
    const dir = mkdtempSync(join(tmpdir(), 'scalems-edited-'));
    try {
      const file = join(dir, 'edited.js');
      const module = editableTaskModule(file, 'edited.prep');
      module.write('v1');
      const { prep } = require(file) as { prep: DefinedTask<(n: number) => { code: string; n: number }> };
      const wf = await openWorkflow({ store: memoryStore() });
      const edited = launch(wf, threads({ modules: [file], maxThreads: 1 }));
      module.write('v2');
      const task = executor(edited).submit(prep, 7);
      await expect(task).rejects.toThrow(FunctionVersionError);
      await expect(task).rejects.toThrow(/edited\.js changed after the program that submits its tasks loaded it/);
      await edited.shutdown();
      // as it was: the threads load it
      module.write('v1');
      const same = launch(wf, threads({ modules: [file], maxThreads: 1 }));
      expect(await executor(same).submit(prep, 8)).toEqual({ code: 'v1', n: 8 });
      await same.shutdown();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a module this program loaded, then edited before threads() was made: not run as the code it has', async () => {
    // the threads' digest was the file as threads() read it, the edited one: they ran the new code under the
    // identity of the old, and a later run of the old code was served the new code's result
    const dir = mkdtempSync(join(tmpdir(), 'scalems-edited-'));
    try {
      const file = join(dir, 'edited-before.js');
      const module = editableTaskModule(file, 'edited.before');
      module.write('v1');
      const { prep } = require(file) as { prep: DefinedTask<(n: number) => { code: string; n: number }> };
      module.write('v2');
      const wf = await openWorkflow({ store: memoryStore() });
      const edited = launch(wf, threads({ modules: [file], maxThreads: 1 }));
      const task = executor(edited).submit(prep, 7);
      await expect(task).rejects.toThrow(FunctionVersionError);
      await expect(task).rejects.toThrow(/edited-before\.js changed after the program that submits its tasks loaded/);
      await edited.shutdown();
      module.write('v1'); // as this program has it: run
      const same = launch(wf, threads({ modules: [file], maxThreads: 1 }));
      expect(await executor(same).submit(prep, 8)).toEqual({ code: 'v1', n: 8 });
      await same.shutdown();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('an ES module imported after threads() was made, edited before the threads load it: not run', () => {
    // the digests of the files that define tasks were taken when threads() was made: an ES module the program imports
    // after that (one with top-level await, which threads() cannot load to probe) defined its tasks later, and the
    // threads ran its edited code under the identity of the code this program has (the built package, as users run)
    if (!existsSync(join(__dirname, '..', 'dist', 'src', 'index.js'))) throw new Error('run npm run build first');
    const dir = mkdtempSync(join(tmpdir(), 'scalems-edited-esm-'));
    try {
      mkdirSync(join(dir, 'node_modules'));
      symlinkSync(join(__dirname, '..'), join(dir, 'node_modules', 'scalems'));
      const impl = join(dir, 'impl.mjs');
      writeFileSync(
        impl,
        "import { defineTask } from 'scalems';\nexport const f = defineTask('esm.f', (n) => n * 10);\n",
      );
      writeFileSync(join(dir, 'index.mjs'), "await Promise.resolve();\nexport { f } from './impl.mjs';\n");
      writeFileSync(
        join(dir, 'main.mjs'),
        [
          "import { readFileSync, writeFileSync } from 'node:fs';",
          "import { executor, launch, memoryStore, openWorkflow } from 'scalems';",
          "import { threads } from 'scalems/node';",
          'const wf = await openWorkflow({ store: memoryStore() });',
          "const rt = launch(wf, threads({ modules: ['./index.mjs'], maxThreads: 1 }));",
          "const { f } = await import('./index.mjs');",
          "writeFileSync('./impl.mjs', readFileSync('./impl.mjs', 'utf8').replace('* 10', '* 1000'));",
          'const out = await executor(rt).submit(f, 1).then(String, (e) => e.name);',
          'await rt.shutdown();',
          'console.log(out);',
        ].join('\n'),
      );
      const run = spawnSync(process.execPath, ['main.mjs'], { cwd: dir, encoding: 'utf8', timeout: 60_000 });
      expect({ out: run.stdout.trim(), err: run.stderr }).toEqual({ out: 'FunctionVersionError', err: '' });
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('a module that defines tasks reached through another, edited before the threads load it: not run either', async () => {
    // threads({ modules: [index] }) where index re-exports impl's tasks: only index's digest was compared, so the
    // threads ran impl's new code under the identity of the old, and a later run was served that result
    const dir = mkdtempSync(join(tmpdir(), 'scalems-edited-'));
    try {
      const index = join(dir, 'index.js');
      writeFileSync(index, "module.exports = require('./impl.js');\n");
      const impl = join(dir, 'impl.js');
      const module = editableTaskModule(impl, 'edited.reexported');
      module.write('v1');
      const { prep } = require(index) as { prep: DefinedTask<(n: number) => { code: string; n: number }> };
      const wf = await openWorkflow({ store: memoryStore() });
      for (const when of ['before threads() is made', 'after']) {
        if (when !== 'after') module.write('v2');
        const edited = launch(wf, threads({ modules: [index], maxThreads: 1 }));
        module.write('v2');
        const task = executor(edited).submit(prep, 7);
        await expect(task).rejects.toThrow(FunctionVersionError);
        await expect(task).rejects.toThrow(/impl\.js, which defines tasks, changed after the program that submits/);
        await edited.shutdown();
        module.write('v1');
      }
      const same = launch(wf, threads({ modules: [index], maxThreads: 1 }));
      expect(await executor(same).submit(prep, 8)).toEqual({ code: 'v1', n: 8 });
      await same.shutdown();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
