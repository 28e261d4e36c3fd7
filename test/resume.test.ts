import { spawn, execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { sqliteStore } from 'scalems/node';
import type { TaskRecord } from 'scalems';

const root = join(__dirname, '..');
const fixture = join(__dirname, 'fixtures', 'resume-run.ts');
const MEMBERS = 24;

const readLog = (file: string): string[] =>
  existsSync(file) ? readFileSync(file, 'utf8').split('\n').filter(Boolean) : [];

async function records(file: string): Promise<Map<string, TaskRecord>> {
  const store = sqliteStore(file, { readonly: true });
  try {
    return new Map(
      (await store.entries<TaskRecord>()).filter(([k]) => k.startsWith('task:')).map(([, r]) => [r.id, r]),
    );
  } finally {
    await store.close();
  }
}

describe('resume after a crash (SIGKILL) on a SQLite store', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'scalems-resume-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('finishes the work in a second run: every result correct, no succeeded task run twice, nothing recorded lost', async () => {
    const file = join(dir, 'state.sqlite');
    const logFile = join(dir, 'runs.log');
    // node itself runs the workflow (tsx's CLI would run it in a child of its own, out of reach of the kill)
    const args = ['--require', 'tsx/cjs', fixture, file, String(MEMBERS), logFile];
    const options = { cwd: root };

    // run 1: killed with SIGKILL once a few members have finished (and, settled over 50 ms ago, been written)
    const first = spawn(process.execPath, args, { ...options, stdio: 'ignore' });
    const exited = new Promise<NodeJS.Signals | null>((resolve) =>
      first.on('exit', (_code, signal) => resolve(signal)),
    );
    while (readLog(logFile).filter((l) => l.startsWith('end')).length < 10) await new Promise((r) => setTimeout(r, 20));
    process.kill(first.pid!, 'SIGKILL');
    expect(await exited).toBe('SIGKILL');
    const killedAt = readLog(logFile).length;
    const afterCrash = await records(file);
    const succeeded = [...afterCrash.values()].filter((r) => r.state === 'succeeded');
    expect(succeeded.length).toBeGreaterThan(0);
    expect(succeeded.length).toBeLessThan(MEMBERS);
    // the dead process's lock is still there
    expect(JSON.parse(readFileSync(`${file}.lock`, 'utf8'))).toMatchObject({ pid: first.pid });

    // run 2: takes the stale lock over and finishes
    const { stdout } = await promisify(execFile)(process.execPath, args, { ...options, timeout: 60_000 });
    const expected = Array.from({ length: MEMBERS }, (_, n) => n * n).reduce((a, b) => a + b, 0);
    expect(JSON.parse(stdout.trim())).toEqual({ total: expected });

    const secondRun = readLog(logFile).slice(killedAt);
    for (const rec of succeeded) {
      const n = (rec.result as { n: number }).n;
      expect(secondRun).not.toContain(`start ${n}`);
    }
    const final = await records(file);
    for (const rec of succeeded)
      expect(final.get(rec.id)).toMatchObject({ state: 'succeeded', result: rec.result, attempts: rec.attempts });
    const members = [...final.values()].filter((r) => r.name === 'resume.member');
    expect(members).toHaveLength(MEMBERS);
    for (const m of members)
      expect(m).toMatchObject({
        state: 'succeeded',
        result: { n: m.args[0] as number, square: (m.args[0] as number) ** 2 },
      });
    // at-least-once: every member started at least once over both runs, and ran to the end at least once
    for (let n = 0; n < MEMBERS; n++) expect(readLog(logFile)).toContain(`end ${n}`);
  }, 90_000);
});
