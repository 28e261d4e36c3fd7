// The disk of a running workflow's store fills up: the write fails with a typed error naming the store and
// "disk full", nothing is dropped, and once space is freed every record lands.
// Needs root (it mounts a small tmpfs): without root it is skipped loudly, except under CI=true, where it fails.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { executor, inProcess, launch, openWorkflow, type TaskRecord } from 'scalems';
import { sqliteStore } from 'scalems/node';
import { StoreWriteError } from '../../src/errors';

const isRoot = process.getuid?.() === 0;
const CI = process.env.CI === 'true';
if (!isRoot && !CI)
  console.warn(
    '\n' +
      '!'.repeat(78) +
      '\n!! SKIPPED test/faults/disk-full.test.ts: it mounts a small tmpfs, which needs root.\n' +
      '!! Run it as root (under CI=true it runs, and fails without root).\n' +
      '!'.repeat(78) +
      '\n',
  );

const describeAsRoot = isRoot || CI ? describe : describe.skip;

describeAsRoot('a store whose disk fills up during a run', () => {
  let mount: string;
  let mounted = false;
  beforeAll(() => {
    if (!isRoot) throw new Error('test/faults/disk-full.test.ts needs root to mount a tmpfs (CI=true: not skipped)');
    mount = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-full-'));
    const done = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m,mode=0700', 'tmpfs', mount], { encoding: 'utf8' });
    if (done.status !== 0) throw new Error(`mount -t tmpfs failed: ${done.stderr}`);
    mounted = true;
  });
  afterAll(() => {
    if (mounted && spawnSync('umount', [mount]).status !== 0) spawnSync('umount', ['-l', mount]);
    if (mount !== undefined) fs.rmSync(mount, { recursive: true, force: true });
  });

  /** Fills the file system with one file until it is full; returns its path. */
  function fill(): string {
    const filler = path.join(mount, 'filler');
    const fd = fs.openSync(filler, 'w');
    const chunk = Buffer.alloc(16 * 1024, 1);
    try {
      for (;;) fs.writeSync(fd, chunk);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'ENOSPC') throw error;
    } finally {
      fs.closeSync(fd);
    }
    return filler;
  }

  it('rejects with StoreWriteError (disk full), keeps the failed batches, and writes every record once space returns (close() again)', async () => {
    const file = path.join(mount, 'wf', 'state.sqlite');
    const wf = await openWorkflow({ name: 'full', store: sqliteStore(file) });
    const ex = executor(launch(wf, inProcess()));
    const work = async (n: number): Promise<{ n: number; text: string }> => ({ n, text: `${n}:`.padEnd(2000, 'x') });

    const first = Array.from({ length: 20 }, (_, n) => ex.submit(work, n));
    await Promise.all(first);
    await wf.flushed();

    const filler = fill();
    const rest = Array.from({ length: 400 }, (_, n) => ex.submit(work, 20 + n));
    expect((await Promise.all(rest)).length).toBe(400); // tasks run on: only the store's writes fail
    const error = await wf.flushed().then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(StoreWriteError);
    expect((error as StoreWriteError).reason).toBe('disk full');
    expect((error as StoreWriteError).path).toBe(file);
    expect((error as Error).message).toContain(file);
    expect((error as Error).message).toMatch(/disk is full.*free space/);
    // still full: a second flush tries again, and says so again
    await expect(wf.flushed()).rejects.toThrow(StoreWriteError);

    // closing while it is still full rejects the same way, and keeps the store open with the records
    await expect(wf.close()).rejects.toThrow(StoreWriteError);

    fs.unlinkSync(filler);
    await wf.close(); // again: the kept batches land, then the store closes

    const reader = sqliteStore(file, { readonly: true });
    try {
      const records = (await reader.entries<TaskRecord>()).filter(([key]) => key.startsWith('task:'));
      expect(records.length).toBe(420);
      expect(records.every(([, r]) => r.state === 'succeeded')).toBe(true);
      expect(new Set(records.map(([, r]) => (r.result as { n: number }).n)).size).toBe(420);
    } finally {
      await reader.close();
    }
  });

  it('a store that cannot be created or locked for lack of space says so, and leaves no empty lock', () => {
    const filler = fill();
    try {
      const file = path.join(mount, 'other', 'state.sqlite');
      fs.mkdirSync(path.dirname(file));
      let error: unknown;
      try {
        sqliteStore(file);
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(StoreWriteError);
      expect((error as StoreWriteError).reason).toBe('disk full');
      expect(fs.existsSync(`${file}.lock`)).toBe(false);
      expect(fs.readdirSync(path.dirname(file))).toEqual([]);
    } finally {
      fs.unlinkSync(filler);
    }
  });
});
