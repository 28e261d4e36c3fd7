import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import Database from 'better-sqlite3';
import {
  StoreAccessError,
  StoreCorruptError,
  StoreLockedError,
  StoreVersionError,
  StoreWriteError,
} from '../src/errors';
import { SQLITE_STORE_APPLICATION_ID, SQLITE_STORE_VERSION, sqliteStore } from '../src/store/sqlite';
import { FOLD_MIN_ROWS, IDLE_FOLD_MS, SqliteWriter, WAL_BYTES } from '../src/store/sqlite-writer';
import type { TaskRecord } from '../src/store/state';
import { STALE_INVALID_MS } from '../src/store/lock';
import type { Store } from '../src/store/store';
import { decodeRecord, encodeRecordBody, isEncodedRecord } from '../src/store/record-codec';
import { readRecords } from '../src/cli/locate';
import { defineTask, executor, inProcess, launch, openWorkflow } from 'scalems';

let dir: string;
let file: string;
const open: Store[] = [];
const openStore = (...args: Parameters<typeof sqliteStore>): Store => {
  const store = sqliteStore(...args);
  open.push(store);
  return store;
};
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-sqlite-'));
  file = path.join(dir, 'state.sqlite');
});
afterEach(async () => {
  for (const store of open.splice(0)) await store.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The error a synchronous call throws (fails the test if it does not throw). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    return error as Error;
  }
  throw new Error('expected a throw');
}

