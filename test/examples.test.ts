import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const root = join(__dirname, '..');
const tsx = join(root, 'node_modules', '.bin', 'tsx');

/** Runs an example as a user would, in a fresh working directory. */
async function example(file: string, args: string[], cwd: string): Promise<string> {
  const { stdout } = await run(
    tsx,
    ['--tsconfig', join(root, 'tsconfig.json'), join(root, 'examples', file), ...args],
    { cwd, timeout: 60_000 },
  );
  return stdout;
}

describe('examples/ensemble.ts (the quick-start job)', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'scalems-example-'));
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('runs the ensemble on the embedded default (in-process, SQLite store) and prints results and counts', async () => {
    const out = await example('ensemble.ts', ['3'], cwd);
    expect(out).toMatch(/member 0: distance \d+\.\d{3}/);
    expect(out).toMatch(/mean distance over 3 members/);
    expect(out).toContain('tasks by state: succeeded 6');
    expect(out).toContain('finished by earlier runs, served from the store: 0');
    expect(existsSync(join(cwd, '.scalems', 'ensemble', 'state.sqlite'))).toBe(true);
  }, 60_000);

  it('a second run is served from the store and gives the same results', async () => {
    const first = await example('ensemble.ts', ['3'], cwd);
    expect(first).toContain('finished by earlier runs, served from the store: 6');
    const again = await example('ensemble.ts', ['4'], cwd);
    expect(again).toContain('finished by earlier runs, served from the store: 6');
    expect(again).toContain('tasks by state: succeeded 8');
    const lines = (s: string): string[] => s.split('\n').filter((l) => l.startsWith('member '));
    expect(lines(again).slice(0, 3)).toEqual(lines(first));
  }, 60_000);
});

describe('examples/retry.ts (identity and retry)', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'scalems-example-'));
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('a failed member runs again through retry(); a rerun is served; a changed deck runs again', async () => {
    const first = await example('retry.ts', ['300'], cwd);
    expect(first).toContain('temperature 300 -> done\ntemperature 301 -> done\ntemperature 302 -> done');
    expect(first).toContain('served from the store (earlier runs): 0; tasks by state: succeeded 3');
    expect(first).toContain('attempts, all runs: 4'); // member 2 failed once
    const again = await example('retry.ts', ['300'], cwd);
    expect(again).toContain('served from the store (earlier runs): 3; tasks by state: succeeded 3');
    expect(again).toContain('attempts, all runs: 4');
    const changed = await example('retry.ts', ['310'], cwd);
    expect(changed).toContain('temperature 310 -> done');
    expect(changed).toContain('tasks by state: succeeded 4');
    expect(changed).toContain('attempts, all runs: 5');
  }, 120_000);
});

describe('examples/events.ts (task events)', () => {
  it('prints each task’s events in order: retries, a failure and the failure it causes downstream', async () => {
    const cwd = mkdtempSync(join(tmpdir(), 'scalems-example-'));
    try {
      const out = await example('events.ts', [], cwd);
      const of = (label: string): string[] =>
        out
          .split('\n')
          .filter((l) => l.includes(` ${label} `))
          .map((l) =>
            l
              .replace(/^\+\s*\d+ ms\s+/, '')
              .replace(/\s+/g, ' ')
              .split(' ')
              .slice(0, 1)
              .join(''),
          );
      expect(of('sim-1')).toEqual(['submitted', 'started', 'succeeded']);
      expect(of('sim-2')).toEqual(['submitted', 'started', 'retrying', 'started', 'succeeded']);
      expect(of('sim-3')).toEqual(['submitted', 'started', 'retrying', 'started', 'failed']);
      expect(of('ana-3')).toEqual(['submitted', 'failed']);
      expect(out).toMatch(/failed +ana-3 +analyse +attempt 0 +UpstreamFailedError: input task "sim-3"/);
      expect(out).toContain('11, 21, failed');
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }, 60_000);
});

describe('examples/browser-app.ts (the app npm run bench bundles for a browser)', () => {
  let cwd: string;
  beforeAll(() => {
    cwd = mkdtempSync(join(tmpdir(), 'scalems-example-'));
  });
  afterAll(() => rmSync(cwd, { recursive: true, force: true }));

  it('runs in Node on memoryStore: six members, each chained to an analysis', async () => {
    const out = await example('browser-app.ts', [], cwd);
    expect(out).toMatch(/^member 0: distance \d+\.\d{3}$/m);
    expect(out).toMatch(/^member 5: distance \d+\.\d{3}$/m);
    expect(out).toContain('tasks by state: succeeded 12');
    expect(existsSync(join(cwd, '.scalems'))).toBe(false);
  }, 60_000);
});
