// The threads() example as a user runs it (npx tsx), and the compiled library (dist/, built by
// `npm run build`, which `npm test` runs first) under plain node with a .js and a .ts task module.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');

describe('threads() as users run it', () => {
  it('npx tsx examples/threads.ts: an ensemble on threads and a ranks: 4 reduction', async () => {
    const { stdout } = await run('npx', ['tsx', 'examples/threads.ts', '4'], { cwd: ROOT, timeout: 60_000 });
    expect(stdout).toContain('executor: 4 cores');
    expect(stdout).toMatch(/ensemble: 4 members on [1-4] threads/);
    expect(stdout).toContain('sum of squares 1..100000 on 4 ranks: 333338333350000 (expected 333338333350000: ok)');
  });

  it('the compiled library under plain node loads .js, .mjs (with top-level await) and .ts task modules in its workers', async () => {
    const worker = join(ROOT, 'dist', 'src', 'runtime', 'threads', 'worker.js');
    if (!existsSync(worker)) throw new Error(`${worker} is missing: run npm run build first (npm test does)`);
    const driver = `
      const { join } = require('node:path');
      const dist = (p) => require(join(${JSON.stringify(ROOT)}, 'dist', 'src', p));
      const { openWorkflow, launch, executor, memoryStore } = dist('node/auto.js');
      const { threads } = dist('node/index.js');
      const fixtures = join(${JSON.stringify(ROOT)}, 'test', 'fixtures', 'threads');
      const js = require(join(fixtures, 'dist-tasks.js'));
      (async () => {
        const wf = await openWorkflow({ store: memoryStore() });
        const modules = ['dist-tasks.js', 'dist-tasks.mjs', 'dist-tasks-ts.ts'].map((m) => join(fixtures, m));
        const rt = launch(wf, threads({ modules, maxThreads: 2 }));
        const ex = executor(rt);
        const tripled = await ex.submit(js.triple, 5);
        // plain node cannot load the .ts (nor require the .mjs) module here: submitted by name, found by name in the
        // worker
        const doubled = await ex.submit({ kind: 'function', name: 'dist.double', args: [21], label: 'by-name' });
        const squared = await ex.submit({ kind: 'function', name: 'dist.square', args: [9] });
        console.log(JSON.stringify({ tripled, doubled, squared }));
        await rt.shutdown();
      })().catch((err) => { console.error(err); process.exit(1); });`;
    const { stdout } = await run(process.execPath, ['-e', driver], { cwd: ROOT, timeout: 60_000 });
    expect(JSON.parse(stdout)).toEqual({ tripled: 15, doubled: { value: 42, label: 'by-name' }, squared: 81 });
  });
});
