// Damaged store files and locks: each gives a typed error that says what to do (or, for a lock whose holder is
// gone, is taken over), quickly, leaving the store as it was; and racing openers get a lock exactly once.
import { spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import { openWorkflow } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { StoreAccessError, StoreCorruptError, StoreLockedError } from '../../src/errors';
import { STALE_INVALID_MS } from '../../src/store/lock';
import { startTimeOf } from '../../src/store/process-identity';
import type { Store } from '../../src/store/store';
import { main } from '../../src/cli/main';

const repo = path.join(__dirname, '..', '..');
const probe = path.join(repo, 'test', 'fixtures', 'faults', 'store-probe.ts');
const racer = path.join(repo, 'test', 'fixtures', 'faults', 'store-lock-racer.ts');

let dir: string;
let file: string;
const opened: Store[] = [];
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-damage-'));
  file = path.join(dir, 'state.sqlite');
});
afterEach(async () => {
  for (const store of opened.splice(0)) await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** What a probe process (test/fixtures/faults/store-probe.ts) printed; fails if it did not end on its own. */
function runProbe(what: string, target: string): { error?: string; code?: unknown; message?: string; err?: string } {
  const done = spawnSync(process.execPath, ['--require', 'tsx/cjs', probe, what, target], {
    cwd: repo,
    encoding: 'utf8',
    timeout: 15_000,
  });
  if (done.signal !== null) throw new Error(`the ${what} probe of ${target} did not end (killed by ${done.signal})`);
  expect(done.stderr).toBe('');
  return JSON.parse(done.stdout.trim().split('\n').pop()!) as ReturnType<typeof runProbe>;
}

/** The error a synchronous call throws. */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw');
}

/** File names and contents of the directory: what "left untouched" means. */
const snapshot = (): Record<string, string> =>
  Object.fromEntries(fs.readdirSync(dir).map((n) => [n, fs.readFileSync(path.join(dir, n)).toString('base64')]));

async function storeWith(entries: Array<[string, unknown]>): Promise<void> {
  const store = sqliteStore(file);
  await store.setMany(entries);
  await store.close();
}

const record = (id: string, state: string): Record<string, unknown> => ({
  id,
  kind: 'function',
  name: 'work',
  args: [],
  requirements: {},
  inputs: [],
  state,
  attempts: 1,
  pending: 0,
});

describe('damaged store files give typed errors and are left untouched', () => {
  test('a truncated store', async () => {
    await storeWith(Array.from({ length: 300 }, (_, i) => [`task:${i}`, record(String(i), 'succeeded')]));
    expect(fs.existsSync(`${file}-wal`)).toBe(false); // closed: everything is in the store file
    const bytes = fs.readFileSync(file);
    expect(bytes.length).toBeGreaterThan(16 * 4096);
    fs.writeFileSync(file, bytes.subarray(0, 3 * 4096)); // the first pages: the schema, not the records
    const before = snapshot();
    const error = thrown(() => sqliteStore(file));
    expect(error).toBeInstanceOf(StoreCorruptError);
    expect(error.message).toMatch(/is damaged.*restore it from a backup/);
    expect(snapshot()).toEqual(before);
  });

  test('garbage', () => {
    fs.writeFileSync(file, Buffer.alloc(8192, 0xa5));
    const error = thrown(() => sqliteStore(file));
    expect(error).toBeInstanceOf(StoreCorruptError);
    expect(error.message).toMatch(/not a scalems store: it is not an SQLite database/);
  });

  test('a named pipe (FIFO): refused at once by the library and by `scalems status`, instead of hanging', () => {
    expect(spawnSync('mkfifo', [file]).status).toBe(0);
    for (const what of ['open', 'readonly', 'status']) {
      const out = runProbe(what, file);
      expect(out.error ?? out.err).toMatch(/StoreCorruptError|is a named pipe/);
      expect(out.message ?? out.err).toContain(`${file} is a named pipe (FIFO), not a store file`);
    }
    expect(fs.statSync(file).isFIFO()).toBe(true);
  });

  test('a store opened and never written lets its process end', () => {
    expect(runProbe('open', file)).toEqual({ opened: true });
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
  });

  test.each([
    ['{"foo":1}', { foo: 1 }, /(a value stored as a task|"task:x") is not a task record \(it has no id/],
    ['null', null, /(a value stored as a task|"task:x") is not a task record \(it is null/],
    ['an unknown state', record('x', 'paused'), /"task:x" is not a task record \(its state "paused" is not one of/],
  ])(
    'a row that is not a task record (%s): StoreCorruptError, the lock released, the process ends',
    async (_, value, message) => {
      await storeWith([
        ['task:ok', record('ok', 'succeeded')],
        ['task:x', value],
      ]);
      const before = snapshot();
      const error = await openWorkflow({ name: 'damaged', store: sqliteStore(file) }).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(StoreCorruptError);
      expect((error as Error).message).toMatch(message);
      expect((error as Error).message).toContain(file);
      // the store closes behind the refusal (its writer thread ends first)
      for (let i = 0; i < 100 && fs.existsSync(`${file}.lock`); i++) await new Promise((r) => setTimeout(r, 20));
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
      expect(snapshot()).toEqual(before);
      // the same from the CLI
      let err = '';
      const stderr = { write: (t: string) => (err += t) };
      expect(await main(['status', file], { cwd: dir, stdout: { write: () => undefined }, stderr })).toBe(1);
      expect(err).toMatch(message);
      // and in a process of its own, which must end (it did not: the store's thread kept it alive)
      if (value === null)
        expect(runProbe('workflow', file)).toMatchObject({ error: 'StoreCorruptError', code: 'STORE_CORRUPT' });
    },
  );

  test('a dropped table', async () => {
    await storeWith([['task:ok', record('ok', 'succeeded')]]);
    const db = new Database(file);
    db.exec('DROP TABLE scalems_kv');
    db.close();
    for (const readonly of [false, true]) {
      const error = thrown(() => sqliteStore(file, { readonly }));
      expect(error).toBeInstanceOf(StoreCorruptError);
      expect(error.message).toMatch(/is damaged \(its table scalems_kv is missing\)/);
    }
  });

  test('a store path under a regular file', () => {
    fs.writeFileSync(path.join(dir, 'plain'), 'a file');
    const error = thrown(() => sqliteStore(path.join(dir, 'plain', 'wf', 'state.sqlite')));
    expect(error).toBeInstanceOf(StoreAccessError);
    expect(error.message).toMatch(/cannot make the directory of the store .*plain.*a part of that path is a file/);
  });
});

describe('stale locks are taken over; live ones are not', () => {
  const lockFile = (): string => `${file}.lock`;
  const age = (ms: number): void => {
    const t = (Date.now() - ms) / 1000;
    fs.utimesSync(lockFile(), t, t);
  };

  test('a lock is written whole, 0600, and tells its holder by pid, start time and host', () => {
    opened.push(sqliteStore(file));
    const lock = JSON.parse(fs.readFileSync(lockFile(), 'utf8')) as Record<string, unknown>;
    expect(lock).toMatchObject({ pid: process.pid, host: os.hostname(), start: startTimeOf(process.pid) });
    expect(fs.statSync(lockFile()).mode & 0o777).toBe(0o600);
    expect(fs.readdirSync(dir).filter((n) => n.includes('.tmp'))).toEqual([]);
  });

  test('an empty lock older than a few seconds (its holder died before writing it) is taken over', () => {
    fs.writeFileSync(lockFile(), '');
    age(STALE_INVALID_MS + 1000);
    opened.push(sqliteStore(file));
    expect(JSON.parse(fs.readFileSync(lockFile(), 'utf8')).pid).toBe(process.pid);
  });

  test('an empty lock that is young is waited for, then taken over', () => {
    fs.writeFileSync(lockFile(), '');
    age(STALE_INVALID_MS - 700);
    const started = Date.now();
    opened.push(sqliteStore(file));
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    expect(JSON.parse(fs.readFileSync(lockFile(), 'utf8')).pid).toBe(process.pid);
  });

  test('a lock naming a live pid that now belongs to another process (pid reuse) is taken over', () => {
    const live = spawn('sleep', ['30']);
    try {
      const start = startTimeOf(live.pid!)!;
      const lock = { pid: live.pid, host: os.hostname(), since: '2020-01-01T00:00:00.000Z', token: 'x' };
      fs.writeFileSync(lockFile(), JSON.stringify({ ...lock, start }));
      const error = thrown(() => sqliteStore(file)); // the process the lock names: locked
      expect(error).toBeInstanceOf(StoreLockedError);
      expect(error.message).toContain(`in use by process ${live.pid}`);
      fs.writeFileSync(lockFile(), JSON.stringify({ ...lock, start: start - 1000 }));
      opened.push(sqliteStore(file)); // the same pid, started later: another process
      expect(JSON.parse(fs.readFileSync(lockFile(), 'utf8')).pid).toBe(process.pid);
    } finally {
      live.kill('SIGKILL');
    }
  });
});

describe('lock races', () => {
  const ROUNDS = 180;
  const RACERS = 4;

  test(`${ROUNDS} races of ${RACERS} processes, a third over dead holders' locks and a third over old empty locks: one winner each`, async () => {
    for (let r = 0; r < ROUNDS; r++) {
      const lock = path.join(dir, `${r}.lock`);
      if (r % 3 === 1)
        fs.writeFileSync(lock, JSON.stringify({ pid: 2 ** 22 + 17, host: os.hostname(), since: 'x', token: 'dead' }));
      if (r % 3 === 2) {
        fs.writeFileSync(lock, '');
        const t = (Date.now() - 60_000) / 1000;
        fs.utimesSync(lock, t, t);
      }
    }
    const t0 = Date.now() + 4000; // after every racer has started
    const children = Array.from({ length: RACERS }, () =>
      spawn(process.execPath, ['--require', 'tsx/cjs', racer, dir, String(ROUNDS), String(t0), '12'], {
        cwd: repo,
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
    );
    const wins = await Promise.all(
      children.map(
        (child) =>
          new Promise<number[]>((resolve, reject) => {
            let out = '';
            child.stdout.on('data', (chunk: Buffer) => {
              out += chunk.toString();
              if (out.includes('\n')) resolve(JSON.parse(out) as number[]);
            });
            child.on('exit', (code) => reject(new Error(`a racer exited (${code}) before answering: ${out}`)));
          }),
      ),
    );
    for (const child of children) child.stdin.end();
    const winners = new Map<number, number>();
    for (const list of wins) for (const r of list) winners.set(r, (winners.get(r) ?? 0) + 1);
    const wrong = Array.from({ length: ROUNDS }, (_, r) => r).filter((r) => winners.get(r) !== 1);
    expect(wrong.map((r) => `round ${r}: ${winners.get(r) ?? 0} winners`)).toEqual([]);
    expect(wins.filter((list) => list.length > 0).length).toBeGreaterThan(1); // they did race
    await Promise.all(
      children.map((c) => new Promise((resolve) => (c.exitCode !== null ? resolve(0) : c.once('exit', resolve)))),
    );
  }, 30_000);
});
