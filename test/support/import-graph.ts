/**
 * The import graph of the sources, read as text (TypeScript's parser, nothing is loaded): which file
 * imports which, and whether an import is for types only (gone at run time). For the tests that keep
 * the architecture's arrows pointing one way.
 */
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, sep } from 'node:path';
import * as ts from 'typescript';

export interface Import {
  /** the specifier as written */
  readonly specifier: string;
  /** the file it resolves to (relative specifiers), else undefined (a package or a Node builtin) */
  readonly file: string | undefined;
  /** `import type` / `export type`, or every named binding marked `type` */
  readonly typeOnly: boolean;
}

const cache = new Map<string, Import[]>();

/** The imports and re-exports of one file. */
export function importsOf(file: string): Import[] {
  let found = cache.get(file);
  if (found !== undefined) return found;
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
  found = [];
  for (const node of source.statements) {
    if (
      !(ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) ||
      node.moduleSpecifier === undefined ||
      !ts.isStringLiteral(node.moduleSpecifier)
    )
      continue;
    const specifier = node.moduleSpecifier.text;
    found.push({
      specifier,
      file: specifier.startsWith('.') ? resolveRelative(file, specifier) : undefined,
      typeOnly: isTypeOnly(node),
    });
  }
  cache.set(file, found);
  return found;
}

function isTypeOnly(node: ts.ImportDeclaration | ts.ExportDeclaration): boolean {
  if (ts.isExportDeclaration(node)) {
    return (
      node.isTypeOnly ||
      (node.exportClause !== undefined &&
        ts.isNamedExports(node.exportClause) &&
        node.exportClause.elements.every((e) => e.isTypeOnly))
    );
  }
  const clause = node.importClause;
  if (clause === undefined) return false; // import './x': for its effects
  if (clause.isTypeOnly) return true;
  const named = clause.namedBindings;
  return (
    clause.name === undefined &&
    named !== undefined &&
    ts.isNamedImports(named) &&
    named.elements.length > 0 &&
    named.elements.every((e) => e.isTypeOnly)
  );
}

function resolveRelative(from: string, specifier: string): string {
  const base = join(dirname(from), specifier);
  // an ES module's import names the compiled file: `./dom.js` is `./dom.ts` (the dashboard's page)
  const ts = base.replace(/\.js$/, '.ts');
  const target = [`${base}.ts`, join(base, 'index.ts'), ...(ts === base ? [] : [ts])].find((p) => existsSync(p));
  if (target === undefined) throw new Error(`${from}: cannot resolve ${specifier}`);
  return target;
}

/** Every file reached from `entry` through relative imports (value imports only, with `valueOnly`). */
export function reach(entry: string, options: { valueOnly?: boolean } = {}): Map<string, Import[]> {
  const graph = new Map<string, Import[]>();
  const pending = [entry];
  while (pending.length > 0) {
    const file = pending.pop()!;
    if (graph.has(file)) continue;
    const imports = importsOf(file).filter((i) => options.valueOnly !== true || !i.typeOnly);
    graph.set(file, imports);
    for (const i of imports) if (i.file !== undefined) pending.push(i.file);
  }
  return graph;
}

/** The `.ts` files under a folder. */
export function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const path = join(dir, name);
    return statSync(path).isDirectory() ? sourceFiles(path) : path.endsWith('.ts') ? [path] : [];
  });
}

/** Groups of files that import each other in a cycle (Tarjan's strongly connected components). */
export function cycles(files: readonly string[], follow: (i: Import) => boolean): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  let next = 0;
  const visit = (v: string): void => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const i of importsOf(v)) {
      if (i.file === undefined || !follow(i)) continue;
      if (!index.has(i.file)) {
        visit(i.file);
        low.set(v, Math.min(low.get(v)!, low.get(i.file)!));
      } else if (onStack.has(i.file)) low.set(v, Math.min(low.get(v)!, index.get(i.file)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1) found.push(component.sort());
  };
  for (const f of files) if (!index.has(f)) visit(f);
  return found;
}

/** `src`-relative path with `/` separators: `runtime/threads/worker.ts`. */
export const srcPath = (root: string, file: string): string => relative(root, file).split(sep).join('/');
