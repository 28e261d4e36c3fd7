// The `scalems` command and the progress example as real subprocesses, on the store of a real run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { executor, inProcess, launch, openWorkflow } from 'scalems';
import { sqliteStore } from 'scalems/node';

const repo = path.resolve(__dirname, '..');
const tsx = path.join(repo, 'node_modules', '.bin', 'tsx');

/** Runs a TypeScript file of the repository with tsx in `cwd`; the repository's tsconfig maps `scalems` imports. */
function run(cwd: string, file: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const result = spawnSync(tsx, ['--tsconfig', path.join(repo, 'tsconfig.json'), path.join(repo, file), ...args], {
    cwd,
    encoding: 'utf8',
    env: { ...process.env, NO_COLOR: '1' },
  });
  return { code: result.status, out: result.stdout, err: result.stderr };
}
const scalems = (cwd: string, ...args: string[]): ReturnType<typeof run> => run(cwd, 'src/cli/main.ts', ...args);

let dir: string;
let example: ReturnType<typeof run>;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-bin-'));
  example = run(dir, 'examples/progress.ts');
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

it('examples/progress.ts runs an ensemble with a progress display (plain lines when not on a terminal)', () => {
  expect(example.code).toBe(0);
  expect(example.out).toContain('38 tasks succeeded, 3 failed; analysis = 1.6666666666666667');
  const lines = example.err.trimEnd().split('\n');
  expect(lines[0]).toMatch(/^\[scalems\] 0\/\d+ done \(0 failed, 0 running\)$/);
  expect(lines.at(-1)).toBe('[scalems] 41/41 done (3 failed, 0 running)');
  for (const line of lines) expect(line).toMatch(/^\[scalems\] \d+\/\d+ done \(\d+ failed, \d+ running\)$/);
});

it('a store another user may not read: scalems status says so (as root here, it runs as nobody)', () => {
  // before: "<dir> does not exist" for the workflow directory, and Node's raw EACCES for the project directory
  const project = path.join(dir, 'private');
  fs.mkdirSync(path.join(project, '.scalems', 'run'), { recursive: true, mode: 0o700 });
  fs.writeFileSync(path.join(project, '.scalems', 'run', 'state.sqlite'), '');
  fs.chmodSync(dir, 0o755);
  fs.chmodSync(project, 0o755);
  const asNobody = (target: string): { code: number | null; err: string } => {
    const r = spawnSync(
      'runuser',
      [
        '-u',
        'nobody',
        '--',
        tsx,
        '--tsconfig',
        path.join(repo, 'tsconfig.json'),
        path.join(repo, 'src/cli/main.ts'),
      ].concat(['status', target]),
      { cwd: os.tmpdir(), encoding: 'utf8' },
    );
    return { code: r.status, err: r.stderr };
  };
  for (const target of [project, path.join(project, '.scalems', 'run')]) {
    const { code, err } = asNobody(target);
    expect(code).toBe(1);
    expect(err).toMatch(/cannot be read by this user \(permission denied\).*Run this as that user\.\n$/);
  }
});

it('scalems status prints the counts and the failed tasks by label', () => {
  const { code, out, err } = scalems(dir, 'status');
  expect({ code, err }).toEqual({ code: 0, err: '' });
  expect(out).toMatch(/^ {2}succeeded +38$/m);
  expect(out).toMatch(/^ {2}failed +3$/m);
  const failed = out.split('\n').filter((l) => /^ {2}replica-/.test(l));
  expect(failed.map((l) => l.trim().split(/\s+/)[0]).sort()).toEqual(['replica-20', 'replica-33', 'replica-7']);
  expect(failed[0]).toMatch(/simulate +1 +Error: replica \d+ did not converge … \(energy drift above tolerance\)$/);

  const json = scalems(dir, 'status', '.scalems/progress-demo', '--json');
  expect(json.code).toBe(0);
  expect(JSON.parse(json.out)).toMatchObject({
    workflow: 'progress-demo',
    total: 41,
    counts: { succeeded: 38, failed: 3 },
  });
});

it('scalems graph prints the edges into the labelled analysis task, in Mermaid and dot', () => {
  const mermaid = scalems(dir, 'graph');
  expect(mermaid.code).toBe(0);
  expect(mermaid.out.startsWith('flowchart LR\n')).toBe(true);
  const analysis = /^ {2}(t_\w+)\["analysis<br\/>average"\]:::succeeded$/m.exec(mermaid.out)![1]!;
  const replica0 = /^ {2}(t_\w+)\["replica-0<br\/>simulate"\]:::succeeded$/m.exec(mermaid.out)![1]!;
  expect(mermaid.out).toContain(`  ${replica0} --> ${analysis}\n`);
  expect(mermaid.out.match(new RegExp(` --> ${analysis}$`, 'gm'))).toHaveLength(3);
  expect(mermaid.out.match(/:::failed$/gm)).toHaveLength(3);

  const dot = scalems(dir, 'graph', '--format', 'dot');
  expect(dot.code).toBe(0);
  expect(dot.out).toMatch(/^digraph "progress-demo" \{\n/);
  expect(dot.out).toContain(`  ${replica0} -> ${analysis};\n`);
});

it('exits non-zero with the message alone when there is no store', () => {
  const { code, out, err } = scalems(os.tmpdir(), 'status', path.join(dir, 'nothing-here'));
  expect(code).toBe(1);
  expect(out).toBe('');
  expect(err).toBe(`scalems status: ${path.join(dir, 'nothing-here')} does not exist.\n`);
});

it('scalems --version prints the package version, from source and from the built bin', () => {
  const { version } = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { version: string };
  expect(scalems(dir, '--version')).toEqual({ code: 0, out: `scalems ${version}\n`, err: '' });
  const bin = path.join(repo, 'dist', 'src', 'cli', 'main.js');
  if (!fs.existsSync(bin)) throw new Error(`${bin} is missing: run npm run build first (npm test does)`);
  const built = spawnSync(process.execPath, [bin, '-V'], { cwd: dir, encoding: 'utf8' });
  expect({ code: built.status, out: built.stdout }).toEqual({ code: 0, out: `scalems ${version}\n` });
});

it('scalems graph piped into a reader that stops early (head) ends quietly, without an EPIPE stack trace', async () => {
  const big = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-pipe-'));
  try {
    const wf = await openWorkflow({ name: 'piped', store: sqliteStore(path.join(big, '.scalems/piped/state.sqlite')) });
    const ex = executor(launch(wf, inProcess()));
    const up = ex.submit(async (n: number) => n, 0);
    // far more than a pipe holds (64 KiB): the writer is still writing when head has gone
    await Promise.all(Array.from({ length: 3000 }, (_, i) => ex.submit(async (a: number, b: number) => a + b, up, i)));
    await wf.close();
    const main = path.join(repo, 'src/cli/main.ts');
    const result = spawnSync(
      'sh',
      ['-c', `"${tsx}" --tsconfig "${path.join(repo, 'tsconfig.json')}" "${main}" graph | head -c 100 > /dev/null`],
      { cwd: big, encoding: 'utf8' },
    );
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
  } finally {
    fs.rmSync(big, { recursive: true, force: true });
  }
});
