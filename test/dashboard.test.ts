// `scalems serve` without a browser: what it serves, that it pushes only what changed, who may read it, and its
// options and errors. The page itself is tested in a real browser: test/dashboard-browser.test.ts.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { defineTask, executable, executor, inProcess, InvalidOptionsError, launch, openWorkflow } from 'scalems';
import { processes, sqliteStore } from 'scalems/node';
import { startDashboard, type Dashboard } from '../src/cli/serve/server';
import type { DeltaMessage, SnapshotMessage, TaskDetail } from '../src/cli/serve/protocol';
import { buildPage, cli, get, openEvents, serveCli, statusJson } from './support/dashboard';
import { decodeRecord, encodeRecord } from '../src/store/record-codec';
import { KV_CHANGED_SQL } from '../src/store/sqlite-writer';
import { StoreSource } from '../src/cli/serve/source';
import { WORKFLOW_KEY } from '../src/store/store';
import type { TaskRecord } from '../src/store/state';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const square = defineTask('dashboard-test.square', async (n: number) => n * n);
const slow = defineTask('dashboard-test.slow', async (n: number, ms: number) => {
  await sleep(ms);
  return n;
});
let flakyCalls = 0;
const flaky = defineTask('dashboard-test.flaky', async () => {
  await sleep(1300);
  if (++flakyCalls === 1) throw new Error('first attempt fails');
  return 'ok';
});

let root: string;
let assetsDir: string;
const dirs: string[] = [];
const open: Dashboard[] = [];

beforeAll(() => {
  assetsDir = buildPage();
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-dashboard-'));
}, 60_000);
afterEach(async () => {
  for (const d of open.splice(0)) await d.close();
});
afterAll(() => {
  for (const d of [root, assetsDir, ...dirs]) fs.rmSync(d, { recursive: true, force: true });
});

/** A workflow on a SQLite store in a fresh directory, with an in-process executor. */
async function workflowIn(name: string) {
  const dir = path.join(root, name);
  const file = path.join(dir, '.scalems', name, 'state.sqlite');
  const wf = await openWorkflow({ name, store: sqliteStore(file) });
  const rt = launch(wf, inProcess());
  const ex = executor(rt, { worker: { cores: 4 } });
  return { dir, file, wf, rt, ex };
}

async function dashboard(file: string, options: Partial<Parameters<typeof startDashboard>[0]> = {}) {
  const d = await startDashboard({ file, name: 'x', pollMs: 50, assetsDir, ...options });
  open.push(d);
  return d;
}

/** `path` on the dashboard at `url`, its token kept. */
function at(url: string, path: string): string {
  const u = new URL(url);
  u.pathname = `/${path}`;
  return u.href;
}

