// The shape of the source tree, checked from the import graph (read as text, nothing loaded): the core
// entry bundles for a browser, the folders depend on each other in one direction, backends share
// their common parts instead of each other, and the remote side of a backend loads only what it runs.
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { cycles, importsOf, reach, sourceFiles, srcPath } from './support/import-graph';

const SRC = join(__dirname, '..', 'src');
const path = (file: string): string => srcPath(SRC, file);

describe('the core entry point', () => {
  const graph = reach(join(SRC, 'index.ts'));

  it('imports nothing from Node, directly or through its own modules, so it bundles for a browser', () => {
    expect(graph.size).toBeGreaterThan(10);
    const builtins = new Set(builtinModules);
    const offenders: string[] = [];
    for (const [file, imports] of graph) {
      for (const { specifier: s } of imports) {
        if (s.startsWith('node:') || builtins.has(s) || builtins.has(s.split('/')[0]!))
          offenders.push(`${path(file)} imports ${s}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('reaches only browser-safe packages', () => {
    const packages = new Set(
      [...graph.values()]
        .flat()
        .filter((i) => i.file === undefined)
        .map((i) => i.specifier.split('/')[0]!),
    );
    expect([...packages].sort()).toEqual(expect.arrayContaining(['fp-ts', 'immer', 'io-ts', 'rxjs']));
    for (const p of packages) expect(['fp-ts', 'immer', 'io-ts', 'rxjs', 'idb-keyval']).toContain(p);
  });
});

/** Which part of the tree a file belongs to. */
function area(file: string): string {
  const p = path(file);
  const parts = p.split('/');
  if (parts.length === 1) return p.replace(/\.ts$/, ''); // errors, util, optional-dependency, recorded-error, index
  if (parts[0] === 'runtime') {
    if (parts.length === 2) return 'engine';
    return BACKEND_FOLDERS.has(parts[1]!) ? 'backend' : `runtime/${parts[1]}`;
  }
  return parts[0]!;
}

/** Folders of `src/runtime/` that hold one backend each. */
const BACKEND_FOLDERS = new Set(['threads', 'processes', 'slurm', 'bullmq']);

/** The only imports from one backend's folder into another's, each with its reason. */
const BETWEEN_BACKENDS: ReadonlyArray<[from: string, to: string, why: string]> = [
  [
    'runtime/bullmq/worker.ts',
    'runtime/threads/host-pool.ts',
    'a scalems worker runs its functions on a threads() pool',
  ],
  ['runtime/slurm/agent.ts', 'runtime/threads/host-pool.ts', 'a Slurm agent runs its functions on a threads() pool'],
];

const LEAVES = ['errors', 'util', 'optional-dependency'];
/** What each part may import (besides itself); the entry points (`index`, `node`, `cli`) may import anything. */
const ALLOWED: Readonly<Record<string, readonly string[]>> = {
  errors: [],
  util: [],
  context: [],
  'recorded-error': ['errors'],
  'optional-dependency': ['errors'],
  task: [...LEAVES],
  store: [...LEAVES, 'recorded-error', 'context', 'task'],
  engine: [...LEAVES, 'recorded-error', 'context', 'task', 'store'],
  operators: [...LEAVES, 'task', 'engine'],
  testing: [...LEAVES, 'task', 'engine'],
  // (the task host runs programs through the executable attempt)
  'runtime/remote': [...LEAVES, 'recorded-error', 'context', 'task', 'engine', 'runtime/executable'],
  'runtime/executable': [...LEAVES, 'task', 'engine'],
  backend: [...LEAVES, 'recorded-error', 'context', 'task', 'engine', 'runtime/remote', 'runtime/executable'],
};

describe('the folders depend on each other in one direction', () => {
  const files = sourceFiles(SRC);

  it('each part imports only the parts below it: store/ nothing of runtime/ or operators/, operators/ nothing of store/', () => {
    const offenders: string[] = [];
    for (const file of files) {
      const from = area(file);
      const allowed = ALLOWED[from];
      if (allowed === undefined) continue; // an entry point
      for (const i of importsOf(file)) {
        if (i.file === undefined) continue;
        const to = area(i.file);
        if (to === from && !(from === 'backend' && path(i.file).split('/')[1] !== path(file).split('/')[1])) continue;
        if (BETWEEN_BACKENDS.some(([f, t]) => f === path(file) && t === path(i.file!))) continue;
        if (!allowed.includes(to)) offenders.push(`${path(file)} (${from}) imports ${path(i.file)} (${to})`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('has no import cycle of values, and cycles of types only within one folder', () => {
    expect(cycles(files, (i) => !i.typeOnly).map((c) => c.map(path))).toEqual([]);
    const across = cycles(files, () => true).filter(
      (c) => new Set(c.map((f) => path(f).replace(/\/[^/]+$/, ''))).size > 1,
    );
    expect(across.map((c) => c.map(path))).toEqual([]);
  });

  it('knows every part of the tree (a new folder gets its place in the rules)', () => {
    const unknown = files.filter((f) => ALLOWED[area(f)] === undefined && !['index', 'node', 'cli'].includes(area(f)));
    expect(unknown.map(path)).toEqual([]);
  });
});

describe('the remote side of a backend', () => {
  it('runtime/bullmq/worker.ts (scalems worker) loads a threads() pool (the remote runner) and the executable attempt, not the engine, a store or Node’s entry', () => {
    const files = [...reach(join(SRC, 'runtime/bullmq/worker.ts'), { valueOnly: true })].map(([file]) => path(file));
    expect(files).toEqual(expect.arrayContaining(['runtime/threads/index.ts', 'runtime/executable/local.ts']));
    const forbidden = files.filter((f) =>
      /^(node|store|operators)\/|^runtime\/(executor|runtime|workflow|in-process)\.ts$|^runtime\/bullmq\/(index|client)\.ts$/.test(
        f,
      ),
    );
    expect(forbidden).toEqual([]);
  });

  it('cli/agent-entry.ts (a Slurm agent) loads the task host, a threads() pool and the executable attempt, not the engine, a store, Node’s entry or the driver side of slurm()', () => {
    const files = [...reach(join(SRC, 'cli/agent-entry.ts'), { valueOnly: true })].map(([file]) => path(file));
    expect(files).toEqual(
      expect.arrayContaining(['runtime/remote/host.ts', 'runtime/threads/index.ts', 'runtime/executable/local.ts']),
    );
    const forbidden = files.filter((f) =>
      /^(node|store|operators)\/|^runtime\/(executor|runtime|workflow|in-process)\.ts$|^runtime\/slurm\/(index|agents|on-agents|allocation)\.ts$/.test(
        f,
      ),
    );
    expect(forbidden).toEqual([]);
  });

  it.each(['runtime/threads/worker.ts', 'cli/task-entry.ts'])(
    '%s loads the remote runner, not Node’s entry, a store, or the main side of a backend',
    (entry) => {
      const loaded = [...reach(join(SRC, entry), { valueOnly: true })];
      const files = loaded.map(([file]) => path(file));
      expect(files).toContain('runtime/remote/runner.ts');
      const forbidden = files.filter((f) =>
        /^(node|store|operators)\/|^runtime\/(executor|runtime|workflow|in-process)\.ts$|^runtime\/(threads|slurm|processes)\/index\.ts$/.test(
          f,
        ),
      );
      expect(forbidden).toEqual([]);
      const packages = new Set(
        loaded.flatMap(([, imports]) =>
          imports.filter((i) => i.file === undefined && !i.specifier.startsWith('node:')).map((i) => i.specifier),
        ),
      );
      expect(
        [...packages].filter((p) => ['better-sqlite3', 'piscina', 'bullmq', 'immer', 'idb-keyval'].includes(p)),
      ).toEqual([]);
    },
  );
});
