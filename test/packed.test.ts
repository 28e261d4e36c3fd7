// The package as users get it (#13): `npm pack` of the built tree, unpacked into fresh CommonJS and ES module
// projects, run and type-checked there; bundled for a browser from a fresh project; run on Node without the
// optional peer dependencies; checked by attw and publint (offline: they read the tarball). The dependencies are
// linked from this repository's node_modules: what is tested is our tarball (its files, exports, types, maps),
// not npm's registry.
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
import { basename, dirname, join } from 'node:path';

const repo = join(__dirname, '..');
const fixtures = join(__dirname, 'fixtures', 'packed');
const tsc = join(repo, 'node_modules', 'typescript', 'bin', 'tsc');
const pkg = JSON.parse(readFileSync(join(repo, 'package.json'), 'utf8')) as {
  version: string;
  scripts: Record<string, string>;
  dependencies: Record<string, string>;
  peerDependencies: Record<string, string>;
  peerDependenciesMeta: Record<string, { optional?: boolean }>;
};
/** The Node-only heavy packages: optional peer dependencies, not installed for a browser user. */
const OPTIONAL_PEERS = ['better-sqlite3', 'bullmq', 'cli-progress', 'piscina'];

let work: string;
let tarball: string;
let files: string[];

/**
 * A fresh project of `type` with the tarball unpacked as node_modules/scalems and our dependencies linked: all of
 * this repository's node_modules, or with `only` those packages (and what they depend on).
 */
function project(type: 'module' | 'commonjs', name: string = type, only?: readonly string[]): string {
  const dir = join(work, name);
  mkdirSync(join(dir, 'node_modules', 'scalems'), { recursive: true });
  execFileSync('tar', ['xzf', tarball, '-C', join(dir, 'node_modules', 'scalems'), '--strip-components=1']);
  const entries = only === undefined ? readdirSync(join(repo, 'node_modules')) : closure(only);
  for (const entry of entries) {
    if (entry === 'scalems' || entry.startsWith('.')) continue;
    mkdirSync(dirname(join(dir, 'node_modules', entry)), { recursive: true });
    symlinkSync(join(repo, 'node_modules', entry), join(dir, 'node_modules', entry));
  }
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: `fresh-${name}`, private: true, type }));
  return dir;
}