describe('scalems serve', () => {
  it('prints its URL on 127.0.0.1, serves the page, and its snapshot holds every task that status counts', async () => {
    const { dir, wf, ex } = await workflowIn('basic');
    await Promise.all(Array.from({ length: 12 }, (_, i) => ex.submit(square, i)));
    await wf.close();
    const served = await serveCli(dir, []);
    try {
      expect(served.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/\?token=[A-Za-z0-9_-]{32}$/);
      expect(served.out()).toContain('workflow basic (12 tasks');
      expect(served.out()).toContain('The token in this URL was made for this run');
      const page = await get(served.url);
      expect(page.status).toBe(200);
      expect(page.headers['content-type']).toMatch(/text\/html/);
      expect(page.headers['content-security-policy']).toContain("script-src 'self'");
      expect(page.body).toMatch(/src="app\.js\?token=[A-Za-z0-9_-]{32}"/);
      expect((await get(at(served.url, 'app.js'))).status).toBe(200);
      const events = await openEvents(at(served.url, 'api/events'));
      const first = await events.waitFor(() => true);
      events.close();
      expect(first.event).toBe('snapshot');
      const snapshot = JSON.parse(first.data) as SnapshotMessage;
      expect(snapshot.workflow).toBe('basic');
      const status = await statusJson(dir);
      expect(snapshot.tasks).toHaveLength(status.total);
      expect(snapshot.tasks.filter((t) => t.state === 'succeeded')).toHaveLength(status.counts.succeeded!);
    } finally {
      expect((await served.stop()).code).toBe(0);
    }
  });

  it('pushes, while the workflow runs, deltas that hold only the tasks that changed, never the whole state', async () => {
    const { file, wf, ex } = await workflowIn('deltas');
    await Promise.all(Array.from({ length: 40 }, (_, i) => ex.submit(square, i)));
    await wf.flushed();
    const d = await dashboard(file); // the workflow holds the store's lock: the server reads without it
    const events = await openEvents(at(d.url, 'api/events'));
    const snapshot = JSON.parse((await events.waitFor((m) => m.event === 'snapshot')).data) as SnapshotMessage;
    expect(snapshot.tasks).toHaveLength(40);

    // a workflow writes the changes of tasks in flight within 1 s (IN_FLIGHT_DELAY_MS): these run longer
    const late = [ex.submit(slow, 1, 1500), ex.submit(slow, 2, 1500)];
    await Promise.all(late);
    await wf.flushed();
    await events.waitFor((m) => {
      if (m.event !== 'delta') return false;
      const delta = JSON.parse(m.data) as DeltaMessage;
      return delta.tasks.some((t) => t.id === late[1]!.id && t.state === 'succeeded');
    });
    const deltas = events.messages.filter((m) => m.event === 'delta').map((m) => JSON.parse(m.data) as DeltaMessage);
    const lateIds = new Set(late.map((t) => t.id));
    for (const delta of deltas) {
      expect(delta.tasks.length).toBeGreaterThan(0);
      expect(delta.tasks.length).toBeLessThanOrEqual(2);
      for (const t of delta.tasks) expect(lateIds.has(t.id)).toBe(true);
    }
    // the page saw them run: a delta with them running, then one with them done
    expect(deltas.some((delta) => delta.tasks.some((t) => t.state === 'running'))).toBe(true);
    expect(deltas.map((delta) => delta.seq)).toEqual([...deltas.map((delta) => delta.seq)].sort((a, b) => a - b));

    // nothing committed: a poll sends nothing
    const before = events.messages.length;
    d.pollNow();
    d.pollNow();
    await sleep(200);
    expect(events.messages.length).toBe(before);
    events.close();
    await wf.close();
  });

  it('keeps the attempts it saw end: a retried attempt stays in the task’s row with its start and end', async () => {
    const { file, wf, rt } = await workflowIn('retried');
    // each attempt runs longer than a workflow waits to write a change of a task in flight (1 s)
    const ex = executor(rt, { task: { retries: { max: 1, backoff: 1.2 } } });
    const d = await dashboard(file);
    const task = ex.submit(flaky);
    expect(await task).toBe('ok');
    await wf.flushed();
    await sleep(200);
    d.pollNow();
    const row = d.source.row(task.id)!;
    expect(row.attempts).toBe(2);
    expect(row.past).toHaveLength(1);
    const [start, end] = row.past![0]!;
    expect(end).not.toBeNull();
    expect(end! - start).toBeGreaterThanOrEqual(1250);
    expect(row.startedAt!).toBeGreaterThanOrEqual(end!);
    await wf.close();
  });

  it('says which tasks went away (a record deleted by hand), and sends nothing for a rewrite that changes no shown field', async () => {
    const { file, wf, ex } = await workflowIn('removed');
    const [a, b] = [ex.submit(square, 5), ex.submit(square, 6)];
    await Promise.all([a, b]);
    await wf.close();
    const d = await dashboard(file);
    const events = await openEvents(at(d.url, 'api/events'));
    await events.waitFor((m) => m.event === 'snapshot');
    const Database = require('better-sqlite3') as typeof import('better-sqlite3');
    const db = new Database(file);
    try {
      // the same record, its (unshown) pending count changed: a new value, no change to show
      const text = db.prepare('SELECT value FROM scalems_kv WHERE key = ?').pluck().get(`task:${a.id}`) as string;
      const record = { ...(decodeRecord(`task:${a.id}`, text) as unknown as TaskRecord), pending: 7 };
      db.prepare('UPDATE scalems_kv SET value = ? WHERE key = ?').run(
        encodeRecord(`task:${a.id}`, record),
        `task:${a.id}`,
      );
      db.exec(KV_CHANGED_SQL); // as every writer of the key-value table counts its change (see FOLD_SQL)
      d.pollNow();
      db.prepare('DELETE FROM scalems_kv WHERE key = ?').run(`task:${b.id}`);
      db.exec(KV_CHANGED_SQL);
    } finally {
      db.close();
    }
    const gone = await events.waitFor((m) => m.event === 'delta');
    events.close();
    expect(JSON.parse(gone.data)).toMatchObject({ tasks: [], removed: [b.id] });
    expect(events.messages.filter((m) => m.event === 'delta')).toHaveLength(1);
    expect(d.source.row(b.id)).toBeUndefined();
    expect(d.source.size).toBe(1);
  });

  it('serves a task’s page: its error, the tail of its stderr and stdout, and the tasks downstream', async () => {
    const dir = path.join(root, 'detail');
    const file = path.join(dir, '.scalems', 'detail', 'state.sqlite');
    const wf = await openWorkflow({ name: 'detail', store: sqliteStore(file) });
    const ex = executor(launch(wf, processes({ root: path.join(dir, '.scalems') })));
    const writes = ex.submit(executable(['bash', '-c', 'seq 1 500; echo "<b>it broke</b>" >&2; exit 4']));
    writes.label = 'writes';
    await expect(writes).rejects.toThrow(/exited with code 4/);
    await wf.close();
    const d = await dashboard(file);
    const res = await get(at(d.url, `api/task/${encodeURIComponent(writes.id)}`));
    expect(res.status).toBe(200);
    const detail = JSON.parse(res.body) as TaskDetail;
    expect(detail.row).toMatchObject({ id: writes.id, label: 'writes', state: 'failed', attempts: 1 });
    expect(detail.error).toMatchObject({ name: 'ExecutableFailedError', code: 'EXECUTABLE_FAILED' });
    expect(detail.outputAttempt).toBe(1);
    const stderr = detail.output.find((o) => o.stream === 'stderr')!;
    expect(stderr.text).toBe('<b>it broke</b>\n');
    const stdout = detail.output.find((o) => o.stream === 'stdout')!;
    expect(stdout.text.split('\n').filter(Boolean)).toHaveLength(60); // the tail, not the whole file
    expect(stdout.text.endsWith('500\n')).toBe(true);
    expect(stdout.size).toBeGreaterThan(stdout.text.length);
    expect((await get(at(d.url, 'api/task/nope'))).status).toBe(404);
  });

  it('a task’s page: a FIFO as its stdout, a long line, a malformed id, the store gone: each answered, none hangs', async () => {
    const dir = path.join(root, 'odd-files');
    const file = path.join(dir, '.scalems', 'odd', 'state.sqlite');
    const wf = await openWorkflow({ name: 'odd', store: sqliteStore(file) });
    const ex = executor(launch(wf, processes({ root: path.join(dir, '.scalems') })));
    const long = ex.submit(executable(['sh', '-c', 'head -c 200000 /dev/zero | tr "\\0" x; echo']));
    await long;
    const fifo = ex.submit(executable(['sh', '-c', 'rm stdout; mkfifo stdout']));
    await fifo;
    await wf.close();
    const d = await dashboard(file);
    // before: one line of 200 000 bytes came whole (documented: at most 32 KiB)
    const longDetail = JSON.parse((await get(at(d.url, `api/task/${long.id}`))).body) as TaskDetail;
    expect(Buffer.byteLength(longDetail.output.find((o) => o.stream === 'stdout')!.text)).toBe(32 * 1024);
    // before: opening the FIFO held the server's event loop: no page, no events, until a signal
    const fifoDetail = await get(at(d.url, `api/task/${fifo.id}`));
    expect(fifoDetail.status).toBe(200);
    expect((JSON.parse(fifoDetail.body) as TaskDetail).output.find((o) => o.stream === 'stdout')?.text).toBe('');
    // before: 500 "URI malformed"
    expect((await get(at(d.url, 'api/task/%E0%A4%A'))).status).toBe(400);
    // before: 500 with SQLite's "The database connection is not open"
    fs.renameSync(file, `${file}.away`);
    await new Promise<void>((r) => setTimeout(r, 300));
    d.pollNow();
    const gone = await get(at(d.url, `api/task/${fifo.id}`));
    expect(gone.status).toBe(503);
    expect(JSON.parse(gone.body)).toMatchObject({ error: expect.stringMatching(/^cannot read the store: /) });
    fs.renameSync(`${file}.away`, file);
  });

  it('lists a task’s inputs and the tasks that take it as input', async () => {
    const { file, wf, ex } = await workflowIn('edges');
    const a = ex.submit(square, 3);
    const b = ex.submit(slow, a, 1);
    const c = ex.submit(slow, a, 2);
    await Promise.all([b, c]);
    await wf.close();
    const d = await dashboard(file);
    const detail = JSON.parse((await get(at(d.url, `api/task/${a.id}`))).body) as TaskDetail;
    expect([...detail.downstream].sort()).toEqual([b.id, c.id].sort());
    expect(d.source.row(b.id)!.inputs).toEqual([a.id]);
  });
});

