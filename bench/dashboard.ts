// The dashboard (`scalems serve`) on a workflow of 100 000 tasks: the server's memory, the page's time to its first
// paint and to its first drawing of every task, the cost of each update in the page, and how responsive the page
// stays meanwhile. The server is the shipped command (dist/src/cli/main.js serve) in a process of its own, its memory
// read from /proc; the page runs in Debian's Chromium (playwright-core), and measures itself (performance.now around
// parsing and folding in each message, and each frame drawn). Responsiveness: the longest main-thread task the page
// ran during the updates (PerformanceObserver 'longtask') and the largest lateness of a 100 ms timer in the page
// (what a click or a keystroke would have waited at worst). Three rounds, each a fresh server and page.
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { from, lastValueFrom, count, map } from 'rxjs';
import type { Browser, Page } from 'playwright-core';
import { call, executor, inProcess, labelled, launch, openWorkflow, submitOn, type Task } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { median, spread } from './stats';

const N = Number(process.env.SCALEMS_BENCH_DASHBOARD_TASKS ?? 100_000);
const ROUNDS = 3;
/** tasks per update: submitted (they start and wait), then released (they succeed) */
const BATCH = 1_000;
const BATCHES = 3;

const simulate = async (i: number): Promise<number> => i;
const analyse = async (x: number): Promise<number> => x + 1;
let gate: Promise<void> = Promise.resolve();
const held = async (i: number): Promise<number> => {
  await gate;
  return i;
};

/** What the page exposes of its own measurements (src/cli/serve/page/main.ts, `DashboardStats`). */
interface PageStats {
  firstRender?: number;
  snapshotMs?: number;
  deltas: Array<{ tasks: number; applyMs: number }>;
  renders: number[];
  worst: Record<string, number>;
}
type Measured = Window & { scalemsDashboard?: { stats: PageStats }; __long: number[]; __late: number[] };

const CLI = join(__dirname, '..', '..', '..', 'dist', 'src', 'cli', 'main.js');
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Starts `scalems serve <dir>`; resolves with the process and its URL. */
async function serve(dir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, [CLI, 'serve', dir, '--poll', '250'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString()));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString()));
  for (let waited = 0; !/http:\/\/\S+/.test(out); waited += 50) {
    if (child.exitCode !== null || waited > 120_000) throw new Error(`scalems serve did not start: ${out}`);
    await sleep(50);
  }
  return { child, url: /http:\/\/\S+/.exec(out)![0] };
}

/** The resident memory of a process (MB), from /proc. */
function rssMB(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) / 1024;
}

/** The size of the first SSE message (the snapshot), in MB. */
function snapshotMB(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const events = new URL(url);
    events.pathname = '/api/events'; // (the token stays)
    const req = http.get(events.href, (res) => {
      let bytes = 0;
      let tail = '';
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        tail = (tail + c.toString('latin1')).slice(-4);
        if (bytes > 20 && tail.endsWith('\n\n') && !tail.startsWith('\n')) {
          req.destroy();
          resolve(bytes / 1e6);
        }
      });
    });
    req.on('error', (e) => ((e as { code?: string }).code === 'ECONNRESET' ? undefined : reject(e)));
  });
}

interface Round {
  rss: number;
  rssBase: number;
  snapshotMB: number;
  fcp: number;
  firstRender: number;
  snapshotMs: number;
  applyPer1000: number[];
  renders: number[];
  longest: number;
  lateness: number;
  /** the worst cost of each view during the updates */
  worst: Record<string, number>;
}

async function openPage(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
  await page.addInitScript(() => {
    const w = window as unknown as { __long: number[]; __late: number[] };
    w.__long = [];
    w.__late = [];
    new PerformanceObserver((list) => {
      for (const e of list.getEntries()) w.__long.push(e.duration);
    }).observe({ type: 'longtask', buffered: true });
    let last = performance.now();
    setInterval(() => {
      const now = performance.now();
      w.__late.push(now - last - 100);
      last = now;
    }, 100);
  });
  await page.goto(url);
  return page;
}

const shownTotal = (page: Page): Promise<number> =>
  page.evaluate(() => Number(document.querySelector('[data-testid="count-total"]')?.textContent ?? -1));