/** `packages` and the packages they need (dependencies, required peers), as found in this repository. */
function closure(packages: readonly string[]): string[] {
  const seen = new Set<string>();
  const visit = (name: string): void => {
    if (seen.has(name)) return;
    seen.add(name);
    const meta = JSON.parse(readFileSync(join(repo, 'node_modules', name, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
      peerDependenciesMeta?: Record<string, { optional?: boolean }>;
    };
    for (const dep of Object.keys(meta.dependencies ?? {})) visit(dep);
    for (const peer of Object.keys(meta.peerDependencies ?? {}))
      if (meta.peerDependenciesMeta?.[peer]?.optional !== true) visit(peer);
  };
  packages.forEach(visit);
  return [...seen];
}

/** Type-checks the fixture types.ts (every entry point) in `dir`, strictly, with `resolution`. */
function typecheck(dir: string, resolution: 'NodeNext' | 'Bundler'): { code: number | null; out: string } {
  copyFileSync(join(fixtures, 'types.ts'), join(dir, 'types.ts'));
  const config = {
    compilerOptions: {
      target: 'ES2022',
      module: resolution === 'Bundler' ? 'ESNext' : 'NodeNext',
      moduleResolution: resolution,
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
  return { code: r.status, out: r.stdout + r.stderr };
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
    expect(files).toEqual(
      expect.arrayContaining(['dist/esm/index.mjs', 'dist/esm/index.d.mts', 'dist/esm/testing.mjs']),
    );
    const readme = readFileSync(join(repo, 'README.md'), 'utf8');
    const linked = [...readme.matchAll(/\]\((docs\/[^)#]+)/g)].map((m) => m[1]!);
    expect(linked.length).toBeGreaterThan(0);
    for (const doc of linked) expect(files).toContain(doc);
    expect(files.filter((f) => f.startsWith('test/') || f.startsWith('bench/') || f.startsWith('src/'))).toEqual([]);
  });

  it('ships the page of scalems serve (bundled, dagre in it) where the installed command finds it', () => {
    for (const f of ['index.html', 'app.js', 'app.css']) expect(files).toContain(`dist/dashboard/${f}`);
    // the package's dist/ as unpacked (the page's files are found from the command's own location)
    const dir = join(work, 'dashboard');
    mkdirSync(dir);
    execFileSync('tar', ['xzf', tarball, '-C', dir, '--strip-components=1', 'package/dist']);
    const assets = join(dir, 'dist', 'src', 'cli', 'serve', 'assets.js');
    const script =
      `const { loadAssets } = require(${JSON.stringify(assets)});` +
      'console.log(JSON.stringify([...loadAssets()].map(([route, a]) => [route, a.type, a.body.length])));';
    const run = node(dir, '-e', script);
    expect(run).toMatchObject({ code: 0, err: '' });
    const served = JSON.parse(run.out) as Array<[string, string, number]>;
    expect(served.map(([route, type]) => [route, type.split(';')[0]])).toEqual([
      ['/', 'text/html'],
      ['/app.js', 'text/javascript'],
      ['/app.css', 'text/css'],
    ]);
    const page = readFileSync(join(dir, 'dist', 'dashboard', 'app.js'), 'utf8');
    expect(page).toContain('@dagrejs/dagre'); // the layout library, bundled (with its license notice)
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

  it.each([
    ['module', 'threads-main.mjs', 'tasks.mjs'],
    ['commonjs', 'threads-main.js', 'tasks.js'],
  ] as const)('runs threads() with the documented pattern under plain node, %s', (type, main, tasks) => {
    const dir = existsSync(join(work, type)) ? join(work, type) : project(type);
    for (const f of [tasks, main]) copyFileSync(join(fixtures, f), join(dir, f));
    const r = node(dir, main);
    expect({ code: r.code, err: r.err }).toEqual({ code: 0, err: '' });
    expect(r.out).toBe('[1,8,27]\n');
  });

  it.each([
    ['module', 'tasks.ts', 'threads-main.ts'],
    ['commonjs', 'tasks.ts', 'threads-main.ts'],
    // threads() loaded tasks.mjs with require() to see its task names, and tsx's CommonJS hook compiled a second
    // copy: TaskModuleError, "packed.cube" already registered to another function
    ['module', 'tasks.mjs', 'threads-main.mjs'],
  ] as const)(
    'runs threads() with the documented pattern (main imports the task module it gives) under tsx, %s, %s',
    (type, tasks, main) => {
      const dir = existsSync(join(work, type)) ? join(work, type) : project(type);
      for (const f of [tasks, main]) copyFileSync(join(fixtures, f), join(dir, f));
      const r = spawnSync(join(repo, 'node_modules', '.bin', 'tsx'), [main], {
        cwd: dir,
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect({ code: r.status, err: r.stderr }).toEqual({ code: 0, err: '' });
      expect(r.stdout).toBe('[1,8,27]\n');
    },
  );

  it.each(['NodeNext', 'Bundler'] as const)(
    'its types compile in a strict project (%s resolution): no DOM lib, skipLibCheck false, exactOptionalPropertyTypes',
    (resolution) => {
      const dir = existsSync(join(work, 'module')) ? join(work, 'module') : project('module');
      expect(typecheck(dir, resolution)).toEqual({ code: 0, out: '' });
    },
    60_000,
  );

  it('attw (are the types wrong) and publint find no problem in the tarball (they read only the tarball: no network)', () => {
    const attw = join(repo, 'node_modules', '@arethetypeswrong', 'cli', 'dist', 'index.js');
    const types = spawnSync(process.execPath, [attw, tarball, '--format', 'ascii'], { encoding: 'utf8' });
    expect({ code: types.status, out: types.status === 0 ? '' : types.stdout + types.stderr }).toEqual({
      code: 0,
      out: '',
    });
    const publint = join(repo, 'node_modules', 'publint', 'src', 'cli.js');
    const lint = spawnSync(process.execPath, [publint, 'run', tarball, '--strict'], { encoding: 'utf8' });
    expect(lint.stdout).toContain('All good!');
    expect(lint.status).toBe(0);
  });

  it('its ES module build names the file of each deep import of a package (webpack takes them fully specified)', () => {
    // `fp-ts/es6/Either` without .js: fp-ts has no exports map, and a default webpack 5 build for a browser failed
    const esm = files.filter((f) => /^dist\/esm\/.*\.mjs$/.test(f));
    const deep = esm.flatMap((f) =>
      [
        ...readFileSync(join(repo, f), 'utf8').matchAll(/\bfrom\s*["']((?:@[^/"']+\/)?[^./"'][^/"']*\/[^"']+)["']/g),
      ].map((m) => m[1]!),
    );
    expect(deep.length).toBeGreaterThan(0);
    expect(deep.filter((path) => !/\.m?js$/.test(path))).toEqual([]);
  });

  it('bundles for a browser from its ES module build: one copy of rxjs and fp-ts, nothing of Node', async () => {
    const dir = project('module', 'browser');
    copyFileSync(join(fixtures, 'browser-app.mjs'), join(dir, 'app.mjs'));
    const esbuild = require('esbuild') as typeof import('esbuild');
    const result = await esbuild.build({
      absWorkingDir: dir,
      entryPoints: ['app.mjs'],
      bundle: true,
      write: false,
      format: 'esm',
      platform: 'browser',
      metafile: true,
      logLevel: 'silent',
    });
    const inputs = Object.keys(result.metafile.inputs);
    const builds = (name: string): string[] => [
      ...new Set(inputs.flatMap((f) => new RegExp(`node_modules/${name}/([^/]+(?:/[^/]+)?)/`).exec(f)?.[1] ?? [])),
    ];
    expect(builds('rxjs')).toEqual(['dist/esm5']);
    expect(builds('fp-ts')).toHaveLength(1);
    expect(builds('scalems')).toEqual(['dist/esm']);
    expect(
      inputs.filter((f) => f.startsWith('node:') || /(^|\/)node_modules\/(better-sqlite3|piscina|bullmq)\//.test(f)),
    ).toEqual([]);
    expect(result.outputFiles[0]!.text).not.toMatch(/\b__require\(/);
    // scalems/node in a browser bundle says at once what it is (vite built it, and the page died at load with
    // "t.AsyncLocalStorage is not a constructor")
    writeFileSync(join(dir, 'node-entry.mjs'), "import { threads } from 'scalems/node';\nexport { threads };\n");
    const nodeEntry = await esbuild.build({
      absWorkingDir: dir,
      entryPoints: ['node-entry.mjs'],
      bundle: true,
      write: false,
      format: 'iife',
      platform: 'browser',
      logLevel: 'silent',
    });
    // it exports the entry's names: importing one is no build error where a bundler takes a missing export for one
    // (vite, webpack: "threads is not exported"; esbuild warned it would be undefined)
    expect(nodeEntry.warnings.map((w) => w.text)).toEqual([]);
    expect(() => new Function(nodeEntry.outputFiles[0]!.text)()).toThrow(
      /^scalems\/node is the Node\.js entry of scalems .*: it does not run in a browser\. In a browser import from "scalems"/,
    );
  });

  it('builds its native forker as npm installs it (the install script), and starts programs with it; without cc it installs all the same, and Node forks', () => {
    expect(pkg.scripts.install).toBe('node native/build.cjs');
    expect(files).toEqual(expect.arrayContaining(['native/forker.c', 'native/build.cjs']));
    expect(files).not.toContain('native/scalems-forker'); // built where it is installed, for that machine
    const dir = project('commonjs', 'forker', Object.keys(pkg.dependencies));
    const installed = join(dir, 'node_modules', 'scalems');
    // what npm runs as it installs the package: its install script, in the package's directory
    const script =
      "const { executable, executor, launch, memoryStore, openWorkflow } = require('scalems');" +
      "const { processes, readText } = require('scalems/node');" +
      '(async () => {' +
      "  const wf = await openWorkflow({ name: 'w', store: memoryStore() });" +
      "  const rt = launch(wf, processes({ root: 'root' }));" +
      "  const r = await executor(rt, {}).submit(executable(['sh', '-c', 'cat /proc/$PPID/comm']));" +
      '  console.log((await readText(r.stdout)).trim());' +
      '  await rt.shutdown();' +
      '})();';
    const build = (cc: string) =>
      spawnSync(process.execPath, [pkg.scripts.install.split(' ')[1]!], {
        cwd: installed,
        encoding: 'utf8',
        env: { ...process.env, CC: cc },
      });
    const noCompiler = build('/nonexistent/cc');
    expect({ code: noCompiler.status, out: noCompiler.stdout }).toEqual({ code: 0, out: '' });
    expect(noCompiler.stderr).toMatch(/^scalems: the native forker was not built \(no C compiler .*Node's spawn/);
    expect(existsSync(join(installed, 'native', 'scalems-forker'))).toBe(false);
    // the spawner, a Node; and a warning, since npm shows nothing of what an install script prints unless it fails
    const unbuilt = node(dir, '-e', script);
    expect(unbuilt).toMatchObject({ code: 0, out: 'node\n' });
    expect(unbuilt.err).toMatch(/ScalemsWarning: scalems's native forker .* was not built .*node native\/build\.cjs/);
    const built = build(process.env.CC ?? 'cc');
    expect({ code: built.status, out: built.stdout, err: built.stderr }).toEqual({ code: 0, out: '', err: '' });
    expect(node(dir, '-e', script)).toMatchObject({ code: 0, out: 'scalems-forker\n', err: '' });
  }, 60_000);

  it('on Node without its optional peers: imports, runs on memoryStore, says what to install, type-checks', () => {
    expect(Object.keys(pkg.dependencies).filter((d) => OPTIONAL_PEERS.includes(d))).toEqual([]);
    for (const peer of OPTIONAL_PEERS) {
      expect(pkg.peerDependencies[peer]).toBeDefined();
      expect(pkg.peerDependenciesMeta[peer]).toEqual({ optional: true });
    }
    const dir = project('module', 'no-peers', [...Object.keys(pkg.dependencies), '@types/node']);
    for (const peer of OPTIONAL_PEERS) expect(existsSync(join(dir, 'node_modules', peer))).toBe(false);
    copyFileSync(join(fixtures, 'no-peers.mjs'), join(dir, 'no-peers.mjs'));
    const run = node(dir, 'no-peers.mjs');
    expect(run).toMatchObject({ code: 0, err: '' });
    const seen = JSON.parse(run.out) as Record<string, { message: string }>;
    expect(seen).toEqual({
      results: [1, 4, 9],
      defaultStore: expect.objectContaining({ name: 'MissingDependencyError', code: 'MISSING_DEPENDENCY' }),
      threads: expect.objectContaining({ code: 'MISSING_DEPENDENCY', packageName: 'piscina' }),
      bullmq: expect.objectContaining({ code: 'MISSING_DEPENDENCY', packageName: 'bullmq' }),
      sqliteStore: expect.objectContaining({ code: 'MISSING_DEPENDENCY', packageName: 'better-sqlite3' }),
      // before: accepted, and every task failed with SlurmAllocationError once an allocation was granted
      slurmModules: expect.objectContaining({ code: 'MISSING_DEPENDENCY', packageName: 'piscina' }),
      slurmPrograms: 'no error',
    });
    expect(seen.slurmModules!.message).toMatch(/^slurm\(\{ modules \}\) needs the package piscina.*mode: 'steps'/);
    expect(seen.defaultStore).toMatchObject({
      packageName: 'better-sqlite3',
      install: 'npm install better-sqlite3@12',
    });
    expect(seen.defaultStore!.message).toContain('npm install better-sqlite3@12');
    expect(seen.defaultStore!.message).toContain('memoryStore()');
    expect(seen.threads!.message).toContain('npm install piscina@5');
    expect(existsSync(join(dir, '.scalems'))).toBe(false); // nothing made before the refusal
    const cli = join('node_modules', 'scalems', 'dist', 'src', 'cli', 'main.js');
    expect(node(dir, cli, '--version')).toMatchObject({ code: 0, out: `scalems ${pkg.version}\n` });
    // and its typings, scalems/node's included, do not name them: they compile without them, skipLibCheck false
    expect(typecheck(dir, 'NodeNext')).toEqual({ code: 0, out: '' });
  }, 60_000);
});
