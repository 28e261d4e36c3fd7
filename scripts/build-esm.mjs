// The ES module build (npm run build, after tsc's CommonJS one): what bundlers and browsers take through the
// "import" condition of `scalems` and `scalems/testing`. Node never loads it: the "node" condition comes first and
// gives the CommonJS build for require and import alike, so that a Node program holds one copy of the task
// registry and the ambient context (the dual-package hazard).
//
// One esbuild run over both entries with code splitting: what they share (the engine) is one chunk, so a bundle
// that imports both has one engine too. Packages stay imports (`packages: 'external'`), so the user's bundler
// dedupes rxjs, immer, io-ts with the app's own; `fp-ts/lib/*` (CommonJS) becomes `fp-ts/es6/*`, which io-ts's
// ES module build imports, so that fp-ts is not bundled twice either. The typings are the CommonJS build's,
// re-exported by a `.d.mts` beside each entry.
import * as esbuild from 'esbuild';
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const out = join(root, 'dist', 'esm');
const entries = { index: 'src/index.ts', testing: 'src/testing/index.ts' };
const typings = { index: '../src/index.js', testing: '../src/testing/index.js' };

/**
 * `fp-ts/lib/X` → `fp-ts/es6/X.js`: the ES module copy of fp-ts that io-ts's ES module build uses, named with its
 * extension: fp-ts has no exports map, and webpack resolves what an .mjs file imports as fully specified (without the
 * extension, a default webpack 5 build failed).
 */
const fpTsEs6 = {
  name: 'fp-ts-es6',
  setup(build) {
    build.onResolve({ filter: /^fp-ts\/lib\// }, (args) => ({
      path: `${args.path.replace(/^fp-ts\/lib\//, 'fp-ts/es6/')}.js`,
      external: true,
    }));
  },
};

/**
 * `require('idb-keyval')` (src/store/idb.ts loads idb-keyval's CommonJS build from the CommonJS build) becomes an
 * import of the package: ES module output cannot `require` an external package.
 */
const requireAsImport = {
  name: 'require-as-import',
  setup(build) {
    build.onResolve({ filter: /^idb-keyval$/ }, (args) =>
      args.kind === 'require-call' ? { path: args.path, namespace: 'require-as-import' } : undefined,
    );
    build.onLoad({ filter: /.*/, namespace: 'require-as-import' }, (args) => ({
      contents: `export * from '${args.path}';`,
      resolveDir: root,
      loader: 'js',
    }));
  },
};

const result = await esbuild.build({
  absWorkingDir: root,
  entryPoints: entries,
  outdir: out,
  outExtension: { '.js': '.mjs' },
  chunkNames: 'chunks/[name]-[hash]',
  bundle: true,
  splitting: true,
  format: 'esm',
  platform: 'neutral',
  packages: 'external',
  target: 'es2022',
  sourcemap: true,
  sourcesContent: true,
  tsconfig: 'tsconfig.build.json',
  plugins: [fpTsEs6, requireAsImport],
  metafile: true,
  logLevel: 'warning',
});

for (const [name, target] of Object.entries(typings)) {
  writeFileSync(join(out, `${name}.d.mts`), `export * from '${target}';\n`);
}

const builtins = Object.values(result.metafile.outputs)
  .flatMap((o) => o.imports)
  .map((i) => i.path)
  .filter((p) => p.startsWith('node:'));
if (builtins.length > 0) throw new Error(`the ES module build imports Node built-ins: ${builtins.join(', ')}`);
const requires = Object.keys(result.metafile.outputs)
  .filter((file) => file.endsWith('.mjs'))
  .filter((file) => /\b__require\(/.test(readFileSync(join(root, file), 'utf8')));
if (requires.length > 0) throw new Error(`the ES module build calls require() in ${requires.join(', ')}`);

// `scalems/node` under a bundler's "browser" condition: a module that says at once what it is (before, vite built it
// with warnings, and the page died at load on `t.AsyncLocalStorage is not a constructor`). It exports the names of
// the Node entry (as undefined): importing one is not a build error (vite, webpack: "not exported"), so that the
// message is what the page shows.
const nodeNames = Object.keys(createRequire(import.meta.url)(join(root, 'dist', 'src', 'node', 'index.js'))).filter(
  (name) => name !== 'default' && name !== '__esModule',
);
writeFileSync(
  join(out, 'node-only.mjs'),
  'throw new Error(\n' +
    "  'scalems/node is the Node.js entry of scalems (threads(), processes(), slurm(), bullmq(), sqliteStore()): it " +
    'does not run in a browser. In a browser import from "scalems" (inProcess(), memoryStore(), idbStore()).\',\n' +
    ');\n' +
    nodeNames.map((name) => `export const ${name} = undefined;\n`).join(''),
);