export async function benchDashboard(): Promise<void> {
  if (!existsSync(CLI)) throw new Error('dist/ is missing: npm run bench builds it');
  const { chromium } = require('playwright-core') as typeof import('playwright-core');
  const executablePath = [process.env.CHROMIUM_PATH, '/usr/bin/chromium', '/usr/bin/chromium-browser'].find(
    (p) => p !== undefined && existsSync(p),
  );
  if (executablePath === undefined) throw new Error('no Chromium (bash scripts/install-deps.sh installs it)');
  const root = mkdtempSync(join(tmpdir(), 'scalems-bench-dashboard-'));
  const small = join(root, '.scalems', 'one');
  const dir = join(root, '.scalems', 'big');
  const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
  try {
    // a workflow of one task: the server's memory without tasks
    const one = await openWorkflow({ name: 'one', store: sqliteStore(join(small, 'state.sqlite')) });
    await executor(launch(one, inProcess())).submit(simulate, 1);
    await one.close();

    // N tasks: N/2 members, each analysed (an edge per pair), labelled as ensembles are
    const t0 = performance.now();
    const wf = await openWorkflow({ name: 'big', store: sqliteStore(join(dir, 'state.sqlite')) });
    const rt = launch(wf, inProcess());
    const ex = executor(rt, { worker: { cores: 64 } });
    const done = await lastValueFrom(
      from(Array.from({ length: N / 2 }, (_, i) => i)).pipe(
        map((i) => call(simulate, i)),
        labelled((s) => `member-${String(s.args[0])}`),
        submitOn(ex),
        map((x) => call(analyse, x)),
        labelled((s) => `analysis-${String(s.args[0])}`),
        submitOn(ex),
        count(),
      ),
    );
    await wf.flushed();
    console.log(
      `dashboard: a workflow of ${(2 * done).toLocaleString('en')} tasks made in ` +
        `${Math.round(performance.now() - t0).toLocaleString('en')} ms; ${ROUNDS} rounds (fresh server and page), ` +
        'median [min–max]',
    );
    const updates = executor(rt, { worker: { cores: BATCH } });
    let next = N;
    const rounds: Round[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      const base = await serve(small);
      const rssBase = rssMB(base.child.pid!);
      base.child.kill();
      const { child, url } = await serve(dir);
      try {
        const size = await snapshotMB(url);
        const page = await openPage(browser, url);
        const total = next;
        await page.waitForFunction(
          () => (window as unknown as Measured).scalemsDashboard?.stats.firstRender !== undefined,
          undefined,
          {
            timeout: 120_000,
          },
        );
        if ((await shownTotal(page)) !== total) throw new Error(`the page shows ${await shownTotal(page)} tasks`);
        await sleep(500);
        const rss = rssMB(child.pid!);
        const loaded = await page.evaluate(() => ({
          fcp: performance.getEntriesByName('first-contentful-paint')[0]?.startTime ?? NaN,
          firstRender: (window as unknown as Measured).scalemsDashboard!.stats.firstRender!,
          snapshotMs: (window as unknown as Measured).scalemsDashboard!.stats.snapshotMs!,
        }));
        await page.evaluate(() => {
          const w = window as unknown as { __long: number[]; __late: number[] };
          w.__long.length = 0;
          w.__late.length = 0;
          (window as unknown as Measured).scalemsDashboard!.stats.deltas.length = 0;
          (window as unknown as Measured).scalemsDashboard!.stats.renders.length = 0;
          (window as unknown as Measured).scalemsDashboard!.stats.worst = {};
        });
        // updates: BATCH new tasks appear (waiting), then all succeed; BATCHES times
        for (let b = 0; b < BATCHES; b++) {
          let open!: () => void;
          gate = new Promise((r) => (open = r));
          const batch: Array<Task<number>> = [];
          for (let i = 0; i < BATCH; i++) batch.push(updates.submit(held, next++));
          await sleep(1_500); // their records (in flight) reach the store within 1 s
          open();
          await Promise.all(batch);
          await wf.flushed();
          const want = next;
          for (let waited = 0; (await shownTotal(page)) !== want || waited < 300; waited += 100) {
            if (waited > 60_000) throw new Error('the page did not catch up');
            await sleep(100);
          }
        }
        await sleep(1_000);
        const measured = await page.evaluate(() => {
          const w = window as unknown as { __long: number[]; __late: number[] };
          return {
            deltas: (window as unknown as Measured).scalemsDashboard!.stats.deltas,
            renders: (window as unknown as Measured).scalemsDashboard!.stats.renders,
            worst: (window as unknown as Measured).scalemsDashboard!.stats.worst,
            longest: Math.max(0, ...w.__long),
            lateness: Math.max(0, ...w.__late),
          };
        });
        rounds.push({
          rss,
          rssBase,
          snapshotMB: size,
          ...loaded,
          applyPer1000: measured.deltas.filter((d) => d.tasks > 0).map((d) => (d.applyMs * 1000) / d.tasks),
          renders: measured.renders,
          longest: measured.longest,
          lateness: measured.lateness,
          worst: measured.worst,
        });
        await page.close();
      } finally {
        child.kill();
      }
    }
    await wf.close();
    const f0 = (x: number): string => x.toFixed(0);
    const f1 = (x: number): string => x.toFixed(1);
    const all = <K extends keyof Round>(k: K): Round[K][] => rounds.map((r) => r[k]);
    console.log(
      `  server RSS: ${spread(all('rss'), f0)} MB with ${N.toLocaleString('en')} tasks ` +
        `(${spread(all('rssBase'), f0)} MB with 1 task); snapshot ${spread(all('snapshotMB'), f1)} MB of JSON`,
    );
    console.log(
      `  page: first contentful paint ${spread(all('fcp'), f0)} ms; ` +
        `every task drawn ${spread(all('firstRender'), f0)} ms ` +
        `after navigation (snapshot parsed and folded in: ${spread(all('snapshotMs'), f0)} ms)`,
    );
    const apply = rounds.map((r) => median(r.applyPer1000));
    const frame = rounds.map((r) => median(r.renders));
    const worstFrame = rounds.map((r) => Math.max(...r.renders));
    console.log(
      `  per update (${BATCHES} x ${BATCH} tasks appearing, then succeeding): ` +
        `${spread(apply, f1)} ms to parse and fold in 1 000 changed tasks; ` +
        `a frame ${spread(frame, f1)} ms (median), ${spread(worstFrame, f0)} ms (worst)`,
    );
    const views = ['summary', 'list', 'stream', 'graph'].map(
      (v) =>
        `${v} ${spread(
          rounds.map((r) => r.worst[v] ?? 0),
          f0,
        )}`,
    );
    console.log(`  worst drawing of each view during the updates (ms): ${views.join(', ')}`);
    console.log(
      `  responsiveness during updates: longest task ${spread(all('longest'), f0)} ms; a 100 ms timer late by at ` +
        `most ${spread(all('lateness'), f0)} ms`,
    );
  } finally {
    await browser.close();
    rmSync(root, { recursive: true, force: true });
  }
}

if (require.main === module) void benchDashboard();
