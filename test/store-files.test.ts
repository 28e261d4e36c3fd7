// The files of a SQLite store: who may read them, what reopening writes, and reading another user's store.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { executor, inProcess, launch, openWorkflow, type TaskRecord } from 'scalems';
import { sqliteStore } from '../src/store/sqlite';
import type { Store } from '../src/store/store';
import { readRecords } from '../src/cli/locate';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-files-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

const mode = (p: string): number => fs.statSync(p).mode & 0o777;

/** Runs `n` tasks on a workflow at `file`, the last `running` of them left running when the store closes. */
async function run(file: string, n: number): Promise<void> {
  const wf = await openWorkflow({ name: 'files', store: sqliteStore(file) });
  const ex = executor(launch(wf, inProcess()), { worker: { cores: 4 } });
  await Promise.all(Array.from({ length: n }, (_, i) => ex.submit(async (x: number) => ({ x, env: 'SECRET' }), i)));
  await wf.close();
}

describe('store files are private to their owner', () => {
  test('the directory is made 0700, and the store, -wal, -shm and lock files are 0600 (umask 022)', async () => {
    const previous = process.umask(0o022);
    try {
      const file = path.join(dir, '.scalems', 'wf', 'state.sqlite');
      const store = sqliteStore(file);
      await store.set('task:x', { env: { TOKEN: 'secret' } });
      expect(mode(path.dirname(file))).toBe(0o700);
      expect(mode(path.join(dir, '.scalems'))).toBe(0o700);
      for (const suffix of ['', '-wal', '-shm', '.lock'])
        expect([suffix, mode(file + suffix)]).toEqual([suffix, 0o600]);
      await store.close();
    } finally {
      process.umask(previous);
    }
  });
});

/**
 * `base`, with every write it takes (`set`, `setMany`, `setManyChecked`, `setRecords`) recorded in `written`. A store
 * with a way of writing this does not know fails here, rather than have writes go by unseen.
 */
function recording(base: Store, written: Array<[string, unknown]>): Store {
  const known = ['set', 'setMany', 'setManyChecked', 'setRecords'];
  const writers = Object.keys(base).filter((name) => /^(set|write|put|append)/i.test(name));
  expect(writers.filter((name) => !known.includes(name))).toEqual([]);
  const many =
    <E extends readonly [string, unknown]>(write: ((entries: readonly E[]) => Promise<void>) | undefined) =>
    (entries: readonly E[]): Promise<void> => {
      written.push(...entries.map(([k, v]) => [k, v] as [string, unknown]));
      return write!(entries);
    };
  return {
    ...base,
    set: (key, value) => {
      written.push([key, value]);
      return base.set(key, value);
    },
    setMany: many(base.setMany.bind(base)),
    setManyChecked: base.setManyChecked && many(base.setManyChecked.bind(base)),
    setRecords: base.setRecords && many(base.setRecords.bind(base)),
  };
}

describe('reopening a store writes nothing that did not change', () => {
  test('a workflow reopened on 5 000 records writes none of them back', async () => {
    const file = path.join(dir, 'state.sqlite');
    await run(file, 5_000);
    const written: Array<[string, unknown]> = [];
    const counting = recording(sqliteStore(file), written);
    const wf = await openWorkflow({ name: 'files', store: counting });
    expect(wf.state.counts.succeeded).toBe(5_000);
    await wf.flushed();
    await wf.close();
    expect(written.map(([k]) => k)).toEqual([]);
  });

  test('only records that restoring changes (work in flight when the process died) are written back', async () => {
    const file = path.join(dir, 'state.sqlite');
    await run(file, 50);
    const raw = sqliteStore(file);
    const running = (await raw.get<TaskRecord>((await raw.keys()).find((k) => k.startsWith('task:'))!))!;
    await raw.set(`task:${running.id}`, { ...running, state: 'running', result: undefined });
    await raw.close();
    const written: Array<[string, unknown]> = [];
    const wf = await openWorkflow({ name: 'files', store: recording(sqliteStore(file), written) });
    await wf.flushed();
    await wf.close();
    expect(written.map(([k, v]) => [k, (v as TaskRecord).state])).toEqual([[`task:${running.id}`, 'new']]);
  });
});

describe('reading a store this user may not write (read-only, as `scalems status` does)', () => {
  const root = process.getuid?.() === 0;
  if (!root)
    console.warn(
      '\n!!! SKIPPED in test/store-files.test.ts: reading as another user and on a read-only mount need root.\n',
    );
  const asRoot = root ? test : test.skip;

  asRoot('another user reads a closed store (no -wal): nothing written, no error', async () => {
    const file = path.join(dir, 'wf', 'state.sqlite');
    await run(file, 5);
    fs.chmodSync(dir, 0o755);
    fs.chmodSync(path.dirname(file), 0o755);
    fs.chmodSync(file, 0o644);
    const before = fs.readdirSync(path.dirname(file));
    const locate = JSON.stringify(path.resolve(__dirname, '../src/cli/locate.ts'));
    const script = `require(${locate}).readRecords(${JSON.stringify(file)})
      .then((r) => console.log(r.length), (e) => console.log(e.name + ': ' + e.message))`;
    const done = spawnSync(process.execPath, ['--require', 'tsx/cjs', '-e', script], {
      encoding: 'utf8',
      uid: 65534,
      gid: 65534,
      cwd: path.join(__dirname, '..'),
    });
    expect(done.stdout.trim()).toBe('5');
    expect(fs.readdirSync(path.dirname(file))).toEqual(before);
  });

  asRoot('a store on a read-only file system is read without writing', async () => {
    const mount = path.join(dir, 'ro');
    fs.mkdirSync(mount);
    expect(spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', mount]).status).toBe(0);
    try {
      const file = path.join(mount, 'state.sqlite');
      await run(file, 5);
      // (a file still being closed makes the remount fail with EBUSY for a moment)
      let remount = spawnSync('mount', ['-o', 'remount,ro', mount], { encoding: 'utf8' });
      for (let i = 0; i < 20 && remount.status !== 0; i++) {
        await new Promise((resolve) => setTimeout(resolve, 100));
        remount = spawnSync('mount', ['-o', 'remount,ro', mount], { encoding: 'utf8' });
      }
      expect(remount.stderr).toBe('');
      expect((await readRecords(file)).length).toBe(5);
    } finally {
      if (spawnSync('umount', [mount]).status !== 0) spawnSync('umount', ['-l', mount]);
    }
  });
});
