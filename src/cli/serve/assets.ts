/**
 * The dashboard's page: `index.html`, `app.js` (the page's modules and @dagrejs/dagre, bundled by esbuild at build
 * time: `scripts/build-dashboard.mjs`) and `app.css`, shipped in the package under `dist/dashboard/`.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { CliError } from '../command';

export const ASSET_FILES = ['index.html', 'app.js', 'app.css'] as const;
export type AssetName = (typeof ASSET_FILES)[number];

const TYPES: Record<AssetName, string> = {
  'index.html': 'text/html; charset=utf-8',
  'app.js': 'text/javascript; charset=utf-8',
  'app.css': 'text/css; charset=utf-8',
};

export interface Asset {
  readonly type: string;
  readonly body: Buffer;
}

/**
 * Where the built page is: `dist/dashboard` beside `dist/src/cli/serve` (the package), or the repository's
 * `dist/dashboard` when this runs from the sources.
 */
export function defaultAssetsDir(): string {
  const root = path.resolve(__dirname, '..', '..', '..');
  const candidates = [path.join(root, 'dashboard'), path.join(root, 'dist', 'dashboard')];
  return candidates.find((dir) => fs.existsSync(path.join(dir, 'app.js'))) ?? candidates[0]!;
}

/**
 * Reads the page's files once (they are small); a missing one is a broken install or an unbuilt tree. With a token,
 * the page asks for its script and style sheet with it (the token is checked to be URL-safe characters only).
 */
export function loadAssets(dir: string = defaultAssetsDir(), token?: string): ReadonlyMap<string, Asset> {
  const assets = new Map<string, Asset>();
  for (const name of ASSET_FILES) {
    const file = path.join(dir, name);
    let body: Buffer;
    try {
      body = fs.readFileSync(file);
    } catch {
      throw new CliError(
        `the dashboard's page is missing (${file}): this scalems was not built with it. ` +
          'In a clone of scalems, run `npm run build`; an installed package that lacks it is broken: reinstall it.',
      );
    }
    if (name === 'index.html' && token !== undefined)
      body = Buffer.from(body.toString('utf8').replace(/"app\.(js|css)"/g, `"app.$1?token=${token}"`));
    assets.set(`/${name === 'index.html' ? '' : name}`, { type: TYPES[name], body });
  }
  return assets;
}
