// `scalems serve`'s page in a real browser (Debian's Chromium through playwright-core, set up as for the store's
// browser tests: test/support/browser.ts): it loads, its counts are those of `scalems status --json`, it follows a
// workflow while it runs, a task's page shows its error and stderr, and HTML in a label or an error stays text.
// With SCALEMS_SCREENSHOT=1 it also writes the README's screenshot, docs/dashboard.png.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Browser, Page } from 'playwright-core';
import { defineTask, executable, executor, inProcess, launch, openWorkflow, type Task, type Workflow } from 'scalems';
import { processes, sqliteStore } from 'scalems/node';
import { startDashboard, type Dashboard } from '../src/cli/serve/server';
import { describeWithBrowser, launchChromium } from './support/browser';
import { buildPage, statusJson } from './support/dashboard';

const LABEL = '<img src=x onerror=window.__pwned=1>';
const MESSAGE = '<script>window.__pwned=2</script> boom';
const MEMBERS = 12;

const gates = new Map<number, () => void>();
const opened = new Set<number>();
const member = defineTask('dashboard-browser.member', async (i: number) => {
  if (!opened.has(i)) await new Promise<void>((resolve) => gates.set(i, resolve));
  return i;
});
const analyse = defineTask('dashboard-browser.analyse', async (i: number) => i + 1);
const broken = defineTask('dashboard-browser.broken', async () => {
  throw new Error(MESSAGE);
});
const release = (i: number): void => {
  opened.add(i);
  gates.get(i)?.();
};

