import {
  InvalidRequirementsError,
  UnsatisfiableRequirementsError,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  task,
  withRequirements,
  call,
  type Runtime,
} from 'scalems';

let rt: Runtime;
beforeEach(async () => {
  rt = launch(await openWorkflow({ store: memoryStore() }), inProcess());
});
const work = async (n: number): Promise<number> => n;

describe('requirements', () => {
  it('withRequirements validates when the pipeline is built, naming the field and the expected type', () => {
    expect(() => withRequirements({ walltime: '60s' } as never)).toThrow(InvalidRequirementsError);
    expect(() => withRequirements({ walltime: '60s' } as never)).toThrow(
      /walltime: expected a positive number of seconds up to 2147483 \(about 24.8 days\), got "60s"/,
    );
    expect(() => withRequirements({ ranks: 1.5 } as never)).toThrow(/ranks: expected a positive integer, got 1.5/);
  });

  it('refuses a walltime or backoff longer than a JavaScript timer keeps (it would fire at once)', () => {
    expect(() => withRequirements({ walltime: 3e6 })).toThrow(/walltime: expected a positive number of seconds up to/);
    expect(() => withRequirements({ retries: { max: 1, backoff: 3e6 } })).toThrow(/retries.backoff: expected/);
    expect(() => withRequirements({ walltime: 2_000_000, retries: { max: 1, backoff: 2_000_000 } })).not.toThrow();
  });

  it('rejects unknown fields by path, including in the Slurm pass-through', () => {
    expect(() => withRequirements({ core: 2 } as never)).toThrow(
      /withRequirements\(\.\.\.\)\.core: unknown field "core"/,
    );
    expect(() => withRequirements({ slurm: { partition: 'debug', qso: 'high' } } as never)).toThrow(
      /slurm\.qso: unknown field "qso"/,
    );
    const err = (() => {
      try {
        withRequirements({ env: { A: 1 } } as never);
      } catch (e) {
        return e as InvalidRequirementsError;
      }
      return undefined;
    })();
    expect(err?.problems).toEqual([expect.stringMatching(/env\.A: expected a string value, got 1/)]);
  });

  it('accepts every documented field', () => {
    expect(() =>
      withRequirements({
        ranks: 2,
        coresPerRank: 2,
        gpusPerRank: 0,
        memoryMB: 100,
        walltime: 10,
        env: { OMP_NUM_THREADS: '2' },
        retries: { max: 2, backoff: 1, factor: 2 },
        slurm: { partition: 'debug', account: 'a', constraint: 'c', qos: 'q' },
      }),
    ).not.toThrow();
  });

  it('executor requirements are validated at creation', () => {
    expect(() => executor(rt, { worker: { cores: 0 } })).toThrow(
      /executor worker requirements\.cores: expected a positive integer, got 0/,
    );
    expect(() => executor(rt, { task: { walltime: -1 } })).toThrow(InvalidRequirementsError);
  });

  it('task defaults the worker can never satisfy are refused at executor creation, naming both figures', () => {
    expect(() => executor(rt, { worker: { cores: 2 }, task: { ranks: 2, coresPerRank: 2 } })).toThrow(
      UnsatisfiableRequirementsError,
    );
    expect(() => executor(rt, { worker: { cores: 2 }, task: { ranks: 2, coresPerRank: 2 } })).toThrow(
      /needs 4 cores \(ranks 2 × coresPerRank 2\) but the executor has 2/,
    );
  });

  it('a task that asks for more than its executor can ever provide fails at once, naming both figures', async () => {
    const ex = executor(rt, { worker: { cores: 2, memoryMB: 1000 } });
    const big = ex.submit({ ...call(work, 1), requirements: { ranks: 3 } });
    expect(big.state).toBe('failed');
    await expect(big).rejects.toThrow(/needs 3 cores \(ranks 3 × coresPerRank 1\) but the executor has 2/);
    const hungry = ex.submit({ ...call(work, 2), requirements: { memoryMB: 4000 } });
    await expect(hungry).rejects.toThrow(/needs 4000 MB of memory but the executor has 1000 MB/);
    expect(await ex.submit(work, 3)).toBe(3);
  });

  it('spec requirements merge over the executor defaults', async () => {
    const ex = executor(rt, { task: { walltime: 30, env: { A: '1' } } });
    const t = ex.submit({ ...call(work, 1), requirements: { memoryMB: 10 } });
    await t;
    expect(t.record?.requirements).toEqual({ walltime: 30, env: { A: '1' }, memoryMB: 10 });
  });

  it('task() is cold: building it submits nothing', async () => {
    const wf = rt.workflow;
    const spec$ = task(work, 1);
    await new Promise((r) => setTimeout(r, 5));
    expect(wf.state.counts.submitted + wf.state.counts.succeeded).toBe(0);
    const specs: unknown[] = [];
    spec$.subscribe((s) => specs.push(s));
    expect(specs).toEqual([expect.objectContaining({ kind: 'function', name: 'work', args: [1] })]);
  });
});
