import { firstValueFrom, from, lastValueFrom, toArray } from 'rxjs';
import {
  DuplicateLabelError,
  InvalidTaskDescriptionError,
  TaskCancelledError,
  UnserializableValueError,
  UpstreamFailedError,
  WalltimeExceededError,
  call,
  currentTask,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submit,
  submitOn,
  withExecutor,
  type Runtime,
  type Workflow,
} from 'scalems';

/** A timer that does not keep the test process alive once the test is over. */
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms).unref());
let wf: Workflow;
let rt: Runtime;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  rt = launch(wf, inProcess());
});

/** Resolves once `ok()` holds (checked every 5 ms), failing after 5 s. */
async function waitUntil(ok: () => boolean): Promise<void> {
  for (const end = Date.now() + 5000; !ok(); await sleep(5))
    if (Date.now() > end) throw new Error('waitUntil: timed out');
}

/** A task function that records how many of its kind run at once. */
function gauge(): { fn: (id: number) => Promise<number>; max: () => number } {
  let running = 0;
  let max = 0;
  return {
    fn: async (id: number) => {
      running++;
      max = Math.max(max, running);
      await sleep(5);
      running--;
      return id;
    },
    max: () => max,
  };
}

describe('executor', () => {
  it('tasks take upstream results as arguments; the edge is recorded and the downstream waits', async () => {
    const ex = executor(rt);
    const order: string[] = [];
    const produce = async (n: number): Promise<number> => {
      await sleep(10);
      order.push('produce');
      return n;
    };
    const consume = async (x: number, y: number): Promise<number> => {
      order.push('consume');
      return x + y;
    };
    const a = ex.submit(produce, 1);
    const b = ex.submit(consume, a, 2);
    expect(b.state).toBe('submitted');
    expect(await b).toBe(3);
    expect(order).toEqual(['produce', 'consume']);
    expect(b.record?.inputs).toEqual([a.id]);
    expect(b.record?.args).toEqual([{ $task: a.id }, 2]);
  });

  it('a downstream task fails with UpstreamFailed when an input fails, transitively', async () => {
    const ex = executor(rt);
    const bad = ex.submit(async () => {
      throw new RangeError('bad input');
    });
    const mid = ex.submit(async (x: unknown) => x, bad);
    const end = ex.submit(async (x: unknown) => x, mid);
    await expect(bad).rejects.toThrow(RangeError);
    await expect(mid).rejects.toBeInstanceOf(UpstreamFailedError);
    await expect(end).rejects.toThrow(/input task .* failed/);
    expect(((await end.then(undefined, (e: unknown) => e)) as UpstreamFailedError).upstreamId).toBe(mid.id);
    // submitting after the failure fails at once too
    await expect(ex.submit(async (x: unknown, _tag: string) => x, bad, 'late')).rejects.toBeInstanceOf(
      UpstreamFailedError,
    );
  });

  it('state$ follows the life cycle and completes when the task settles', async () => {
    const ex = executor(rt);
    const t = ex.submit(async () => {
      await sleep(5);
      return 'done';
    });
    const states = lastValueFrom(t.state$.pipe(toArray()));
    expect(await states).toEqual(['ready', 'running', 'succeeded']);
    expect(t.record).toMatchObject({ state: 'succeeded', attempts: 1, result: 'done' });
    expect(t.record?.finishedAt).toBeGreaterThanOrEqual(t.record!.startedAt!);
  });

  it('a handle has only its own members: a misspelt one does not compile (and RxJS still takes it)', async () => {
    const t = executor(rt).submit(async () => 'done');
    // RxJS's interop key, typed string | symbol, once gave Task a string index signature: these compiled
    // @ts-expect-error -- a Task is PromiseLike (then), not a Promise: it has no catch()
    expect(t.catch).toBeUndefined();
    // @ts-expect-error -- a misspelt member
    expect(t.reslut).toBeUndefined();
    expect(await lastValueFrom(from(t))).toBe('done');
  });

  it('a thrown value that is not an Error comes back as an Error with it as the message, as from other backends', async () => {
    const ex = executor(rt);
    const throws = async (kind: string): Promise<never> => {
      throw kind === 'null' ? null : kind === 'number' ? 42 : kind === 'symbol' ? Symbol('s') : 'plain text';
    };
    const messages: string[] = [];
    for (const kind of ['null', 'number', 'symbol', 'text']) {
      // before: the handle rejected with the value itself (null: err.message threw)
      const err: unknown = await ex.submit(throws, kind).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(Error);
      messages.push((err as Error).message);
    }
    expect(messages).toEqual(['null', '42', 'Symbol(s)', 'plain text']);
  });

  it('an error or a result that cannot be read fails its task, and the process goes on', async () => {
    const ex = executor(rt);
    const throwing = (what: string): PropertyDescriptor => ({
      enumerable: true,
      get: () => {
        throw new Error(`${what} getter`);
      },
    });
    const throwsOdd = async (): Promise<never> => {
      throw Object.defineProperty(new Error('with a bad field'), 'field', throwing('field'));
    };
    const returnsOdd = async (): Promise<object> => Object.defineProperty({}, 'x', throwing('result'));
    // before: each was an uncaught error thrown out of the executor's settling, which ended the process
    await expect(ex.submit(throwsOdd)).rejects.toThrow('with a bad field');
    const returned = ex.submit(returnsOdd);
    await expect(returned).rejects.toThrow(UnserializableValueError);
    await expect(returned).rejects.toThrow(/returned a value that cannot be read: reading it threw result getter/);
    expect(returned.state).toBe('failed');
    await expect(ex.submit(async () => 'still here')).resolves.toBe('still here');
  });

  it('a function that holds the event loop past its walltime fails with WalltimeExceededError when it returns', async () => {
    const ex = executor(rt);
    const busy = (ms: number): string => {
      const end = Date.now() + ms;
      while (Date.now() < end); // the walltime's timer cannot fire meanwhile
      return 'done';
    };
    // before: it succeeded, 0.4 s into a 0.2 s walltime
    const late = ex.submit({ ...call(busy, 400), requirements: { walltime: 0.2 } });
    await expect(late).rejects.toThrow(WalltimeExceededError);
    await expect(late).rejects.toThrow(/walltime of 0.2 s: it ran 0\.[4-9]\d* s without giving the event loop back/);
    expect(await ex.submit({ ...call(busy, 10), requirements: { walltime: 0.2 } })).toBe('done');
  });

  it('a function stopped while it runs keeps its cores until it settles: neither its retry nor another task runs beside it', async () => {
    const ex = executor(rt, { worker: { cores: 1 } });
    const spans: Array<[string, number, number]> = [];
    const t0 = Date.now();
    // ignores its signal: goes on 150 ms after its walltime (and after a cancel)
    const stubborn = async (name: string): Promise<string> => {
      const start = Date.now() - t0;
      await sleep(250);
      spans.push([name, start, Date.now() - t0]);
      return name;
    };
    const timed = ex.submit({ ...call(stubborn, 'timed'), requirements: { walltime: 0.1, retries: 1 } });
    const other = ex.submit(stubborn, 'other');
    await expect(timed).rejects.toThrow(WalltimeExceededError);
    const cancelled = ex.submit(stubborn, 'cancelled');
    const after = ex.submit(stubborn, 'after');
    await sleep(20);
    await waitUntil(() => cancelled.state === 'running');
    cancelled.cancel();
    await expect(cancelled).rejects.toThrow(TaskCancelledError);
    expect(await other).toBe('other');
    expect(await after).toBe('after');
    await waitUntil(() => spans.length === 5); // both attempts of timed, other, cancelled, after
    // one core: no two spans overlap
    const sorted = [...spans].sort((a, b) => a[1] - b[1]);
    for (let i = 1; i < sorted.length; i++) expect(sorted[i]![1]).toBeGreaterThanOrEqual(sorted[i - 1]![2] - 1);
  });

  it('labels are settable once and unique per workflow', async () => {
    const ex = executor(rt);
    const a = ex.submit(async () => 1);
    a.label = 'first';
    expect(a.label).toBe('first');
    expect(() => {
      a.label = 'again';
    }).toThrow(/already labelled "first"/);
    const b = ex.submit(async () => 2);
    expect(() => {
      b.label = 'first';
    }).toThrow(DuplicateLabelError);
    expect(() => ex.submit({ ...call(async () => 3), label: 'first' })).toThrow(/"first" is already used by task/);
    await a;
    expect(wf.labelled('first')).toBe(a.id);
  });

  it('a label that is not a non-empty string is refused with InvalidTaskDescriptionError, nothing recorded', async () => {
    const ex = executor(rt);
    const f = async (n: number): Promise<number> => n;
    for (const label of [42, {}, '', Object.create(null) as object]) {
      expect(() => ex.submit({ ...call(f, 1), label: label as string })).toThrow(InvalidTaskDescriptionError);
      expect(() => ex.submit({ ...call(f, 1), label: label as string })).toThrow(/a label must be a non-empty string/);
    }
    await wf.flushed();
    expect(wf.state.tasks.size).toBe(0);
    const t = ex.submit(f, 2);
    expect(() => {
      t.label = 7 as unknown as string;
    }).toThrow(InvalidTaskDescriptionError);
    expect(await t).toBe(2);
    expect(t.label).toBeUndefined();
  });

  it('cancel() aborts the running function through its signal and records the task as cancelled', async () => {
    const ex = executor(rt);
    let aborted: unknown;
    const t = ex.submit(async () => {
      const { signal } = currentTask();
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve()));
      aborted = signal.reason;
      return 'ignored';
    });
    const dependent = ex.submit(async (x: unknown) => x, t);
    await waitUntil(() => t.state === 'running'); // (a fixed 5 ms was not always enough on a loaded machine)
    t.cancel('user changed their mind');
    await expect(t).rejects.toBeInstanceOf(TaskCancelledError);
    expect(aborted).toBeInstanceOf(TaskCancelledError);
    expect(t.state).toBe('cancelled');
    await expect(dependent).rejects.toBeInstanceOf(UpstreamFailedError);
  });

  it('a task that awaits a child it submitted gives its slot back: nested submission cannot deadlock capacity 1', async () => {
    const ex = executor(rt, { worker: { cores: 1 } });
    const g = gauge();
    const leaf = async (n: number): Promise<number> => {
      await g.fn(n);
      return n;
    };
    const parent = async (n: number): Promise<number> => {
      await g.fn(-1);
      const { submit } = currentTask();
      const children = [submit(leaf, n), submit(leaf, n + 1)];
      const values = await Promise.all(children);
      const again = await submit(leaf, n + 10);
      return values[0]! + values[1]! + again;
    };
    const result = await Promise.race([ex.submit(parent, 1), sleep(3000).then(() => 'deadlock')]);
    expect(result).toBe(1 + 2 + 11);
    expect(g.max()).toBe(1);
    const child = [...wf.state.tasks.keys()].map((id) => wf.record(id)).find((r) => r?.name === 'leaf');
    expect(child?.parent).toMatch(/^parent-/);
  });

  it('a task that follows others through the observable side gives its slot back too: no deadlock', async () => {
    // two tasks each running an ensemble with submitOn on a full two-core executor; from(task) and subscribe on one
    const two = executor(rt, { worker: { cores: 2 } });
    const g = gauge();
    const member = async (n: number): Promise<number> => g.fn(n);
    const ensemble = async (n: number): Promise<number[]> =>
      lastValueFrom(from([n, n + 1, n + 2]).pipe(submitOn(two, member), toArray()));
    const both = Promise.all([two.submit(ensemble, 0), two.submit(ensemble, 10)]);
    const result = await Promise.race([both, sleep(3000).then(() => 'deadlock')]);
    expect(result).not.toBe('deadlock');
    expect((result as number[][]).map((xs) => [...xs].sort((a, b) => a - b))).toEqual([
      [0, 1, 2],
      [10, 11, 12],
    ]);
    const one = executor(rt, { worker: { cores: 1 } });
    const viaFrom = async (n: number): Promise<number> => firstValueFrom(from(currentTask().submit(member, n)));
    const viaSubscribe = async (n: number): Promise<number> => {
      const child = currentTask().submit(member, n);
      return new Promise<number>((resolve, reject) => child.subscribe({ next: resolve, error: reject }));
    };
    const followed = Promise.all([one.submit(viaFrom, 20), one.submit(viaSubscribe, 30)]);
    expect(await Promise.race([followed, sleep(3000).then(() => 'deadlock')])).toEqual([20, 30]);
    expect(g.max()).toBeLessThanOrEqual(2);
  });

  it('shut down, an executor still takes the children of its running tasks, so they can finish; nothing else', async () => {
    const ex = executor(rt, { worker: { cores: 1 } });
    let go!: () => void;
    const gate = new Promise<void>((resolve) => (go = resolve));
    const child = async (n: number): Promise<number> => n * 2;
    const parent = ex.submit(async (n: number) => {
      const { submit } = currentTask();
      await gate;
      return (await submit(child, n)) + 1;
    }, 20);
    await waitUntil(() => parent.state === 'running');
    await ex[Symbol.asyncDispose](); // the end of an `await using` block
    expect(() => ex.submit(child, 1)).toThrow(/has been shut down and accepts no new tasks/);
    go();
    expect(await parent).toBe(41);
    await ex.shutdown({ wait: true });
  });

  it('the ambient submit() inside a running task records the task as the parent, as currentTask().submit does', async () => {
    const ex = executor(rt, { worker: { cores: 2 } });
    const leafOf = async (n: number): Promise<number> => n + 1;
    const outer = async (n: number): Promise<number> => (await submit(leafOf, n)) * 2;
    const outerTask = ex.submit(outer, 20);
    expect(await outerTask).toBe(42);
    const child = [...wf.state.tasks.values()].find((r) => r.name === 'leafOf');
    expect(child?.parent).toBe(outerTask.id);
    // outside any task there is no parent
    const top = withExecutor(ex, () => submit(leafOf, 99));
    await top;
    expect(top.record?.parent).toBeUndefined();
  });
});

