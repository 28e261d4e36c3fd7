import { AsyncLocalStorage } from 'node:async_hooks';
import { setFlagsFromString } from 'node:v8';
import { Subject, from, lastValueFrom, map, range, retry, toArray } from 'rxjs';
import { runInNewContext } from 'node:vm';
import {
  NoAmbientScopeError,
  currentTask,
  currentWorkflow,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  call,
  submit,
  submitOn,
  withExecutor,
  withWorkflow,
  type Executor,
} from 'scalems';

/** `global.gc` when node runs with --expose-gc (npm test does), else enabled here. */
function gc(): () => void {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing !== undefined) return existing;
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
let ex: Executor;
let one: Executor;
beforeEach(async () => {
  const rt = launch(await openWorkflow({ store: memoryStore() }), inProcess());
  ex = executor(rt);
  one = executor(rt, { worker: { cores: 1 } });
});

describe('ambient scope', () => {
  it('submit() uses the ambient executor across awaits; outside a scope it says what to do', async () => {
    const double = async (n: number): Promise<number> => n * 2;
    const result = await withExecutor(ex, async () => {
      await sleep(1);
      return submit(double, 21);
    });
    expect(result).toBe(42);
    expect(() => submit(double, 1)).toThrow(NoAmbientScopeError);
    expect(() => submit(double, 1)).toThrow(/withExecutor\(executor, fn\)/);
    expect(withWorkflow(ex.workflow, () => currentWorkflow())).toBe(ex.workflow);
  });

  it('currentTask() gives id, label, attempt and signal inside a task, and submit() inside a task uses its executor', async () => {
    const inner = async (): Promise<string> => 'inner';
    const t = ex.submit(async () => {
      await sleep(1);
      const ctx = currentTask();
      const child = await submit(inner);
      return { id: ctx.id, label: ctx.label, attempt: ctx.attempt, aborted: ctx.signal.aborted, child };
    });
    t.label = 'outer';
    const seen = await t;
    expect(seen).toEqual({ id: t.id, label: 'outer', attempt: 1, aborted: false, child: 'inner' });
    expect(() => currentTask()).toThrow(/only available inside a running task/);
  });

  it('a task runs in the async context captured at submit (AsyncLocalStorage.snapshot)', async () => {
    const requestId = new AsyncLocalStorage<string>();
    const readIt = async (_after: unknown): Promise<string | undefined> => {
      await sleep(1);
      return requestId.getStore();
    };
    const slow = ex.submit(async () => sleep(10));
    // submitted inside the context, but started later, from the executor's own callbacks
    const t = requestId.run('request-42', () => ex.submit(readIt, slow));
    expect(await t).toBe('request-42');
  });

  it('a pipeline runs its members in the context it was subscribed in: those beyond its window and after retry()', async () => {
    const requestId = new AsyncLocalStorage<string>();
    const seen = async (tag: string, _n: number): Promise<string> => {
      await sleep(0);
      return `${tag}:${requestId.getStore() ?? 'none'}`;
    };
    // 300 members on one core: 256 are submitted at once, the rest as others settle (in the workflow's commit)
    const run = (tag: string): Promise<string[]> =>
      requestId.run(tag, () =>
        lastValueFrom(
          range(0, 300).pipe(
            map((n) => call(seen, tag, n)),
            submitOn(one),
            toArray(),
          ),
        ),
      );
    const [a, b] = await Promise.all([run('A'), run('B')]);
    expect(a.filter((x) => x !== 'A:A')).toEqual([]);
    expect(b.filter((x) => x !== 'B:B')).toEqual([]);

    // retry() subscribes again from the failure's delivery: the members it runs again see the context too
    let failures = 0;
    const once = async (n: number): Promise<string> => {
      await sleep(n);
      if (n === 5 && failures++ === 0) throw new Error('transient');
      return `${n}:${requestId.getStore() ?? 'none'}`;
    };
    const retried = await requestId.run('R', () =>
      lastValueFrom(from([5, 30, 40]).pipe(submitOn(one, once), toArray(), retry(1))),
    );
    expect(retried.sort()).toEqual(['30:R', '40:R', '5:R']);
  });

  it("an input that waits for the window runs in the context it came in, not the subscriber's", async () => {
    const requestId = new AsyncLocalStorage<string>();
    let open!: () => void;
    const opened = new Promise<void>((r) => (open = r));
    const seen = async (n: number): Promise<string> => {
      await opened;
      return `${n}:${requestId.getStore() ?? 'none'}`;
    };
    const inputs = new Subject<number>();
    const results = requestId.run('subscriber', () => lastValueFrom(inputs.pipe(submitOn(one, seen), toArray())));
    // fed from other contexts (requests, say), more than the window holds
    for (let n = 0; n < 300; n++) requestId.run(`request-${n}`, () => inputs.next(n));
    inputs.complete();
    open();
    const out = await results;
    expect(out).toHaveLength(300);
    expect(out.filter((x) => x !== `${x.split(':')[0]}:request-${x.split(':')[0]}`)).toEqual([]);
  });

  it('a runtime does not keep its executors once they have shut down (a long driver opens one per batch)', async () => {
    const rt = launch(ex.workflow, inProcess());
    let ref: WeakRef<object> | undefined;
    await (async () => {
      const batch = executor(rt, { worker: { cores: 1 } });
      ref = new WeakRef(batch);
      expect(await batch.submit(async () => 'done')).toBe('done');
      await batch.shutdown({ wait: true });
    })();
    const collect = gc();
    for (let i = 0; i < 5 && ref!.deref() !== undefined; i++) {
      await sleep(5);
      collect();
    }
    expect(ref!.deref()).toBeUndefined();
    await rt.shutdown();
  });

  it('releases the captured context once the task settles', async () => {
    const storage = new AsyncLocalStorage<{ payload: number[] }>();
    let ref: WeakRef<object> | undefined;
    let gate!: () => void;
    const opened = new Promise<void>((r) => (gate = r));
    const t = (() => {
      const payload = { payload: new Array<number>(100_000).fill(1) };
      ref = new WeakRef(payload);
      return storage.run(payload, () => ex.submit(async () => opened.then(() => 'done')));
    })();
    const collect = gc();
    await sleep(1);
    collect();
    expect(ref.deref()).toBeDefined(); // held while the task is pending
    gate();
    expect(await t).toBe('done');
    for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
      await sleep(5);
      collect();
    }
    expect(ref.deref()).toBeUndefined();
    expect(t.state).toBe('succeeded'); // the handle stays valid
  });

  it('releases the captured context of a failed or a cancelled task as it settles', async () => {
    const storage = new AsyncLocalStorage<{ payload: number[] }>();
    const refs: Array<WeakRef<object>> = [];
    const submitIn = (fn: () => Promise<unknown>): ReturnType<Executor['submit']> => {
      const payload = { payload: new Array<number>(100_000).fill(1) };
      refs.push(new WeakRef(payload));
      return storage.run(payload, () => ex.submit(fn));
    };
    const failed = submitIn(async () => {
      await sleep(1);
      throw new Error('failed on purpose');
    });
    // one that heeds its signal: a function still running holds its own context, whatever scalems does
    const cancelled = submitIn(
      async () =>
        new Promise<never>((_resolve, reject) => {
          const { signal } = currentTask();
          signal.addEventListener('abort', () => reject(signal.reason as Error));
        }),
    );
    await expect(failed).rejects.toThrow('failed on purpose');
    cancelled.cancel('not needed');
    await expect(cancelled).rejects.toThrow();
    const collect = gc();
    for (let i = 0; i < 5 && refs.some((r) => r.deref() !== undefined); i++) {
      await sleep(5);
      collect();
    }
    expect(refs.map((r) => r.deref() === undefined)).toEqual([true, true]);
    // still run again on request (in the context it is asked in)
    expect(failed.state).toBe('failed');
  });
});
