/**
 * Test support for suites that run code in a real browser: Debian's `chromium` (installed by
 * `bash scripts/install-deps.sh`) driven by playwright-core.
 *
 * A suite bundles a page script from `test/fixtures/browser/` with esbuild (`scalems` resolves to the
 * core entry, `src/index.ts`, exactly what a browser bundler would take), serves it from a local HTTP
 * server (127.0.0.1 is a secure context: IndexedDB and the Web Locks API work there) and opens pages
 * of it. When Chromium or playwright-core is missing: with CI=true the tests FAIL, naming the script to
 * run; otherwise they are SKIPPED with a loud banner (as `services.ts` does for Slurm, MPI, Redis).
 *
 * Usage:
 *
 *   describeWithBrowser('in a browser', () => {
 *     const app = browserApp('test/fixtures/browser/app.ts');   // beforeAll: bundle, serve, launch; afterAll: close
 *     it('runs', async () => {
 *       const page = await app.page();
 *       expect(await page.evaluate(() => window.scalemsTest.something())).toEqual(...);
 *     });
 *   });
 */
import * as fs from 'node:fs';
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import * as path from 'node:path';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { INSTALL_DEPS_COMMAND, describeWhenAvailable } from './services';

const ROOT = path.resolve(__dirname, '..', '..');

/** Where Chromium is looked for: `$CHROMIUM_PATH` if set, else Debian's and Ubuntu's binaries. */
const CANDIDATES = process.env.CHROMIUM_PATH
  ? [process.env.CHROMIUM_PATH]
  : ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

export interface BrowserStatus {
  readonly available: boolean;
  /** the Chromium binary, or why the browser tests cannot run */
  readonly detail: string;
  readonly executablePath?: string;
}

/** Whether Chromium and playwright-core are here (no side effects). */
export function probeBrowser(): BrowserStatus {
  try {
    require.resolve('playwright-core');
  } catch {
    return { available: false, detail: 'playwright-core is not installed (npm install)' };
  }
  const found = CANDIDATES.find((p) => fs.existsSync(p));
  if (found === undefined)
    return { available: false, detail: `no Chromium binary (looked for ${CANDIDATES.join(', ')})` };
  return { available: true, detail: found, executablePath: found };
}

/**
 * `describe` that runs only where Chromium is available. Decided at collection time. When it is missing:
 * under CI=true the block becomes one failing test naming what to install; otherwise it is skipped with a
 * loud warning.
 */
export function describeWithBrowser(title: string, fn: () => void): void {
  const status = probeBrowser();
  const missing = {
    requirement: 'Chromium',
    failure:
      `${title}: a real browser is not available (${status.detail}). Install Chromium with ` +
      `\`${INSTALL_DEPS_COMMAND}\` (as root), or set CHROMIUM_PATH to a Chromium binary.`,
    warn: () => {
      const bar = '!'.repeat(78);
      console.warn(
        `\n${[
          bar,
          '!!  SKIPPING TESTS: a real browser (Chromium) is not available',
          `!!  skipped: ${title}`,
          `!!  reason: ${status.detail}`,
          `!!  install it with:   ${INSTALL_DEPS_COMMAND}      (as root)`,
          '!!  (with CI=true these tests fail instead of being skipped)',
          bar,
        ].join('\n')}\n`,
      );
    },
  };
  describeWhenAvailable(title, status.available ? [] : [missing], fn);
}

/** Bundles `entry` (a path from the repository root) for a browser; `scalems` is the core entry. */
export async function bundleForBrowser(entry: string): Promise<string> {
  // esbuild comes with tsx (a devDependency); its JS API bundles in a few hundred milliseconds.
  // Loaded when used (as playwright-core below): a machine without them skips rather than fails to load.
  const esbuild = require('esbuild') as typeof import('esbuild');
  const result = await esbuild.build({
    entryPoints: [path.resolve(ROOT, entry)],
    bundle: true,
    write: false,
    format: 'iife',
    platform: 'browser',
    target: 'chrome120',
    sourcemap: 'inline',
    alias: { scalems: path.join(ROOT, 'src', 'index.ts') },
    logLevel: 'silent',
  });
  return result.outputFiles[0]!.text;
}