declare global {
  interface Window {
    __pwned?: number;
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** The counts the page shows, per state, and its total. */
async function pageCounts(page: Page): Promise<{ total: number; counts: Record<string, number> }> {
  return page.evaluate(() => {
    const counts: Record<string, number> = {};
    for (const el of document.querySelectorAll('[data-testid^="count-"]')) {
      const state = el.getAttribute('data-testid')!.slice('count-'.length);
      counts[state] = Number(el.textContent);
    }
    const { total = -1, ...rest } = counts;
    return { total, counts: rest };
  });
}

/** Waits until the page's counts equal `scalems status --json`'s, read at the same moment; returns them. */
async function countsAgree(page: Page, dir: string, also: (c: Record<string, number>) => boolean = () => true) {
  let last: unknown;
  for (const started = Date.now(); Date.now() - started < 15_000; await sleep(100)) {
    const [shown, status] = await Promise.all([pageCounts(page), statusJson(dir)]);
    last = { shown, status: { total: status.total, counts: status.counts } };
    if (
      shown.total === status.total &&
      JSON.stringify(shown.counts) === JSON.stringify(status.counts) &&
      also(shown.counts)
    )
      return shown.counts;
  }
  throw new Error(`the page's counts never agreed with scalems status --json: ${JSON.stringify(last)}`);
}

describeWithBrowser('scalems serve in a real browser (Chromium)', () => {
  let root: string;
  let dir: string;
  let assetsDir: string;
  let wf: Workflow;
  let dashboard: Dashboard;
  let browser: Browser;
  let members: Array<Task<number>> = [];
  let analyses: Array<Task<number>> = [];
  let bad: Task<unknown>;
  let noisy: Task<unknown>;

  beforeAll(async () => {
    assetsDir = buildPage();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-dashboard-browser-'));
    dir = path.join(root, '.scalems', 'ensemble');
    wf = await openWorkflow({ name: 'ensemble', store: sqliteStore(path.join(dir, 'state.sqlite')) });
    const md = executor(launch(wf, inProcess()), { worker: { cores: 4 } });
    const an = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    const sh = executor(launch(wf, processes({ root: path.join(root, '.scalems') })), { worker: { cores: 1 } });
    // first: the members hold every core of md until released, and md admits in order
    bad = md.submit(broken);
    bad.label = LABEL;
    members = Array.from({ length: MEMBERS }, (_, i) => {
      const t = md.submit(member, i);
      t.label = `member-${i}`;
      return t;
    });
    analyses = members.map((m, i) => {
      const t = an.submit(analyse, m);
      t.label = `analysis-${i}`;
      return t;
    });
    noisy = sh.submit(executable(['bash', '-c', 'echo "working"; echo "<b>bold</b> failure" >&2; exit 3']));
    noisy.label = 'noisy';
    await Promise.allSettled([bad, noisy]);
    await sleep(1200); // the running members' records reach the store (in-flight changes wait up to 1 s)
    await wf.flushed();
    [dashboard, browser] = await Promise.all([
      startDashboard({ file: path.join(dir, 'state.sqlite'), name: 'ensemble', pollMs: 100, assetsDir }),
      launchChromium(),
    ]);
  }, 60_000);

  afterAll(async () => {
    for (let i = 0; i < MEMBERS; i++) release(i);
    await Promise.allSettled([...members, ...analyses]);
    await wf?.close();
    await dashboard?.close();
    await browser?.close();
    for (const d of [root, assetsDir]) if (d !== undefined) fs.rmSync(d, { recursive: true, force: true });
  });

  const openPage = async (hash = ''): Promise<Page> => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('pageerror', (error) => console.error(`page error: ${error.message}`));
    await page.goto(`${dashboard.url}${hash}`);
    return page;
  };

  it('loads, and shows the counts scalems status --json gives', async () => {
    const page = await openPage();
    const counts = await countsAgree(page, dir);
    expect(counts).toMatchObject({ failed: 2, running: 4 });
    expect(await page.locator('#connection').textContent()).toBe('live');
    expect(await page.locator('h1').textContent()).toBe('workflow ensemble');
    await page.close();
  });

  it('follows the workflow while it runs: deltas, not reloads, until every member is done', async () => {
    const page = await openPage();
    await countsAgree(page, dir);
    const seqBefore = await page.evaluate(() => window.scalemsDashboard.model.seq);
    const grouped = await openPage('#/?group=prefix'); // its groups are counted change by change
    await countsAgree(grouped, dir);
    for (let i = 0; i < MEMBERS / 2; i++) release(i);
    await Promise.all(members.slice(0, MEMBERS / 2));
    await countsAgree(page, dir, (c) => c.succeeded! >= MEMBERS);
    if (process.env.SCALEMS_SCREENSHOT === '1') {
      // the graph and the stream are drawn a little behind the counts
      await page.waitForFunction(() => window.scalemsDashboard.stats.drawn === window.scalemsDashboard.model.version);
      await page.screenshot({ path: path.join(__dirname, '..', 'docs', 'dashboard.png') });
    }
    for (let i = MEMBERS / 2; i < MEMBERS; i++) release(i);
    await Promise.all(analyses);
    await wf.flushed();
    const done = await countsAgree(page, dir, (c) => c.succeeded === 2 * MEMBERS);
    expect(done).toMatchObject({ succeeded: 2 * MEMBERS, failed: 2, running: 0, ready: 0 });
    const stats = await page.evaluate(() => ({
      seq: window.scalemsDashboard.model.seq,
      deltas: window.scalemsDashboard.stats.deltas.length,
      snapshots: window.scalemsDashboard.stats.snapshots,
    }));
    expect(stats.seq).toBeGreaterThan(seqBefore);
    expect(stats.deltas).toBeGreaterThan(0);
    expect(stats.snapshots).toBe(1);
    expect(await page.getByTestId('eta').textContent()).toBe('nothing left to run');

    // the task stream this page placed change by change holds the attempts a fresh page packs at once, and no two
    // attempts of one lane overlap
    const drawn = (p: Page) =>
      p.waitForFunction(() => window.scalemsDashboard.stats.drawn === window.scalemsDashboard.model.version);
    await drawn(page);
    const fresh = await openPage();
    await countsAgree(fresh, dir, (c) => c.succeeded === 2 * MEMBERS);
    await drawn(fresh);
    const [live, packed] = await Promise.all(
      [page, fresh].map((p) => p.evaluate(() => window.scalemsDashboard.lanes())),
    );
    const bars = (lanes: typeof live) =>
      lanes.flatMap((l) => l.bars.map((b) => JSON.stringify([l.executor, ...b]))).sort();
    expect(bars(live)).toEqual(bars(packed));
    expect(bars(live)).toHaveLength(2 * MEMBERS + 2); // every member, analysis, the broken task and the program
    for (const lane of [...live, ...packed]) {
      const sorted = [...lane.bars].sort((a, b) => a[1] - b[1]);
      for (let i = 1; i < sorted.length; i++) expect(sorted[i]![1]).toBeGreaterThanOrEqual(sorted[i - 1]![2]!);
    }
    // and the groups counted change by change are those a fresh page counts at once
    const groups = async (p: Page): Promise<string[]> => {
      await drawn(p);
      return p
        .locator('#graph g.node')
        .evaluateAll((nodes) =>
          nodes
            .map(
              (n) =>
                `${n.getAttribute('class')}: ${n.textContent} ` +
                [...n.querySelectorAll('g.mix title')].map((t) => t.textContent).join(', '),
            )
            .sort(),
        );
    };
    const again = await openPage('#/?group=prefix');
    await countsAgree(again, dir, (c) => c.succeeded === 2 * MEMBERS);
    const counted = await groups(grouped);
    expect(counted).toEqual(await groups(again));
    expect(counted).toContainEqual(
      expect.stringMatching(new RegExp(`^node group st-succeeded: member…: ${MEMBERS} tasks.* ${MEMBERS} succeeded$`)),
    );
    await Promise.all([again.close(), grouped.close()]);
    await fresh.close();
    await page.close();
  });

  it('shows HTML from a label and an error message as text: nothing of it runs or becomes an element', async () => {
    const page = await openPage('#/?state=failed');
    await page.getByText('tasks (2 of', { exact: false }).waitFor();
    const row = page.locator(`a.row[data-id="${bad.id}"]`);
    expect(await row.locator('.label').textContent()).toBe(LABEL);
    expect(await row.locator('.error').textContent()).toBe(`Error: ${MESSAGE}`);
    // the graph's node shows it as text too (up to its width)
    expect(await page.locator('#graph text', { hasText: '<img src=x' }).count()).toBe(1);
    await row.click();
    await page.getByTestId('error-message').waitFor();
    expect(page.url()).toContain(`#/task/${encodeURIComponent(bad.id)}`);
    expect(await page.getByTestId('error-message').textContent()).toBe(MESSAGE);
    expect(await page.locator('#task h2').textContent()).toBe(`failed ${LABEL}`);
    expect(await page.evaluate(() => document.querySelectorAll('img, script:not([src])').length)).toBe(0);
    expect(await page.evaluate(() => window.__pwned)).toBeUndefined();
    await page.close();
  });

  it('a task’s page, from a link that can be shared: its error, stderr, stdout and attempt', async () => {
    const page = await openPage(`#/task/${encodeURIComponent(noisy.id)}`);
    await page.getByTestId('stderr').waitFor();
    expect(await page.getByTestId('error-name').textContent()).toBe('ExecutableFailedError');
    expect(await page.getByTestId('error-message').textContent()).toContain('exited with code 3');
    expect(await page.getByTestId('stderr').textContent()).toBe('<b>bold</b> failure\n');
    expect(await page.getByTestId('stdout').textContent()).toBe('working\n');
    expect(await page.locator('#task b').count()).toBe(0);
    expect(await page.locator('table.attempts td').first().textContent()).toBe('1');
    await page.getByText('← all tasks').click();
    await page.locator('#tasks').waitFor();
    expect(await page.locator('#task').isHidden()).toBe(true);
    await page.close();
  });

  it('filters by state, executor and label text, each kept in the URL', async () => {
    const page = await openPage();
    await countsAgree(page, dir);
    await page.getByLabel('label text').fill('analysis-1');
    await page.waitForFunction(() => location.hash.includes('q=analysis-1'));
    // analysis-1, analysis-10, analysis-11
    await page.getByText('tasks (3 of', { exact: false }).waitFor();
    const shared = page.url();
    const other = await browser.newPage();
    await other.goto(shared);
    await other.getByText('tasks (3 of', { exact: false }).waitFor();
    expect(await other.getByLabel('label text').inputValue()).toBe('analysis-1');
    await other.close();
    await page.goto(`${dashboard.url}#/?state=succeeded&executor=${encodeURIComponent(members[0]!.record!.executor!)}`);
    await page.getByText(`tasks (${MEMBERS} of`, { exact: false }).waitFor();
    await page.close();
  });

  it('draws the task graph per task, or grouped by label prefix, and a task stream lane per slot', async () => {
    const page = await openPage();
    await countsAgree(page, dir);
    await page.waitForFunction(() => document.querySelectorAll('#graph g.node').length > 0);
    const total = 2 * MEMBERS + 2;
    expect(await page.locator('#graph g.node').count()).toBe(total);
    expect(await page.locator('#graph path.edge').count()).toBe(MEMBERS);
    expect(await page.locator(`#graph g.node.st-failed`).count()).toBe(2);
    // 4 cores ran the members and the broken task, 2 the analyses, 1 the program: lanes as many as ran at once
    expect(await page.locator('#stream .note').textContent()).toMatch(/^\d+ lanes over 3 executors$/);
    await page.goto(`${dashboard.url}#/?group=prefix`);
    await page.waitForFunction(() => document.querySelectorAll('#graph g.node.group').length > 0);
    const groups = await page.locator('#graph g.node text.text').allTextContents();
    expect(groups.sort()).toEqual(['<img src=x onerror=wind…', 'analysis…', 'member…', 'noisy…'].sort());
    expect(await page.locator('#graph path.edge').count()).toBe(1);
    await page.close();
  });
});

describeWithBrowser('scalems serve on a larger workflow (Chromium)', () => {
  const TASKS = 2_000;
  let root: string;
  let assetsDir: string;
  let dashboard: Dashboard;
  let browser: Browser;

  beforeAll(async () => {
    assetsDir = buildPage();
    root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-dashboard-large-'));
    const file = path.join(root, '.scalems', 'large', 'state.sqlite');
    const wf = await openWorkflow({ name: 'large', store: sqliteStore(file) });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    const tasks = Array.from({ length: TASKS / 2 }, (_, i) => {
      const m = ex.submit(analyse, i);
      m.label = `replica-${i}`;
      const a = ex.submit(analyse, m);
      a.label = `score-${i}`;
      return a;
    });
    await Promise.all(tasks);
    await wf.close();
    [dashboard, browser] = await Promise.all([
      startDashboard({ file, name: 'large', pollMs: 100, assetsDir }),
      launchChromium(),
    ]);
  }, 60_000);

  afterAll(async () => {
    await dashboard?.close();
    await browser?.close();
    for (const d of [root, assetsDir]) if (d !== undefined) fs.rmSync(d, { recursive: true, force: true });
  });

  it('keeps only the rows in view in the page, and groups the graph by label prefix', async () => {
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    await page.goto(dashboard.url);
    await page.getByText(`tasks (${TASKS} of ${TASKS})`).waitFor();
    const rows = await page.locator('#tasks a.row').count();
    expect(rows).toBeGreaterThan(10);
    expect(rows).toBeLessThan(100);
    // scrolled to the end, the last task is there, and still only a screenful of rows
    const last = await page.evaluate(() => [...window.scalemsDashboard.model.rows.values()].at(-1)!.label!);
    await page.locator('#tasks .viewport').evaluate((el) => (el.scrollTop = el.scrollHeight));
    await page.locator('#tasks a.row .label', { hasText: new RegExp(`^${last}$`) }).waitFor();
    expect(await page.locator('#tasks a.row').count()).toBeLessThan(100);
    // more than 150 tasks: one node per label prefix, one edge between them
    await page.waitForFunction(() => document.querySelectorAll('#graph g.node.group').length > 0);
    expect((await page.locator('#graph g.node text.text').allTextContents()).sort()).toEqual(['replica…', 'score…']);
    expect(await page.locator('#graph path.edge').count()).toBe(1);
    expect(await page.locator('#graph .note').textContent()).toMatch(/^2000 tasks in 2 groups by label prefix/);
    // a click on a group filters the list by it
    await page.locator('#graph g.node', { hasText: 'score…' }).click();
    await page.getByText(`tasks (${TASKS / 2} of ${TASKS})`).waitFor();
    expect(page.url()).toContain('q=score');
    await page.close();
  });
});
