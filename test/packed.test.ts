// The package as users get it (#13): `npm pack` of the built tree, unpacked into fresh CommonJS and ES module
// projects, run and type-checked there. The dependencies are linked from this repository's node_modules: what is
// tested is our tarball (its files, exports, types, maps), not npm's registry.
import { execFileSync, spawnSync } from 'node:child_process';
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { basename, join } from 'node:path';

const repo = join(__dirname, '..');
const fixtures = join(__dirname, 'fixtures', 'packed');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
};

let work: string;
let tarball: string;
let files: string[];

/** A fresh project of `type` with the tarball unpacked as node_modules/scalems and our dependencies linked. */
function project(type: 'module' | 'commonjs'): string {
  const dir = join(work, type);
  mkdirSync(join(dir, 'node_modules', 'scalems'), { recursive: true });
  execFileSync('tar', ['xzf', tarball, '-C', join(dir, 'node_modules', 'scalems'), '--strip-components=1']);
  for (const entry of readdirSync(join(repo, 'node_modules'))) {
    if (entry !== 'scalems') symlinkSync(join(repo, 'node_modules', entry), join(dir, 'node_modules', entry));
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `fresh-${type}`, private: true, type }));
  return dir;
}

function node(cwd: string, ...args: string[]): { code: number | null; out: string; err: string } {
  const r = spawnSync(process.execPath, args, { cwd, encoding: 'utf8', timeout: 60_000 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}

beforeAll(() => {
  if (!existsSync(join(repo, 'dist', 'src', 'index.js')))
    throw new Error('dist/ is missing: run npm run build first (npm test does)');
  work = mkdtempSync(join(tmpdir(), 'scalems-packed-'));
  // the tree npm test built: --ignore-scripts, so that prepack does not rebuild dist/ under other test files
  const out = execFileSync('npm', ['pack', '--json', '--ignore-scripts', '--pack-destination', work], {
    cwd: repo,
    encoding: 'utf8',
  });
  const [packed] = JSON.parse(out) as Array<{ filename: string; files: Array<{ path: string }> }>;
  tarball = join(work, basename(packed!.filename));
  files = packed!.files.map((f) => f.path);
}, 60_000);
afterAll(() => rmSync(work, { recursive: true, force: true }));

describe('the packed package', () => {
  it('builds on prepack and ships the build, its typings, the docs the README links and the LICENSE', () => {
    expect(pkg.scripts.prepack).toBe('npm run build');
    expect(files).toEqual(expect.arrayContaining(['LICENSE', 'README.md', 'package.json', 'dist/src/index.js']));
    expect(files).toContain('dist/src/index.d.ts');
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
    expect(linked.length).toBeGreaterThan(0);
    for (const doc of linked) expect(files).toContain(doc);
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('src/'))).toEqual([]);
  });

  it('its source maps carry their sources (src/ is not shipped)', () => {
    const dir = join(work, 'maps');
    mkdirSync(dir);
    execFileSync('tar', ['xzf', tarball, '-C', dir, '--strip-components=1', 'package/dist/src/index.js.map']);
    const map = JSON.parse(readFileSync(join(dir, 'dist', 'src', 'index.js.map'), 'utf8')) as {
      sources: string[];
      sourcesContent?: string[];
    };
    expect(map.sourcesContent).toHaveLength(map.sources.length);
    expect(map.sourcesContent![0]).toContain('export');
  });

  it('runs the README tour in a fresh ES module project', () => {
    const dir = project('module');
    copyFileSync(join(fixtures, 'tour.mjs'), join(dir, 'tour.mjs'));
    const run = node(dir, 'tour.mjs');
    expect(run).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(run.out)).toEqual({ results: [2, 5, 10, 17], b: 26, label: null });
    expect(existsSync(join(dir, '.scalems', 'demo', 'state.sqlite'))).toBe(true);
    expect(node(dir, join('node_modules', 'scalems', 'dist', 'src', 'cli', 'main.js'), '--version').out).toBe(
      `scalems ${pkg.version}\n`,
    );
  });

  it('runs the README tour in a fresh CommonJS project', () => {
    const dir = project('commonjs');
    copyFileSync(join(fixtures, 'tour.cjs'), join(dir, 'tour.cjs'));
    const run = node(dir, 'tour.cjs');
    expect(run).toMatchObject({ code: 0, err: '' });
    expect(JSON.parse(run.out)).toEqual({ results: [1, 4, 9] });
  });

  it.each(['module', 'commonjs'] as const)(
    'runs threads() with the documented pattern (main imports the task module it gives) under tsx, %s',
    (type) => {
      const dir = existsSync(join(work, type)) ? join(work, type) : project(type);
      for (const f of ['tasks.ts', 'threads-main.ts']) copyFileSync(join(fixtures, f), join(dir, f));
      const r = spawnSync(join(repo, 'node_modules', '.bin', 'tsx'), ['threads-main.ts'], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect({ code: r.status, err: r.stderr }).toEqual({ code: 0, err: '' });
      expect(r.stdout).toBe('[1,8,27]\n');
    },
  );

  it('its types compile in a strict Node project: no DOM lib, skipLibCheck false, exactOptionalPropertyTypes', () => {
    const dir = existsSync(join(work, 'module')) ? join(work, 'module') : project('module');
    copyFileSync(join(fixtures, 'types.ts'), join(dir, 'types.ts'));
    const config = {
      compilerOptions: {
        target: 'ES2022',
        module: 'NodeNext',
        moduleResolution: 'NodeNext',
        strict: true,
        exactOptionalPropertyTypes: true,
        skipLibCheck: false,
        noEmit: true,
        lib: ['ES2022'],
        types: ['node'],
      },
      files: ['types.ts'],
    };
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify(config));
    const r = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: dir, encoding: 'utf8' });
    expect(r.stdout + r.stderr).toBe('');
    expect(r.status).toBe(0);
  });
});
