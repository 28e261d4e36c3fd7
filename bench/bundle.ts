// The weight of scalems in a browser app: examples/browser-app.ts bundled for a browser (esbuild, minified) once
// against the package as a bundler resolves it (its "import" condition: the ES module build in dist/esm) and once
// from the TypeScript sources (`scalems` aliased to src/index.ts), raw and gzipped. The goal is a ratio of at most
// 1.1: the package costs a browser user what its code costs, with one copy of each dependency. The sources import
// fp-ts's CommonJS build (fp-ts/lib) where io-ts's ES module build imports fp-ts/es6, so that the bundle from
// sources carries both; the ES module build imports fp-ts/es6 (scripts/build-esm.mjs). A third bundle, from sources
// with fp-ts/lib aliased to fp-ts/es6, weighs the package against its code alone.
import { existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { gzipSync } from 'node:zlib';
import type { Plugin } from 'esbuild';

/** The repository: the nearest folder above this file with src/index.ts (this runs compiled, from build/bench). */
function repository(): string {
  let dir = __dirname;
  while (!existsSync(join(dir, 'src', 'index.ts'))) {
    if (dirname(dir) === dir) throw new Error('bench/bundle: the repository was not found above ' + __dirname);
    dir = dirname(dir);
  }
  return dir;
}

export interface BundleSize {
  readonly raw: number;
  readonly gzip: number;
  /** the builds of rxjs (dist/esm5, dist/cjs, ...) and fp-ts (es6, lib) in the bundle: one each means one copy */
  readonly builds: Readonly<Record<'rxjs' | 'fp-ts', readonly string[]>>;
}

/** `scalems` resolved as an installed package: from a folder whose node_modules/scalems is the repository. */
function asInstalled(root: string, installed: string): Plugin {
  return {
    name: 'scalems-as-installed',
    setup(build) {
      build.onResolve({ filter: /^scalems(\/|$)/ }, async (args) => {
        if (args.pluginData === 'as-installed') return undefined;
        const found = await build.resolve(args.path, {
          kind: args.kind,
          resolveDir: installed,
          pluginData: 'as-installed',
        });
        if (!found.path.startsWith(join(root, 'dist', 'esm')) && !found.path.includes('/dist/esm/'))
          throw new Error(`scalems resolved to ${found.path}, not the ES module build`);
        return { path: found.path };
      });
    },
  };
}

type From = 'package' | 'sources' | 'sources, one fp-ts';

async function bundle(root: string, from: From, installed: string): Promise<BundleSize> {
  const esbuild = require('esbuild') as typeof import('esbuild');
  const result = await esbuild.build({
    entryPoints: [join(root, 'examples', 'browser-app.ts')],
    bundle: true,
    write: false,
    minify: true,
    format: 'esm',
    platform: 'browser',
    target: 'es2022',
    metafile: true,
    logLevel: 'silent',
    ...(from === 'package'
      ? { plugins: [asInstalled(root, installed)] }
      : {
          alias: {
            scalems: join(root, 'src', 'index.ts'),
            ...(from === 'sources' ? {} : { 'fp-ts/lib': 'fp-ts/es6' }),
          },
        }),
  });
  const code = result.outputFiles[0]!.contents;
  const inputs = Object.keys(result.metafile.inputs);
  const builds = (name: string, depth: number): string[] => [
    ...new Set(inputs.flatMap((f) => f.split(`node_modules/${name}/`)[1]?.split('/').slice(0, depth).join('/') ?? [])),
  ];
  return {
    raw: code.length,
    gzip: gzipSync(code).length,
    builds: { rxjs: builds('rxjs', 2), 'fp-ts': builds('fp-ts', 1) },
  };
}

/** Both bundles of the example app. Needs the build (dist/esm): `npm run bench` makes it. */
export async function bundleSizes(): Promise<Record<From, BundleSize>> {
  const root = repository();
  if (!existsSync(join(root, 'dist', 'esm', 'index.mjs'))) throw new Error('dist/esm is missing: npm run build');
  const installed = mkdtempSync(join(tmpdir(), 'scalems-bundle-'));
  try {
    mkdirSync(join(installed, 'node_modules'));
    symlinkSync(root, join(installed, 'node_modules', 'scalems'));
    return {
      package: await bundle(root, 'package', installed),
      sources: await bundle(root, 'sources', installed),
      'sources, one fp-ts': await bundle(root, 'sources, one fp-ts', installed),
    };
  } finally {
    rmSync(installed, { recursive: true, force: true });
  }
}

const kb = (n: number): string => `${(n / 1024).toFixed(1)} KB`;

export async function benchBundle(): Promise<void> {
  const sizes = await bundleSizes();
  console.log('bundle: examples/browser-app.ts for a browser (esbuild, minified, ES module), raw / gzip');
  for (const [name, s] of [
    ['package (dist/esm)', sizes.package],
    ['sources (src/index.ts)', sizes.sources],
    ['sources, one fp-ts', sizes['sources, one fp-ts']],
  ] as const) {
    const builds = `rxjs ${s.builds.rxjs.join(' + ')}, fp-ts ${s.builds['fp-ts'].join(' + ')}`;
    console.log(`  ${name.padEnd(24)} ${kb(s.raw).padStart(9)} / ${kb(s.gzip).padStart(8)}   (${builds})`);
  }
  for (const against of ['sources', 'sources, one fp-ts'] as const) {
    const raw = (sizes.package.raw / sizes[against].raw).toFixed(3);
    const gzip = (sizes.package.gzip / sizes[against].gzip).toFixed(3);
    console.log(`  ratio package / ${against}: ${raw}x raw, ${gzip}x gzip (goal <= 1.1x)`);
  }
}
