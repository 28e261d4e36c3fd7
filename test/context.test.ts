import { AsyncLocalStorage } from 'node:async_hooks';
import { setFlagsFromString } from 'node:v8';
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
  submit,
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
beforeEach(async () => {
  ex = executor(launch(await openWorkflow({ store: memoryStore() }), inProcess()));
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
});