describe('the store as scalems serve reads it', () => {
  const record = (id: string, state: TaskRecord['state'], attempts = 1): [string, TaskRecord] => [
    `task:${id}`,
    { id, kind: 'function', name: 'f', args: [], requirements: {}, inputs: [], state, attempts, pending: 0 },
  ];
  const states = (source: StoreSource): string[] =>
    source
      .all()
      .map((r) => `${r.id}:${r.state}:${r.attempts}`)
      .sort();

  it('follows records appended to the log, a fold, records appended after it, and a delete', async () => {
    const file = path.join(root, 'follows', 'state.sqlite');
    const store = sqliteStore(file);
    try {
      await store.set(WORKFLOW_KEY, { name: 'follows' });
      await store.setRecords!([record('a', 'running'), record('b', 'running')]);
      const source = await StoreSource.open(file, 'follows');
      expect(states(source)).toEqual(['a:running:1', 'b:running:1']);
      expect(source.changes()).toBeUndefined(); // nothing committed since

      // appended: only what changed comes back (the same key twice in one read: its last record)
      await store.setRecords!([record('a', 'succeeded'), record('c', 'ready')]);
      await store.setRecords!([record('c', 'running')]);
      expect(source.changes()?.tasks.map((r) => `${r.id}:${r.state}`)).toEqual(['a:succeeded', 'c:running']);

      // a write to the key-value table folds the log (whose seq then starts again from 1), then more appends
      await store.set('meta:other', 1);
      await store.setRecords!([record('b', 'failed'), record('d', 'ready')]);
      expect(
        source
          .changes()
          ?.tasks.map((r) => `${r.id}:${r.state}`)
          .sort(),
      ).toEqual(['b:failed', 'd:ready']);
      await store.setRecords!([record('b', 'running', 2)]);
      expect(source.changes()?.tasks.map((r) => `${r.id}:${r.state}:${r.attempts}`)).toEqual(['b:running:2']);

      await store.del('task:d');
      expect(source.changes()).toMatchObject({ tasks: [], removed: ['d'] });
      expect(states(source)).toEqual(['a:succeeded:1', 'b:running:2', 'c:running:1']);
      source.close();
    } finally {
      await store.close();
    }
  });

  it('follows a store of format 2 that a workflow opens for writing (and so gives a record log) while it watches', async () => {
    const file = path.join(root, 'format-2', 'state.sqlite');
    const first = sqliteStore(file);
    await first.set(WORKFLOW_KEY, { name: 'format-2' });
    await first.setRecords!([record('a', 'succeeded')]);
    await first.close(); // folded: the record is a row of the key-value table
    const Database = require('better-sqlite3') as typeof import('better-sqlite3');
    const raw = new Database(file);
    raw.exec('DROP TABLE scalems_log');
    raw.pragma('user_version = 2');
    raw.close();
    const source = await StoreSource.open(file, 'format-2');
    try {
      expect(states(source)).toEqual(['a:succeeded:1']);
      const store = sqliteStore(file); // becomes format 3: its records go to the log from now on
      try {
        await store.setRecords!([record('b', 'running')]);
        expect(source.changes()?.tasks.map((r) => `${r.id}:${r.state}`)).toEqual(['b:running']);
        expect(states(source)).toEqual(['a:succeeded:1', 'b:running:1']);
      } finally {
        await store.close();
      }
    } finally {
      source.close();
    }
  });
});

