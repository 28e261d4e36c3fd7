import { readFileSync, existsSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import * as ts from 'typescript';

/** Every module the core entry point (`scalems` for browsers) reaches through relative imports. */
function importGraph(entry: string): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  const pending = [resolve(entry)];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (graph.has(file)) continue;
    const info = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    const specifiers = info.importedFiles.map((f) => f.fileName);
    graph.set(file, specifiers);
    for (const s of specifiers) {
      if (!s.startsWith('.')) continue;
      const base = join(dirname(file), s);
      const target = [`${base}.ts`, join(base, 'index.ts')].find((p) => existsSync(p));
      if (target === undefined) throw new Error(`${file}: cannot resolve ${s}`);
      pending.push(target);
    }
  }
  return graph;
}

describe('the core entry point', () => {
  it('imports nothing from Node, directly or through its own modules, so it bundles for a browser', () => {
    const graph = importGraph(join(__dirname, '../src/index.ts'));
    expect(graph.size).toBeGreaterThan(10);
    const builtins = new Set(builtinModules);
    const offenders: string[] = [];
    for (const [file, specifiers] of graph) {
      for (const s of specifiers) {
        if (s.startsWith('node:') || builtins.has(s) || builtins.has(s.split('/')[0]!)) offenders.push(`${file} imports ${s}`);
      }
    }
    expect(offenders).toEqual([]);
  });

  it('reaches only browser-safe packages', () => {
    const graph = importGraph(join(__dirname, '../src/index.ts'));
    const packages = new Set([...graph.values()].flat().filter((s) => !s.startsWith('.')).map((s) => s.split('/')[0]!));
    expect([...packages].sort()).toEqual(expect.arrayContaining(['fp-ts', 'immer', 'io-ts', 'rxjs']));
    for (const p of packages) expect(['fp-ts', 'immer', 'io-ts', 'rxjs', 'idb-keyval']).toContain(p);
  });
});
