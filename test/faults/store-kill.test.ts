// A workflow writing heavily to its SQLite store is SIGKILLed again and again at seeded random moments (while
// opening, taking over the dead run's lock, running, writing). After each kill the store opens intact, nothing
// it recorded is lost or changed, and the next run runs only tasks it had not recorded as succeeded; the last
// run, left to finish, runs exactly those.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { sqliteStore } from 'scalems/node';
import { checkTaskRecord } from '../../src/store/record-check';
import { seeded } from '../support/work';

const repo = path.join(__dirname, '..', '..');
const fixture = path.join(repo, 'test', 'fixtures', 'faults', 'store-kill-run.ts');
const TASKS = 1200;
const KILLS = 8;
const SEED = Number(process.env.SCALEMS_FAULT_SEED ?? 20240611);

/** The succeeded tasks of the store (n → its result's text), after checking every record; opens it as a run does. */
async function recorded(file: string): Promise<Map<number, string>> {
  if (!fs.existsSync(file)) return new Map();
  const store = sqliteStore(file, { readonly: true }); // verify: PRAGMA quick_check
  try {
    const done = new Map<number, string>();
    for (const [key, value] of await store.entries()) {
      if (!key.startsWith('task:')) continue;
      checkTaskRecord(file, key, value);
      if (value.state !== 'succeeded') continue;
      const result = value.result as { n: number; text: string };
      expect(key).toBe(`task:${value.id}`);
      expect(result.text).toBe(`${result.n}:`.padEnd(8000, String.fromCharCode(97 + (result.n % 26))));
      done.set(result.n, result.text);
    }
    return done;
  } finally {
    await store.close();
  }
}

const ran = (log: string): number[] =>
  fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n').filter(Boolean).map(Number) : [];

describe('SIGKILL during heavy store writes', () => {
  let dir: string;
  beforeAll(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-kill-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it(`${KILLS} kills at seeded random moments: the store stays whole, and resume runs exactly the unrecorded tasks`, async () => {
    const file = path.join(dir, 'state.sqlite');
    const next = seeded(SEED);
    let before = new Map<number, string>();
    const history: string[] = [];
    for (let run = 0; run <= KILLS; run++) {
      const last = run === KILLS;
      const log = path.join(dir, `run-${run}.log`);
      const child = spawn(process.execPath, ['--require', 'tsx/cjs', fixture, file, String(TASKS), log], {
        cwd: repo,
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
      child.stderr.on('data', (chunk: Buffer) => (out += chunk.toString()));
      const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
      const opened = new Promise<void>((resolve) => child.stdout.on('data', () => out.includes('opened') && resolve()));
      const sleep = (ms: number): Promise<unknown> => new Promise((resolve) => setTimeout(resolve, ms));
      // one run in four is killed from its start (while node starts, or the store opens and its lock is taken
      // over), the others at a moment of their run
      const early = next() < 0.25;
      const delay = Math.round(early ? 300 + next() * 1200 : next() * 1000);
      if (!last) {
        await Promise.race([exited, early ? sleep(delay) : opened.then(() => sleep(delay))]);
        child.kill('SIGKILL');
      }
      await exited;
      if (last) expect(out).toContain('done');
      else expect(out).not.toMatch(/Error/);

      const after = await recorded(file); // opens intact (a damaged file throws StoreCorruptError)
      const thisRun = ran(log);
      const when = last ? 'not killed' : `killed ${delay} ms after ${early ? 'its start' : 'opening'}`;
      history.push(`run ${run}: ${when}, ran ${thisRun.length}, recorded ${after.size}`);
      // nothing recorded is lost or changed
      for (const [n, text] of before) expect(after.get(n)).toBe(text);
      // no task recorded as succeeded ran again
      expect(thisRun.filter((n) => before.has(n))).toEqual([]);
      if (last) {
        // the last run ran exactly the tasks not recorded, each once, and now every task is recorded
        const missing = Array.from({ length: TASKS }, (_, n) => n).filter((n) => !before.has(n));
        expect([...thisRun].sort((a, b) => a - b)).toEqual(missing);
        expect(after.size).toBe(TASKS);
      }
      before = after;
    }
    console.log(`store-kill (seed ${SEED}):\n  ${history.join('\n  ')}`);
    // the kills did land mid-run: several runs ran part of the work
    expect(history.filter((h) => /killed.* ran [1-9]/.test(h)).length).toBeGreaterThan(2);
  }, 60_000);
});
