// The page of `scalems serve` (npm run build, after the ES module build): src/cli/serve/page/main.ts and what it
// imports, @dagrejs/dagre included, bundled by esbuild into one script for the browser, beside its HTML and CSS:
// dist/dashboard/{index.html,app.js,app.css}, shipped in the package ("files" has dist/dashboard). The server reads
// them from there (src/cli/serve/assets.ts). `node scripts/build-dashboard.mjs <dir>` builds into another directory
// (the browser test builds a fresh copy so it never tests a stale one).
import * as esbuild from 'esbuild';
import { copyFileSync, mkdirSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const page = join(root, 'src', 'cli', 'serve', 'page');
const out = resolve(process.argv[2] ?? join(root, 'dist', 'dashboard'));

mkdirSync(out, { recursive: true });
await esbuild.build({
  absWorkingDir: root,
  entryPoints: [join(page, 'main.ts')],
  outfile: join(out, 'app.js'),
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: 'chrome110',
  minify: true,
  legalComments: 'eof',
  logLevel: 'warning',
});
for (const file of ['index.html', 'app.css']) copyFileSync(join(page, file), join(out, file));
