// A task that fails while nobody receives its failure is reported once, as a process warning; never otherwise.
import { from, lastValueFrom, toArray } from 'rxjs';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  call,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  UNOBSERVED_FAILURE,
  type Executor,
  type Workflow,
} from 'scalems';

const double = (n: number): number => n * 2;
const boom = (n: number): number => {
  throw new RangeError(`value ${n} out of range\nsecond line`);
};

let wf: Workflow;
let ex: Executor;
/** the warnings emitted (jest's sandboxed `process` does not pass them to `process.on('warning')`: see the end) */
let warnings: Array<{ message: string; type?: string; code?: string; detail?: string }>;
let spy: jest.SpyInstance;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore(), name: 'unobserved' });
  ex = executor(launch(wf, inProcess()));
  warnings = [];
  spy = jest.spyOn(process, 'emitWarning').mockImplementation(((message: string, options: object) => {
    const w = { message, ...(options as { type?: string; code?: string; detail?: string }) };
    if (w.code === UNOBSERVED_FAILURE) warnings.push(w);
  }) as typeof process.emitWarning);
});
afterEach(async () => {
  await wf.close();
  spy.mockRestore();
});

/** Lets the failures commit, be looked at (the turn after) and the warnings be emitted (process.nextTick). */
const settle = async (): Promise<void> => {
  await wf.flushed();
  await new Promise((r) => setTimeout(r, 20));
};

it('a failed task nobody awaits is reported once, naming the task, its label, the error’s first line and scalems status', async () => {
  const t = ex.submit(boom, 7);
  t.label = 'member-7';
  await settle();
  await settle();
  expect(warnings).toHaveLength(1);
  const w = warnings[0]!;
  expect(w.type).toBe('ScalemsWarning');
  expect(w.message).toContain('"member-7"');
  expect(w.message).toContain(t.id);
  expect(w.message).toContain('boom');
  expect(w.message).toContain('RangeError: value 7 out of range');
  expect(w.message).not.toContain('second line');
  expect(w.detail).toContain('scalems status');
});

it('is not reported when the task is awaited, subscribed to, or awaited later in the same turn; once when too late', async () => {
  await expect(ex.submit(boom, 1)).rejects.toThrow('value 1');
  ex.submit(boom, 2).subscribe({ error: () => undefined });
  const sameTurn = ex.submit(boom, 4);
  await Promise.resolve();
  sameTurn.then(undefined, () => undefined);
  const late = ex.submit(boom, 3);
  await settle();
  expect(warnings).toHaveLength(1); // boom(3): nobody held it when it failed
  await expect(late).rejects.toThrow('value 3');
  await settle();
  expect(warnings).toHaveLength(1);
  expect(warnings[0]!.message).toContain('value 3');
});

it('a failure with unobserved dependents is reported once, for its root, not per UpstreamFailedError', async () => {
  const root = ex.submit(boom, 1);
  const a = ex.submit(double, root);
  ex.submit(double, a);
  ex.submit(double, root);
  await settle();
  expect(warnings).toHaveLength(1);
  expect(warnings[0]!.message).toContain(root.id);
  expect(warnings[0]!.message).toContain('RangeError');
});

it('a failure received through a dependent (its UpstreamFailedError) is not reported', async () => {
  const root = ex.submit(boom, 1);
  const a = ex.submit(double, root);
  const b = ex.submit(double, a);
  await expect(b).rejects.toMatchObject({ name: 'UpstreamFailedError' });
  await settle();
  expect(warnings).toEqual([]);
});

it('pipelines receive their members’ failures: submitOn with settle, and in order behind a slower member', async () => {
  const settled = await lastValueFrom(from([1, 2, 3]).pipe(submitOn(ex, boom, { settle: true }), toArray()));
  expect(settled.map((s) => s.status)).toEqual(['rejected', 'rejected', 'rejected']);
  let open!: () => void;
  const gate = new Promise<void>((r) => (open = r));
  const maybe = async (n: number): Promise<number> => {
    if (n === 1) await gate;
    if (n === 2) throw new Error('member 2 failed');
    return n;
  };
  const ordered = lastValueFrom(from([1, 2]).pipe(submitOn(ex, maybe, { ordered: true }), toArray()));
  await settle(); // member 2 failed, but the pipeline holds it until member 1 is done
  expect(warnings).toEqual([]);
  open();
  await expect(ordered).rejects.toThrow('member 2 failed');
  await settle();
  expect(warnings).toEqual([]);
});

it('a failure retried into success is not reported; one that fails after its retries is, once', async () => {
  let calls = 0;
  const flaky = (n: number): number => {
    if (++calls === 1) throw new Error('once');
    return n;
  };
  ex.submit({ ...call(flaky, 1), requirements: { retries: 1 } });
  await settle();
  expect(warnings).toEqual([]);
  const failing = ex.submit({ ...call(boom, 5), requirements: { retries: 2 } });
  await settle();
  await settle();
  expect(warnings).toHaveLength(1);
  expect(failing.record?.attempts).toBe(3);
});

it('a cancelled task is not a failure to report', async () => {
  const never = (): Promise<number> => new Promise(() => undefined);
  const t = ex.submit(never);
  ex.submit(double, t);
  t.cancel();
  await settle();
  expect(warnings).toEqual([]);
});

it('on Node it is a real process warning with its code, printed once on stderr by a program that ends', () => {
  const repo = path.resolve(__dirname, '..');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-unobserved-'));
  try {
    const script = path.join(dir, 'main.ts');
    fs.writeFileSync(
      script,
      `import { executor, inProcess, launch, memoryStore, openWorkflow } from 'scalems';
      const codes: string[] = [];
      process.on('warning', (w) => codes.push((w as { code?: string }).code ?? ''));
      process.on('exit', () => console.log(JSON.stringify(codes)));
      const broken = (n: number): number => { throw new Error('broken ' + n); };
      void (async () => {
        const wf = await openWorkflow({ store: memoryStore(), name: 'script' });
        executor(launch(wf, inProcess())).submit(broken, 1).label = 'lonely';
      })();
      `,
    );
    const tsx = path.join(repo, 'node_modules', '.bin', 'tsx');
    const run = spawnSync(tsx, ['--tsconfig', path.join(repo, 'tsconfig.json'), script], {
      cwd: dir,
      encoding: 'utf8',
    });
    expect(run.status).toBe(0);
    expect(run.stdout.trim()).toBe(JSON.stringify([UNOBSERVED_FAILURE]));
    const printed = run.stderr.split('\n').filter((l) => l.includes(UNOBSERVED_FAILURE));
    expect(printed).toHaveLength(1);
    expect(printed[0]).toContain('task "lonely" (broken, ');
    expect(printed[0]).toContain('Error: broken 1');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}, 30_000);