describe('a dashboard that stays up', () => {
  it('answers a request target no URL can be made of with 400, and goes on serving', async () => {
    const { file, wf, ex } = await workflowIn('bad-target');
    await ex.submit(square, 2);
    await wf.close();
    const d = await dashboard(file);
    const { port } = new URL(d.url);
    for (const target of ['http://[', '//[', 'http://a:99999/']) {
      // raw, as http.get would refuse to send these
      const answer = await new Promise<string>((resolve, reject) => {
        const socket = net.connect(Number(port), '127.0.0.1', () =>
          socket.write(`GET ${target} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nConnection: close\r\n\r\n`),
        );
        let text = '';
        socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
        socket.on('end', () => resolve(text));
        socket.on('error', reject);
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect((await get(d.url)).status).toBe(200);
  });

  it('follows a store replaced under it (deleted and made again): the old tasks go, the new ones come', async () => {
    const first = await workflowIn('replaced');
    const old = await first.ex.submit(square, 3).then(() => first.wf.state.tasks.size);
    expect(old).toBe(1);
    const oldId = [...first.wf.state.tasks.keys()][0]!;
    await first.wf.close();
    const d = await dashboard(first.file);
    const events = await openEvents(at(d.url, 'api/events'));
    await events.waitFor((m) => m.event === 'snapshot');
    fs.rmSync(path.dirname(first.file), { recursive: true, force: true });
    const wf = await openWorkflow({ name: 'replaced', store: sqliteStore(first.file) });
    const ex = executor(launch(wf, inProcess()));
    const made = await Promise.all([4, 5].map((n) => ex.submit(square, n)));
    expect(made).toEqual([16, 25]);
    await wf.close();
    // the new store may be read while it is written: what the page is told adds up over the deltas
    const removed = new Set<string>();
    const shown = new Map<string, string>();
    await events.waitFor((m) => {
      if (m.event !== 'delta') return false;
      const message = JSON.parse(m.data) as DeltaMessage;
      for (const id of message.removed) removed.add(id);
      for (const t of message.tasks) shown.set(t.id, t.state);
      return removed.has(oldId) && [...shown.values()].filter((state) => state === 'succeeded').length === 2;
    });
    events.close();
    expect(shown.has(oldId)).toBe(false);
    expect(shown.size).toBe(2);
  });
});

describe('who may read the dashboard', () => {
  let file: string;
  beforeAll(async () => {
    const w = await workflowIn('access');
    await w.ex.submit(square, 2);
    await w.wf.close();
    file = w.file;
  });

  it('answers on 127.0.0.1 only to requests addressed to it (a rebound DNS name gets 403)', async () => {
    const d = await dashboard(file);
    const port = new URL(d.url).port;
    expect((await get(d.url)).status).toBe(200);
    expect((await get(d.url, { host: `localhost:${port}` })).status).toBe(200);
    expect((await get(d.url, { host: `evil.example:${port}` })).status).toBe(403);
    expect((await get(at(d.url, 'api/events'), { host: `evil.example:${port}` })).status).toBe(403);
  });

  it('on 127.0.0.1 too, makes a token and refuses every request without it (other accounts of the machine)', async () => {
    // before: none on 127.0.0.1, so any account of a shared login node could read what the store's 0600 keeps
    const d = await dashboard(file);
    expect(d.madeToken).toBe(true);
    expect(d.url).toBe(`http://127.0.0.1:${new URL(d.url).port}/?token=${d.token}`);
    const base = `http://127.0.0.1:${new URL(d.url).port}/`;
    for (const route of ['', 'app.js', 'api/events', 'api/task/x'])
      expect((await get(`${base}${route}`)).status).toBe(401);
    expect((await get(d.url)).status).toBe(200);
  });

  it('on another address, makes a token when none is given, and refuses every request without it with 401', async () => {
    const d = await dashboard(file, { host: '0.0.0.0' });
    expect(d.madeToken).toBe(true);
    expect(d.token).toMatch(/^[A-Za-z0-9_-]{32}$/);
    // the machine's name, which others can open (before: http://0.0.0.0:...)
    expect(d.url).toBe(`http://${os.hostname()}:${new URL(d.url).port}/?token=${d.token}`);
    const base = `http://127.0.0.1:${new URL(d.url).port}/`;
    for (const route of ['', 'app.js', 'api/events', 'api/task/x']) {
      expect((await get(`${base}${route}`)).status).toBe(401);
      expect((await get(`${base}${route}?token=${d.token}x`)).status).toBe(401);
    }
    expect((await get(`${base}?token=${d.token}`)).status).toBe(200);
    expect((await get(`${base}app.js`, { authorization: `Bearer ${d.token}` })).status).toBe(200);
    // the page asks for its script and style sheet with the token
    expect((await get(`${base}?token=${d.token}`)).body).toContain(`src="app.js?token=${d.token}"`);
    const events = await openEvents(`${base}api/events?token=${d.token}`);
    expect(events.status).toBe(200);
    // (before: the event stream had none of the pages' security headers, and a 405 no content type)
    expect(events.headers['x-content-type-options']).toBe('nosniff');
    expect(events.headers['content-security-policy']).toContain("default-src 'none'");
    const post = await fetch(`${base}?token=${d.token}`, { method: 'POST' });
    expect([post.status, post.headers.get('content-type'), post.headers.get('allow')]).toEqual([
      405,
      'text/plain; charset=utf-8',
      'GET, HEAD',
    ]);
    events.close();
  });

  it('takes a given token, also on 127.0.0.1', async () => {
    const token = 'a-token-of-20-chars_';
    const d = await dashboard(file, { token });
    expect(d.url).toMatch(new RegExp(`^http://127\\.0\\.0\\.1:\\d+/\\?token=${token}$`));
    expect((await get(d.url.replace(/\?.*/, ''))).status).toBe(401);
    expect((await get(d.url)).status).toBe(200);
  });

  it('refuses bad options with InvalidOptionsError naming each problem, before reading the store', async () => {
    const bad = startDashboard({ file: '/nonexistent/state.sqlite', name: 'x', port: 70_000, token: 'short' });
    await expect(bad).rejects.toThrow(InvalidOptionsError);
    await expect(bad).rejects.toMatchObject({
      problems: [expect.stringMatching(/^port: .*70000/), expect.stringMatching(/^token: expected at least 16/)],
    });
    await expect(startDashboard({ file, name: 'x', token: 'with spaces in it, 16+' })).rejects.toThrow(
      /token: .* with others among them/,
    );
    await expect(startDashboard({ file, name: 'x', host: 'a b' })).rejects.toThrow(InvalidOptionsError);
  });

  it('scalems serve: a bad option exits 2 pointing to --help; a missing store gives the error status gives', async () => {
    const wrong = await cli(root, ['serve', '--port', 'abc']);
    expect(wrong.code).toBe(2);
    expect(wrong.err).toContain('--port expects a whole number');
    // before: taken, and the store was read every millisecond (a timer that long fires at once)
    const poll = await cli(root, ['serve', path.dirname(file), '--poll', '3000000000']);
    expect(poll.code).toBe(2);
    expect(poll.err).toContain('--poll expects 50 to 2147483647 ms, got 3000000000');
    const badToken = await cli(root, ['serve', path.dirname(file), '--token', 'x']);
    expect(badToken.code).toBe(2);
    expect(badToken.err).toMatch(/token: expected at least 16 characters[^]*see `scalems serve --help`/);
    const missing = path.join(root, 'nothing-here');
    const serve = await cli(root, ['serve', missing]);
    const status = await cli(root, ['status', missing]);
    expect(serve.code).toBe(1);
    expect(serve.err.replace('scalems serve:', '')).toBe(status.err.replace('scalems status:', ''));
    expect((await cli(root, ['--help'])).out).toMatch(/serve\s+a live dashboard/);
  });

  it('scalems serve on a port another program listens on says so, and what to do', async () => {
    const other = net.createServer();
    await new Promise<void>((resolve) => other.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((other.address() as net.AddressInfo).port);
      const taken = await cli(root, ['serve', path.dirname(file), '--port', port]);
      expect(taken.code).toBe(1);
      expect(taken.err).toMatch(
        /cannot listen on 127\.0\.0\.1:\d+: .*another program listens there: give another --port/,
      );
    } finally {
      other.close();
    }
  });
});

describe('the page’s sources', () => {
  it('never parse text as HTML: every string from a task goes into the DOM as text', () => {
    const dir = path.join(__dirname, '..', 'src', 'cli', 'serve', 'page');
    const files = fs.readdirSync(dir).filter((f) => f.endsWith('.ts'));
    expect(files).toEqual(expect.arrayContaining(['dom.ts', 'main.ts', 'task.ts', 'list.ts', 'graph.ts']));
    const parsing = /\b(innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment)\b/;
    const offenders = files.filter((f) =>
      parsing.test(fs.readFileSync(path.join(dir, f), 'utf8').replace(/\/\*[^]*?\*\//g, '')),
    );
    expect(offenders).toEqual([]);
  });
});