export interface Served {
  /** `http://127.0.0.1:<port>/` */
  readonly url: string;
  close(): Promise<void>;
}

/** Serves `files` (path → content; `/` is `index.html`) from 127.0.0.1 on a free port. */
export async function serve(files: Readonly<Record<string, string>>): Promise<Served> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript' };
  const server = http.createServer((req, res) => {
    const name = (req.url ?? '/').split('?')[0] === '/' ? '/index.html' : (req.url ?? '/').split('?')[0]!;
    const body = files[name];
    if (body === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': `${types[path.extname(name)] ?? 'text/plain'}; charset=utf-8` });
    res.end(body);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** Launches headless Chromium (no sandbox: tests run as root in containers). */
export async function launchChromium(): Promise<Browser> {
  const status = probeBrowser();
  if (!status.available) throw new Error(`Chromium is not available: ${status.detail}`);
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  return chromium.launch({ executablePath: status.executablePath!, args: ['--no-sandbox'], timeout: 20_000 });
}

export interface BrowserApp {
  /** where the app is served */
  readonly url: string;
  /**
   * A new page (tab) of the app, loaded. Pages of one `context` share an origin's storage and locks, like
   * tabs of one browser profile; without one, each test gets a fresh context. With `origin` (`http://app.test`),
   * the page is loaded from there (the browser is routed to the same files): an origin other than 127.0.0.1's,
   * for example one that is not a secure context.
   */
  page(context?: BrowserContext, origin?: string): Promise<Page>;
  /** A fresh browser context (a profile of its own: its own IndexedDB and Web Locks). */
  context(): Promise<BrowserContext>;
}

/**
 * Registers `beforeAll`/`afterAll` hooks that bundle `entry`, serve it in an HTML page and launch Chromium;
 * each test opens pages of it. Call inside `describeWithBrowser`. The page's console errors are shown
 * with a failing test's output.
 */
export function browserApp(entry: string): BrowserApp {
  let served: Served | undefined;
  let browser: Browser | undefined;
  let files: Record<string, string> = {};
  const contexts: BrowserContext[] = [];
  beforeAll(async () => {
    const [script, launched] = await Promise.all([bundleForBrowser(entry), launchChromium()]);
    browser = launched;
    files = {
      '/index.html': '<!doctype html><meta charset="utf-8"><title>scalems test</title><script src="app.js"></script>',
      '/app.js': script,
    };
    served = await serve(files);
  }, 30_000);
  afterEach(async () => {
    for (const context of contexts.splice(0)) await context.close();
  });
  afterAll(async () => {
    await browser?.close();
    await served?.close();
  });
  const app: BrowserApp = {
    get url() {
      if (served === undefined) throw new Error('browserApp: the app is not served (beforeAll failed)');
      return served.url;
    },
    async context() {
      if (browser === undefined) throw new Error('browserApp: Chromium did not launch (beforeAll failed)');
      const context = await browser.newContext();
      contexts.push(context);
      return context;
    },
    async page(context, origin) {
      const page = await (context ?? (await app.context())).newPage();
      page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
      if (origin === undefined) {
        await page.goto(app.url);
        return page;
      }
      await page.route(`${origin}/**`, (route) => {
        const name = new URL(route.request().url()).pathname;
        const body = files[name === '/' ? '/index.html' : name];
        const type = name.endsWith('.js') ? 'text/javascript' : 'text/html';
        return body === undefined ? route.fulfill({ status: 404 }) : route.fulfill({ contentType: type, body });
      });
      await page.goto(`${origin}/`);
      return page;
    },
  };
  return app;
}