describe('sqliteStore file format', () => {
  test('creates parent directories and a WAL-mode file marked as a scalems store of this version', async () => {
    const nested = path.join(dir, 'a', 'b', 'state.sqlite');
    const store = openStore(nested);
    await store.set('k', 1);
    const raw = new Database(nested, { readonly: true });
    try {
      expect(raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(raw.pragma('application_id', { simple: true })).toBe(SQLITE_STORE_APPLICATION_ID);
      expect(raw.pragma('user_version', { simple: true })).toBe(SQLITE_STORE_VERSION);
      expect(raw.prepare('SELECT value FROM scalems_kv WHERE key = ?').pluck().get('k')).toBe('1');
    } finally {
      raw.close();
    }
    expect(store.description).toBe(`sqlite:${nested}`);
  });

  /** Rebuilds a closed store with pages of `size` bytes, as a tool (the sqlite3 shell's VACUUM) could. */
  function withPageSize(at: string, size: number): void {
    const raw = new Database(at);
    try {
      raw.pragma('journal_mode = DELETE'); // a WAL database keeps its page size through VACUUM
      raw.pragma(`page_size = ${size}`);
      raw.exec('VACUUM');
      raw.pragma('journal_mode = WAL');
      expect(raw.pragma('page_size', { simple: true })).toBe(size);
    } finally {
      raw.close();
    }
  }

  test.each([
    ['a new store (4 KiB pages)', undefined],
    ['a store rebuilt with 32 KiB pages', 32768],
  ])('the -wal file of %s is checkpointed once it holds about 40 MB, whatever the page size', async (_, pageSize) => {
    if (pageSize !== undefined) {
      await sqliteStore(file).close();
      withPageSize(file, pageSize);
    }
    const store = openStore(file);
    const value = 'x'.repeat(10_000);
    let walMax = 0;
    // 64 MiB in 1 MiB batches: without a checkpoint the log would hold all of it
    for (let batch = 0; batch < 64; batch++) {
      await store.setMany(Array.from({ length: 105 }, (_, i) => [`k${batch}-${i}`, value] as const));
      walMax = Math.max(walMax, fs.statSync(`${file}-wal`).size);
    }
    expect(walMax).toBeGreaterThan(WAL_BYTES * 0.9); // it did grow that far: checkpoints are not more frequent
    expect(walMax).toBeLessThan(WAL_BYTES + 4 * 2 ** 20); // and no further than the commit that crossed the line
  });

  test('a -wal file grown past 40 MB by one large transaction is cut back to about 40 MB once it is reused', async () => {
    // (a fold during a long run is such a transaction: the file stayed at its largest until the store closed)
    const store = openStore(file);
    const big = 'x'.repeat(1_000_000);
    await store.setMany(Array.from({ length: 60 }, (_, i) => [`big${i}`, `${big}${i}`] as const));
    const grown = fs.statSync(`${file}-wal`).size;
    expect(grown).toBeGreaterThan(WAL_BYTES * 1.3);
    for (let batch = 0; batch < 20; batch++) {
      await store.setMany(Array.from({ length: 20 }, (_, i) => [`small${batch}-${i}`, i] as const));
      if (fs.statSync(`${file}-wal`).size <= WAL_BYTES) break;
    }
    expect(fs.statSync(`${file}-wal`).size).toBeLessThanOrEqual(WAL_BYTES);
    expect(await store.get('big59')).toBe(`${big}59`);
  });

  test('task records are written encoded; a version 2 store (records as JSON objects) is read, resumed, upgraded', async () => {
    let runs = 0;
    const double = defineTask('store-sqlite.double', async (x: number) => {
      runs++;
      return 2 * x;
    });
    const run = async (xs: number[]): Promise<number[]> => {
      const wf = await openWorkflow({ store: sqliteStore(file), name: 'v2' });
      try {
        const ex = executor(launch(wf, inProcess()));
        return await Promise.all(xs.map((x) => ex.submit(double, x)));
      } finally {
        await wf.close();
      }
    };
    expect(await run([1, 2])).toEqual([2, 4]);
    const rows = (db: Database.Database): Array<{ key: string; value: string }> =>
      db.prepare("SELECT key, value FROM scalems_kv WHERE key LIKE 'task:%' ORDER BY key").all() as Array<{
        key: string;
        value: string;
      }>;
    // the store as scalems with format 2 wrote it: each record a JSON object
    const raw = new Database(file);
    const records = rows(raw).map((r) => [r.key, decodeRecord(r.key, r.value)] as const);
    expect(rows(raw).every((r) => isEncodedRecord(r.value))).toBe(true);
    for (const [key, record] of records) {
      expect(record).toMatchObject({ state: 'succeeded', attempts: 1 });
      raw.prepare('UPDATE scalems_kv SET value = ? WHERE key = ?').run(JSON.stringify(record), key);
    }
    raw.exec('DROP TABLE scalems_log'); // version 2 had no record log
    raw.pragma('user_version = 2');
    raw.close();
    // read: its tasks are served, not run again; the store is version 3 from its first write on
    expect(await run([1, 2, 3])).toEqual([2, 4, 6]);
    expect(runs).toBe(3);
    const after = new Database(file, { readonly: true });
    try {
      expect(after.pragma('user_version', { simple: true })).toBe(SQLITE_STORE_VERSION);
      expect(after.prepare('SELECT count(*) FROM scalems_log').pluck().get()).toBe(0); // made, and folded at close
      const values = new Map(rows(after).map((r) => [r.key, r.value]));
      for (const [key, record] of records) expect(values.get(key)).toBe(JSON.stringify(record)); // untouched
      expect([...values.values()].filter(isEncodedRecord)).toHaveLength(1); // the new task's
    } finally {
      after.close();
    }
    // read-only, a version 2 store is read as it is, not changed
    const old = new Database(file);
    old.exec('DROP TABLE scalems_log');
    old.pragma('user_version = 2');
    old.close();
    const readonly = openStore(file, { readonly: true });
    expect((await readonly.entries()).filter(([key]) => key.startsWith('task:'))).toHaveLength(3);
    await readonly.close();
    const still = new Database(file, { readonly: true });
    expect(still.pragma('user_version', { simple: true })).toBe(2);
    still.close();
  });

  test('a store spread from it with its own setMany (logging, failing writes) sees every record the workflow writes', async () => {
    const triple = defineTask('store-sqlite.triple', async (x: number) => 3 * x);
    const inner = sqliteStore(file);
    const seen: string[] = [];
    const store: Store = {
      ...inner,
      setMany: async (entries) => {
        for (const [key] of entries) seen.push(key);
        return inner.setMany(entries);
      },
    };
    const wf = await openWorkflow({ store, name: 'spread' });
    let id = '';
    try {
      const t = executor(launch(wf, inProcess())).submit(triple, 5);
      id = t.id;
      expect(await t).toBe(15);
      await wf.flushed();
    } finally {
      await wf.close();
    }
    expect(seen).toContain(`task:${id}`);
    const again = sqliteStore(file);
    try {
      expect(await again.get(`task:${id}`)).toMatchObject({ id, state: 'succeeded', result: 15 });
    } finally {
      await again.close();
    }
  });

  test('a result nested too deep to write fails its task; the records of the others are all written', async () => {
    const nest = defineTask('store-sqlite.nest', async (levels: number) => {
      let v: unknown = 0;
      for (let i = 0; i < levels; i++) v = [v];
      return v;
    });
    const wf = await openWorkflow({ store: sqliteStore(file), name: 'deep' });
    const ex = executor(launch(wf, inProcess()));
    try {
      const before = [1, 2, 3].map((n) => ex.submit(nest, n));
      await Promise.all(before);
      await expect(ex.submit(nest, 2_500)).rejects.toThrow(/nests deeper than 1000 levels/);
      const after = [4, 5, 6].map((n) => ex.submit(nest, n));
      await Promise.all(after);
      await wf.flushed();
    } finally {
      await wf.close();
    }
    const states = (await readRecords(file)).map((r) => [r.args[0], r.state]);
    expect(states.sort((a, b) => Number(a[0]) - Number(b[0]))).toEqual([
      [1, 'succeeded'],
      [2, 'succeeded'],
      [3, 'succeeded'],
      [4, 'succeeded'],
      [5, 'succeeded'],
      [6, 'succeeded'],
      [2_500, 'failed'],
    ]);
  });

  test('a store deleted while open: close() says its writes are not at its path (before: it resolved)', async () => {
    const store = openStore(file);
    await store.set('a', 1);
    fs.rmSync(dir, { recursive: true, force: true });
    await store.set('b', 2); // SQLite goes on writing the deleted file
    const error = await store.close().catch((e: unknown) => e);
    expect(error).toBeInstanceOf(StoreWriteError);
    expect((error as Error).message).toMatch(/was deleted, moved or replaced while this process had it open/);
    // closed all the same: its lock is released, and the same path opens afresh
    expect(await openStore(file).get('a')).toBeUndefined();
  });

  test('an encoded record that does not decode is damage, named by its key', async () => {
    const store = openStore(file);
    await store.set('meta:x', 1);
    await store.close();
    const raw = new Database(file);
    raw.prepare('INSERT INTO scalems_kv (key, value) VALUES (?, ?)').run('task:a', '#[6,"function"]');
    raw.prepare('INSERT INTO scalems_kv (key, value) VALUES (?, ?)').run('task:b', '#[1,');
    raw.close();
    const again = openStore(file);
    await expect(again.get('task:a')).rejects.toThrow(/is damaged.*"task:a" is not a task record/);
    await expect(again.get('task:b')).rejects.toThrow(/is damaged.*"task:b" is not JSON/);
    await expect(again.entries()).rejects.toThrow(StoreCorruptError);
  });

  test('opens under node --input-type=module -e (its writer thread, CommonJS source, is not taken for ESM)', () => {
    // before: ReferenceError: require is not defined in ES module scope, from the writer thread's eval
    const source = path.resolve(__dirname, '../src/store/sqlite.ts');
    const script =
      `import sqlite from ${JSON.stringify(source)};\n` + // (CommonJS here: its exports are the default)
      'const { sqliteStore } = sqlite;\n' +
      `const store = sqliteStore(${JSON.stringify(file)});\n` +
      "await store.set('a', 1);\nconsole.log(JSON.stringify(await store.get('a')));\nawait store.close();\n";
    // the flag as an argument, and in NODE_OPTIONS (which a worker's execArgv does not hold)
    for (const [flags, env] of [
      [['--input-type=module'], process.env],
      [[], { ...process.env, NODE_OPTIONS: '--input-type=module' }],
    ] as const) {
      fs.rmSync(file, { force: true });
      const run = spawnSync(process.execPath, ['--import', 'tsx', ...flags, '-e', script], {
        encoding: 'utf8',
        timeout: 60_000,
        env,
      });
      expect({ status: run.status, out: run.stdout.trim(), err: run.stderr }).toEqual({ status: 0, out: '1', err: '' });
    }
  });

  test('the temporary files of a creation that was killed are removed by the next open', async () => {
    const left = [`${file}.creating-99999-0a1b`, `${file}.creating-99999-0a1b-journal`];
    fs.mkdirSync(dir, { recursive: true });
    for (const f of left) fs.writeFileSync(f, 'half made');
    // before: they stayed for good, one pair per kill during a creation
    await openStore(file).set('a', 1);
    expect(left.filter((f) => fs.existsSync(f))).toEqual([]);
    expect(fs.readdirSync(dir).sort()).toEqual([
      'state.sqlite',
      'state.sqlite-shm',
      'state.sqlite-wal',
      'state.sqlite.lock',
    ]);
  });

  test('a new store ignores a -wal file orphaned by deleting an old store file', async () => {
    const old = sqliteStore(file);
    await old.set('old', 'data');
    const orphan = fs.readFileSync(`${file}-wal`);
    await old.close();
    fs.unlinkSync(file);
    fs.writeFileSync(`${file}-wal`, orphan);
    expect(await openStore(file).entries()).toEqual([]);
  });
});

describe('sqliteStore refuses files it does not recognise, and leaves them untouched', () => {
  /** Asserts that opening `file` throws `type`, and that the directory's files and bytes are unchanged. */
  function expectRefusedUntouched(type: new (...args: never[]) => Error, message: RegExp): Error {
    const before = snapshot(dir);
    const error = thrown(() => openStore(file));
    expect(error).toBeInstanceOf(type);
    expect(error.message).toContain(file);
    expect(error.message).toMatch(message);
    expect(snapshot(dir)).toEqual(before); // same files (no lock, -wal, -shm left), same bytes
    return error;
  }

  test('a file that is not SQLite', () => {
    fs.writeFileSync(file, 'PK\u0003\u0004 this is a zip file, or anything else'.repeat(100));
    expectRefusedUntouched(StoreCorruptError, /not an SQLite database.*untouched/);
  });

  test('an empty file', () => {
    fs.writeFileSync(file, '');
    expectRefusedUntouched(StoreCorruptError, /empty/);
  });

  test('an SQLite database of another application', () => {
    const other = new Database(file);
    other.exec('CREATE TABLE customers (id INTEGER PRIMARY KEY, name TEXT); INSERT INTO customers (name) VALUES (1);');
    other.close();
    expectRefusedUntouched(StoreCorruptError, /SQLite database but not a scalems store/);
  });

  test('a store of another schema version', async () => {
    const store = sqliteStore(file);
    await store.set('task:1', { state: 'succeeded' });
    await store.close();
    const raw = new Database(file);
    raw.pragma('user_version = 99');
    raw.close();
    const error = expectRefusedUntouched(
      StoreVersionError,
      /newer scalems store format \(version 99\).*reads version 3/,
    );
    expect(error).toMatchObject({ found: 99, expected: SQLITE_STORE_VERSION });
  });

  test('a record log holding a damaged record: the workflow refuses the store, and the good record stays', async () => {
    // the open folded the log into the table first: the damage went over the good record of its key, and the file
    // the error said was untouched had changed
    const wf = await openWorkflow({ store: sqliteStore(file), name: 'damaged' });
    const t = executor(launch(wf, inProcess())).submit((n: number) => n + 1, 1);
    expect(await t).toBe(2);
    await wf.close();
    const raw = new Database(file);
    const good = raw.prepare('SELECT value FROM scalems_kv WHERE key = ?').pluck().get(`task:${t.id}`);
    raw.prepare('INSERT INTO scalems_log (key, value) VALUES (?, ?)').run(`task:${t.id}`, '#[1,2');
    raw.close();
    const before = snapshot(dir);
    await expect(openWorkflow({ store: sqliteStore(file), name: 'damaged' })).rejects.toThrow(
      /is damaged.*not JSON.*untouched/,
    );
    expect(snapshot(dir)).toEqual(before);
    const after = new Database(file, { readonly: true });
    expect(after.prepare('SELECT value FROM scalems_kv WHERE key = ?').pluck().get(`task:${t.id}`)).toBe(good);
    after.close();
  });

  test('a damaged store (pages overwritten)', async () => {
    const store = sqliteStore(file);
    for (let i = 0; i < 4; i++) {
      await store.setMany(
        Array.from({ length: 500 }, (_, j) => [`task:${i}-${j}`, { payload: 'x'.repeat(200) }] as const),
      );
    }
    await store.close();
    const bytes = fs.readFileSync(file);
    const pageSize = bytes.readUInt16BE(16);
    bytes.fill(0x5a, 3 * pageSize, 8 * pageSize); // scribble over b-tree pages, keep the header
    fs.writeFileSync(file, bytes);
    expectRefusedUntouched(StoreCorruptError, /is damaged.*untouched/);
  });
});

describe('sqliteStore lock', () => {
  const lockFile = (): string => `${file}.lock`;
  const readLock = (): { pid: number; host: string; since: string } => JSON.parse(fs.readFileSync(lockFile(), 'utf8'));

  test('is a lock file naming this process while open, removed on close', async () => {
    const store = sqliteStore(file);
    expect(readLock()).toMatchObject({ pid: process.pid, host: os.hostname(), since: expect.any(String) });
    await store.close();
    expect(fs.existsSync(lockFile())).toBe(false);
  });

  test('a second open in the same process is refused until the first is closed', async () => {
    const first = sqliteStore(file);
    const error = thrown(() => openStore(file));
    expect(error).toBeInstanceOf(StoreLockedError);
    expect(error.message).toMatch(new RegExp(`already open in this process \\(pid ${process.pid}, since`));
    expect((error as StoreLockedError).holder.pid).toBe(process.pid);
    await first.set('a', 1);
    await first.close();
    expect(await openStore(file).get('a')).toBe(1);
  });

  test('is the same lock whichever symbolic link the store is opened by; a store with hard links is refused', async () => {
    const first = openStore(file);
    await first.set('a', 1);
    const dirLink = path.join(os.tmpdir(), `scalems-sqlite-link-${process.pid}`);
    fs.symlinkSync(dir, dirLink);
    try {
      fs.symlinkSync(file, path.join(dir, 'link.sqlite'));
      // before: each name had its own lock file, so both opens were taken: two writers of one store
      for (const name of [path.join(dir, 'link.sqlite'), path.join(dirLink, 'state.sqlite')]) {
        const error = thrown(() => openStore(name));
        expect(error).toBeInstanceOf(StoreLockedError);
        expect(error.message).toMatch(/already open in this process/);
      }
      await first.close();
      fs.linkSync(file, path.join(dir, 'hard.sqlite'));
      for (const name of [file, path.join(dir, 'hard.sqlite')]) {
        const error = thrown(() => openStore(name));
        expect(error).toBeInstanceOf(StoreAccessError);
        expect(error.message).toMatch(/has 2 hard links.*Nothing was changed: remove the other names/);
      }
      fs.rmSync(path.join(dir, 'hard.sqlite'));
      expect(await openStore(path.join(dir, 'link.sqlite')).get('a')).toBe(1);
    } finally {
      fs.rmSync(dirLink);
    }
  });

  test('a link to a store yet to be made makes it where the link points, and a missing directory is named', async () => {
    fs.mkdirSync(path.join(dir, 'real'));
    fs.symlinkSync(path.join(dir, 'real', 'made.sqlite'), path.join(dir, 'dangling.sqlite'));
    const store = openStore(path.join(dir, 'dangling.sqlite'));
    await store.set('a', 1);
    await store.close();
    expect(fs.lstatSync(path.join(dir, 'dangling.sqlite')).isSymbolicLink()).toBe(true);
    expect(fs.statSync(path.join(dir, 'real', 'made.sqlite')).isFile()).toBe(true);
    fs.symlinkSync(path.join(dir, 'gone'), path.join(dir, 'to-nowhere'));
    // before: a raw ENOENT from mkdir
    const error = thrown(() => openStore(path.join(dir, 'to-nowhere', 'w', 'state.sqlite')));
    expect(error).toBeInstanceOf(StoreAccessError);
    expect(error.message).toMatch(/is not there, and could not be made \(a dangling symbolic link\?\)/);
  });

  test('a lock held on another host is not taken over, and the message says what to do', () => {
    const foreign = JSON.stringify({ pid: 4242, host: 'compute-node-17', since: '2024-01-01T00:00:00.000Z' });
    fs.writeFileSync(lockFile(), foreign);
    const error = thrown(() => openStore(file)) as StoreLockedError;
    expect(error).toBeInstanceOf(StoreLockedError);
    expect(error.holder).toEqual({ pid: 4242, host: 'compute-node-17', since: '2024-01-01T00:00:00.000Z' });
    expect(error.message).toContain('process 4242 on host compute-node-17 (since 2024-01-01T00:00:00.000Z)');
    expect(error.message).toContain(`delete ${lockFile()}`);
    expect(fs.readFileSync(lockFile(), 'utf8')).toBe(foreign);
  });

  test('a lock file that is not a lock is taken over once a few seconds old (its writer died writing it)', async () => {
    fs.writeFileSync(lockFile(), 'garbage');
    const old = (Date.now() - STALE_INVALID_MS - 1000) / 1000;
    fs.utimesSync(lockFile(), old, old);
    const store = openStore(file);
    await store.set('ok', true);
    expect(readLock().pid).toBe(process.pid);
  });

  test('a stale lock naming this pid but not held by this process (pid reuse) is taken over', async () => {
    fs.writeFileSync(
      lockFile(),
      JSON.stringify({ pid: process.pid, host: os.hostname(), since: '2020-01-01T00:00:00.000Z' }),
    );
    const store = openStore(file);
    await store.set('ok', true);
    expect(readLock().since).not.toBe('2020-01-01T00:00:00.000Z');
  });

  test('a read-only open needs no lock: it reads a store another opener holds, and refuses writes', async () => {
    const writer = openStore(file);
    await writer.set('a', 1);
    const reader = openStore(file, { readonly: true });
    await writer.set('b', 2);
    expect(await reader.entries()).toEqual([
      ['a', 1],
      ['b', 2],
    ]);
    await expect(reader.set('c', 3)).rejects.toThrow(/read-only/);
    const held = fs.readFileSync(lockFile(), 'utf8');
    await reader.close();
    expect(fs.readFileSync(lockFile(), 'utf8')).toBe(held);
  });
});

describe('sqliteStore record log', () => {
  const record = (id: string, state: TaskRecord['state'] = 'succeeded'): [string, TaskRecord] => [
    `task:${id}`,
    { id, kind: 'function', name: 'f', args: [id], requirements: {}, inputs: [], state, attempts: 1, pending: 0 },
  ];
  const raw = <T>(query: string): T => {
    const db = new Database(file, { readonly: true });
    try {
      return db.prepare(query).pluck().get() as T;
    } finally {
      db.close();
    }
  };
  const logged = (): number => raw<number>('SELECT count(*) FROM scalems_log');
  const inKv = (): number => raw<number>("SELECT count(*) FROM scalems_kv WHERE key LIKE 'task:%'");

  test('records go to the log, readers see them there, and closing folds them into the key-value table', async () => {
    const store = openStore(file);
    await store.setRecords!([record('a'), record('b', 'running')]);
    await store.setRecords!([record('b')]); // the same key again: the last is its value
    expect([logged(), inKv()]).toEqual([3, 0]);
    const reader = openStore(file, { readonly: true });
    for (const s of [store, reader]) {
      expect(await s.keys()).toEqual(['task:a', 'task:b']);
      expect(await s.get('task:b')).toMatchObject({ id: 'b', state: 'succeeded' });
      expect((await s.entries()).map(([key, r]) => [key, (r as TaskRecord).state])).toEqual([
        ['task:a', 'succeeded'],
        ['task:b', 'succeeded'],
      ]);
    }
    await reader.close();
    await store.close();
    expect([logged(), inKv()]).toEqual([0, 2]);
    const again = openStore(file);
    expect(await again.get('task:b')).toMatchObject({ state: 'succeeded' });
  });

  test('records are posted to the writer as their fields, and written as the text encodeRecordBody makes', async () => {
    const store = openStore(file);
    const rows = [record('a'), record('b', 'failed')];
    await store.setRecords!(rows);
    const db = new Database(file, { readonly: true });
    try {
      const texts = db.prepare('SELECT key, value FROM scalems_log ORDER BY seq').all() as Array<{
        key: string;
        value: string;
      }>;
      expect(texts).toEqual(rows.map(([key, r]) => ({ key, value: `#${encodeRecordBody(key, r)}` })));
    } finally {
      db.close();
    }
    await store.close();
  });

  test('a batch that cannot be cloned to the writer (a Proxy in the arguments) is posted as text, and written', async () => {
    const store = openStore(file);
    const [key, r] = record('proxied');
    const args = [new Proxy({ n: 1 }, {})];
    await store.setRecords!([record('before'), [key, { ...r, args }]]);
    expect(await store.get(key)).toMatchObject({ id: 'proxied', args: [{ n: 1 }] });
    expect(await store.get('task:before')).toMatchObject({ id: 'before' });
    await store.setRecords!([record('after')]); // the writer took the batch, and takes the next
    expect(await store.keys()).toEqual(['task:after', 'task:before', 'task:proxied']);
    await store.close();
  });

  test('a later set or del of a key wins over its record in the log', async () => {
    const store = openStore(file);
    await store.setRecords!([record('a'), record('b'), record('c')]);
    await store.set('task:a', 'replaced');
    await store.del('task:b');
    expect(logged()).toBe(0); // folded before the set
    await store.setRecords!([record('c', 'failed')]);
    await store.setMany([['task:c', 'replaced too']]);
    const check = async (s: Store): Promise<void> => {
      expect(await s.keys()).toEqual(['task:a', 'task:c']);
      expect(await s.get('task:a')).toBe('replaced');
      expect(await s.get('task:b')).toBeUndefined();
      expect(await s.get('task:c')).toBe('replaced too');
    };
    await check(store);
    await store.close();
    await check(openStore(file));
  });

  test(`the writer folds the log once it has had nothing to do for ${IDLE_FOLD_MS} ms`, async () => {
    const store = openStore(file);
    await store.setRecords!([record('a'), record('b')]);
    expect(logged()).toBe(2);
    const deadline = Date.now() + 10 * IDLE_FOLD_MS;
    while (logged() > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    expect([logged(), inKv()]).toEqual([0, 2]);
    expect(await store.get('task:a')).toMatchObject({ id: 'a' });
  });

  test(`a run that never pauses folds the log once it holds ${FOLD_MIN_ROWS} rows and as many as the table`, async () => {
    const store = openStore(file);
    await store.set('meta', 0);
    const tableSize = (): number => raw<number>('SELECT count(*) FROM scalems_kv');
    // 4 rows instead of FOLD_MIN_ROWS; no idle fold while the test looks
    const writer = new SqliteWriter(file, (error) => error, { minRows: 4, idleMs: 60_000 });
    let n = 0;
    try {
      const append = (count: number): Promise<void> =>
        writer.append(
          Array.from({ length: count }, () => record(`t${n++}`)).flatMap(([key, r]) => [key, encodeRecordBody(key, r)]),
        );
      // the writer folds after it has answered the appends: a request behind them is answered after that fold
      const settled = async (): Promise<[number, number]> => {
        await writer.append([]);
        return [logged(), inKv()];
      };
      expect(tableSize()).toBeLessThan(4);
      await append(3);
      expect(await settled()).toEqual([3, 0]);
      await append(1); // 4 rows, more than the table holds
      expect(await settled()).toEqual([0, 4]);
      const size = tableSize();
      await append(size - 1); // one short of the table's size
      expect(await settled()).toEqual([size - 1, 4]);
      await append(1);
      expect(await settled()).toEqual([0, 4 + size]);
    } finally {
      await writer.close();
    }
    const reader = openStore(file, { readonly: true });
    expect((await reader.keys()).filter((k) => k.startsWith('task:'))).toHaveLength(n);
    expect(await reader.get('task:t0')).toMatchObject({ id: 't0', state: 'succeeded' });
  });

  test('a process killed with records in the log: an open reads them there, and folds them once it writes', async () => {
    const [key, value] = record('killed');
    const script = `
      const { sqliteStore } = require(${JSON.stringify(path.resolve(__dirname, '../src/store/sqlite.ts'))});
      const store = sqliteStore(${JSON.stringify(file)});
      store.setRecords([[${JSON.stringify(key)}, ${JSON.stringify(value)}]])
        .then(() => { console.log('ready'); setInterval(() => {}, 1000); });`;
    const child = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    try {
      await new Promise<void>((resolve, reject) => {
        let output = '';
        child.stdout?.on('data', (chunk: Buffer) => {
          output += chunk.toString();
          if (output.includes('ready')) resolve();
        });
        child.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
        child.on('exit', (code) => reject(new Error(`child exited (${code}) before it was ready: ${output}`)));
      });
    } finally {
      child.kill('SIGKILL');
    }
    await new Promise((r) =>
      child.exitCode !== null || child.signalCode !== null ? r(undefined) : child.once('exit', r),
    );
    expect([logged(), inKv()]).toEqual([1, 0]);
    const reader = openStore(file, { readonly: true });
    expect(await reader.get(key)).toEqual(value);
    await reader.close();
    expect(logged()).toBe(1); // a read-only open changes nothing
    // nor one that has not written: a store the workflow refuses as damaged as it reads it is closed as it was
    const store = openStore(file);
    expect(await store.get(key)).toEqual(value);
    await store.close();
    expect([logged(), inKv()]).toEqual([1, 0]);
    const writer = openStore(file);
    await writer.set('other', { n: 1 });
    expect([logged(), inKv()]).toEqual([0, 1]);
    expect(await writer.get(key)).toEqual(value);
  });
});

describe('sqliteStore lock across real processes', () => {
  let child: ChildProcess | undefined;
  afterEach(() => {
    if (child && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });

  /** Runs a node process that opens the store, writes `child` = its pid, prints "ready", then runs `then`. */
  function startChild(then: string): Promise<ChildProcess> {
    const script = `
      const { sqliteStore } = require(${JSON.stringify(path.resolve(__dirname, '../src/store/sqlite.ts'))});
      const store = sqliteStore(${JSON.stringify(file)});
      store.set('child', { pid: process.pid }).then(() => { console.log('ready'); ${then} });`;
    const proc = spawn(process.execPath, ['--require', 'tsx/cjs', '-e', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    return new Promise((resolve, reject) => {
      proc.stdout?.on('data', (chunk: Buffer) => {
        output += chunk.toString();
        if (output.includes('ready')) resolve(proc);
      });
      proc.stderr?.on('data', (chunk: Buffer) => (output += chunk.toString()));
      proc.on('exit', (code) => reject(new Error(`child exited (${code}) before it was ready: ${output}`)));
    });
  }
  const exited = (proc: ChildProcess): Promise<void> =>
    proc.exitCode !== null || proc.signalCode !== null
      ? Promise.resolve()
      : new Promise((r) => proc.once('exit', () => r()));

  test('a live holder is named; after it is SIGKILLed its stale lock is taken over and its writes survive', async () => {
    child = await startChild('setInterval(() => {}, 1000);');
    const error = thrown(() => openStore(file)) as StoreLockedError;
    expect(error).toBeInstanceOf(StoreLockedError);
    expect(error.holder).toMatchObject({ pid: child.pid, host: os.hostname() });
    expect(error.message).toContain(
      `in use by process ${child.pid} on host ${os.hostname()} (since ${error.holder.since})`,
    );
    expect(error.message).toMatch(/wait for that process to finish, or stop it/);

    child.kill('SIGKILL');
    await exited(child);
    expect(JSON.parse(fs.readFileSync(`${file}.lock`, 'utf8')).pid).toBe(child.pid); // left behind by the kill

    const store = openStore(file);
    expect(JSON.parse(fs.readFileSync(`${file}.lock`, 'utf8')).pid).toBe(process.pid);
    expect(await store.get('child')).toEqual({ pid: child.pid });
  });

  test('a process that exits without closing the store removes its lock file', async () => {
    child = await startChild('process.exit(0);');
    await exited(child);
    expect(child.exitCode).toBe(0);
    expect(fs.existsSync(`${file}.lock`)).toBe(false);
    expect(await openStore(file).get('child')).toEqual({ pid: child.pid });
  });

  test('a process that ends without awaiting its writes (or closing) still has them written', async () => {
    const script = `
      const { sqliteStore } = require(${JSON.stringify(path.resolve(__dirname, '../src/store/sqlite.ts'))});
      const store = sqliteStore(${JSON.stringify(file)});
      void store.setMany(Array.from({ length: 20000 }, (_, i) => ['k' + i, { i, text: 'x'.repeat(100) }]));`;
    const done = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], { encoding: 'utf8' });
    expect(done.stderr).toBe('');
    expect(done.status).toBe(0);
    const store = openStore(file);
    expect((await store.keys()).length).toBe(20000);
    expect(await store.get('k19999')).toEqual({ i: 19999, text: 'x'.repeat(100) });
  });

  test('a lock of a dead pid on this host is taken over', async () => {
    const dead = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    const pid = Number(dead.stdout.trim());
    fs.writeFileSync(`${file}.lock`, JSON.stringify({ pid, host: os.hostname(), since: new Date().toISOString() }));
    const store = openStore(file);
    await store.set('a', 1);
    expect(JSON.parse(fs.readFileSync(`${file}.lock`, 'utf8')).pid).toBe(process.pid);
  });
});

/** File names and contents of a directory. */
function snapshot(directory: string): Record<string, string> {
  return Object.fromEntries(
    fs.readdirSync(directory).map((name) => [name, fs.readFileSync(path.join(directory, name)).toString('base64')]),
  );
}

describe('sqliteStore writer thread', () => {
  it('a write the thread cannot commit rejects with the store’s error, and later writes still go through', async () => {
    const store = openStore(file);
    await store.set('a', 1);
    // another connection takes the table away under the store: the thread's next write fails
    const other = new Database(file);
    other.exec('ALTER TABLE scalems_kv RENAME TO moved');
    await expect(store.set('b', 2)).rejects.toThrow(StoreCorruptError);
    other.exec('ALTER TABLE moved RENAME TO scalems_kv');
    other.close();
    await store.set('c', 3);
    expect(await store.get('c')).toBe(3);
    expect(await store.get('a')).toBe(1);
  });

  it('writes queued together commit together, yet one that fails fails alone', async () => {
    const store = openStore(file);
    await store.set('meta', 0); // the thread is up: the next writes queue behind one another
    const writer = new SqliteWriter(file, (error) => error);
    const many = Array.from({ length: 2_000 }, (_, i) => [`k${i}`, String(i)]).flat();
    const first = writer.write(many);
    // a value the table refuses (NOT NULL): this write fails, and only this one
    const bad = writer.write(['bad', null as unknown as string]);
    const last = writer.write(['last', '"ok"']);
    await expect(first).resolves.toBeUndefined();
    await expect(bad).rejects.toThrow(/NOT NULL/);
    await expect(last).resolves.toBeUndefined();
    await writer.close();
    expect(await store.get('k1999')).toBe(1999);
    expect(await store.get('last')).toBe('ok');
    expect(await store.get('bad')).toBeUndefined();
  });

  it('a writer thread that cannot start fails the writes with its reason instead of hanging', async () => {
    const writer = new SqliteWriter(path.join(dir, 'missing', 'state.sqlite'), (error) => error);
    await expect(writer.write(['k', '1'])).rejects.toThrow(/unable to open|directory does not exist|SQLITE_CANTOPEN/i);
    await expect(writer.write(['k', '1'])).rejects.toThrow();
    await writer.close();
  });
});
