// examples/cluster.ts as a user runs it: `bash scripts/cluster-example.sh 4` starts two `scalems worker`
// processes (2 cores and 1 core) on the test Redis, runs the driver on bullmq(), stops the workers and
// removes its keys. Everything asserted here is the example's own output (and the files it left).
import { execFile } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REDIS_ADDRESS, describeWithService } from './support/services';

const run = promisify(execFile);
const ROOT = join(__dirname, '..');

/** What the simulation of each member ends at (xorshift32 seeded by the member, 5 000 000 steps): deterministic. */
const FINALS = ['-7.347', '-363.338', '-120.490', '-576.821'];

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

describeWithService('redis', 'examples/cluster.ts: an ensemble on bullmq() with two scalems workers', () => {
  let out = '';
  let workerA = '';
  let workerB = '';

  beforeAll(async () => {
    const { stdout } = await run('bash', ['scripts/cluster-example.sh', '4'], {
      cwd: ROOT,
      timeout: 150_000,
      env: { ...process.env, SCALEMS_REDIS_URL: `redis://${REDIS_ADDRESS}` },
    });
    out = stdout;
    const worker = (name: string, cores: number): string => {
      const m = new RegExp(`^cluster-example: worker ${name}: scalems worker (\\S+): ${cores} cores`, 'm').exec(out);
      if (m === null) throw new Error(`worker ${name} did not say it started (${cores} cores):\n${out}`);
      return m[1]!;
    };
    workerA = worker('a', 2);
    workerB = worker('b', 1);
  }, 180_000);

  it('runs every member on one of the two workers, with the results the task function computes', () => {
    expect(workerA).not.toBe(workerB);
    for (const [member, final] of FINALS.entries()) {
      expect(out).toMatch(
        new RegExp(`^member ${member}: final ${final} \\(worker (${escape(workerA)}|${escape(workerB)})\\)$`, 'm'),
      );
    }
    expect(out).toMatch(/^ensemble: 4 members on (1 worker|2 workers)$/m);
  });

  it('sends the 2-core analysis to the 2-core worker only, and the 1-core worker never serves its queue', () => {
    const mean = FINALS.reduce((s, f) => s + Math.abs(Number(f)), 0) / FINALS.length;
    const m =
      /^analysis on 2 cores: mean distance (\d+\.\d{3}) over 4 members, farthest member (\d) \(worker (\S+)\)$/m.exec(
        out,
      );
    expect(m).not.toBeNull();
    expect(Math.abs(Number(m![1]) - mean)).toBeLessThan(0.002);
    expect(m![2]).toBe('3');
    expect(m![3]).toBe(workerA);
    expect(out).toContain(`[a] scalems worker ${workerA}: serving tasks.c2.g0.m0 (1 at once)`);
    expect(out).toContain(`[a] scalems worker ${workerA}: serving tasks.c1.g0.m0 (2 at once)`);
    expect(out).toContain(`[b] scalems worker ${workerB}: serving tasks.c1.g0.m0 (1 at once)`);
    expect(out).not.toMatch(/^\[b\] .*tasks\.c2/m);
  });

  it('runs the program under a worker (a child of its spawner), in a working directory under the driver’s .scalems', () => {
    const m = /^executable: largest distance (\d+\.\d{3}) \(worker (\S+), in (\S+)\)$/m.exec(out);
    expect(m).not.toBeNull();
    expect(m![1]).toBe('576.821');
    expect([workerA, workerB]).toContain(m![2]);
    expect(m![3]).toMatch(/^\.scalems\/cluster-example\/tasks\/executable_sh-[0-9a-f]+\/attempt-1$/);
    const stdout = readFileSync(join(ROOT, m![3]!, 'stdout'), 'utf8')
      .trim()
      .split('\n');
    expect(Number(stdout[0]).toFixed(3)).toBe('576.821');
    expect(stdout[1]).toBe(m![2]);
  });

  it('ends with every task succeeded, both workers closed after SIGTERM, and the run’s keys removed', () => {
    expect(out).toMatch(/^tasks by state: succeeded 6$/m);
    for (const [name, worker] of [
      ['a', workerA],
      ['b', workerB],
    ] as const) {
      expect(out).toContain(`[${name}] scalems worker ${worker}: SIGTERM, finishing the running tasks`);
      expect(out).toContain(`[${name}] scalems worker ${worker}: closed`);
    }
    expect(out).not.toContain('did not stop within');
    expect(out).toMatch(/^cluster-example: removed [1-9]\d* keys of prefix scalems-example-\d+-\d+ from Redis$/m);
    expect(existsSync(join(ROOT, '.scalems', 'cluster-example', 'tasks'))).toBe(true);
  });
});