describe('a spec spread with a misspelt field', () => {
  it('is refused at submit, naming the field and the one it is near, rather than run without it', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const ex = executor(launch(wf, inProcess()));
    const slow = async (ms: number): Promise<number> => ms;
    // with `requirement`, the task ran its whole time with no walltime
    const typo = { ...call(slow, 1), requirement: { walltime: 0.2 } };
    expect(() => ex.submit(typo as never)).toThrow(InvalidTaskDescriptionError);
    expect(() => ex.submit(typo as never)).toThrow(/unknown field "requirement" \(did you mean "requirements"\?\)/);
    expect(() => ex.submit({ ...call(slow, 1), Key: 'r1' } as never)).toThrow(/unknown field "Key"/);
    expect(wf.state.tasks.size).toBe(0);
    expect(await ex.submit({ ...call(slow, 1), requirements: { walltime: 5 }, key: 'r1' })).toBe(1);
    await wf.close();
  });
});

describe('arrays of tasks as one argument', () => {
  it('gathers upstream results in order and records one edge per upstream task', async () => {
    const ex = executor(rt);
    const part = async (n: number): Promise<number> => {
      await sleep(5 - n);
      return n * n;
    };
    const parts = [1, 2, 3].map((n) => ex.submit(part, n));
    const sum = ex.submit(async (xs: number[]) => xs.reduce((a, b) => a + b, 0), parts);
    expect(await sum).toBe(14);
    expect(sum.record?.inputs).toEqual(parts.map((p) => p.id));
  });
});
