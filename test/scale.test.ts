// The shapes ensembles have, at the scale they have them: fan-out from one task, fan-in into one task,
// a long chain. Each must stay linear: adding an edge costs O(1), whatever the number of edges a task
// already has. (Speed itself is measured by `npm run bench`, never by timed assertions here.)
import {
  defineTask,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  type Task,
  type TaskRecord,
} from 'scalems';

// 20 000 here (jest runs code several times slower than node); `npm run bench` runs each shape at 100 000
const N = 20_000;

/** A store whose writes are counted per key, and whose content can be copied into a new one (a crash). */
function countingStore(): ReturnType<typeof memoryStore> & { writes: Map<string, number> } {
  const inner = memoryStore();
  const writes = new Map<string, number>();
  return {
    ...inner,
    writes,
    async setMany(entries) {
      for (const [k] of entries) writes.set(k, (writes.get(k) ?? 0) + 1);
      await inner.setMany(entries);
    },
  };
}

describe('scale shapes', () => {
  jest.setTimeout(120_000);

  it(`fan-out: ${N.toLocaleString('en')} tasks from one; the upstream record is not rewritten per dependent`, async () => {
    const store = countingStore();
    const wf = await openWorkflow({ store, name: 'fan-out' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const prepare = ex.submit(async () => {
      await gate;
      return 2;
    });
    while (prepare.record?.state !== 'running') await wf.flushed();
    const before = prepare.record;
    const written = store.writes.get(`task:${prepare.id}`);
    const members: Array<Task<number>> = [];
    for (let i = 0; i < N; i++) members.push(ex.submit(async (base: number, k: number) => base * k, prepare, i));
    await wf.flushed();
    // every dependent was added as an edge, yet the upstream's record is the same value, not written again
    expect(prepare.record).toBe(before);
    expect(store.writes.get(`task:${prepare.id}`)).toBe(written);
    release();
    const results = await Promise.all(members);
    expect(results.length).toBe(N);
    expect(results.every((r, i) => r === 2 * i)).toBe(true);
    expect(wf.state.counts.succeeded).toBe(N + 1);
    await wf.close();
  });

  it(`fan-out: when the one upstream fails, all ${N.toLocaleString('en')} dependents fail with UpstreamFailed`, async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'fan-out-fail' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    const prepare = ex.submit(async (): Promise<number> => {
      await new Promise((resolve) => setTimeout(resolve, 10));
      throw new RangeError('no input deck');
    });
    const members = Array.from({ length: N }, (_, i) => ex.submit(async (b: number, k: number) => b + k, prepare, i));
    const outcomes = await Promise.allSettled(members);
    expect(
      outcomes.filter((o) => o.status === 'rejected' && (o.reason as Error).name === 'UpstreamFailedError'),
    ).toHaveLength(N);
    expect(wf.state.counts.failed).toBe(N + 1);
    await wf.close();
  });

  it(`fan-in: one task takes ${N.toLocaleString('en')} inputs`, async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'fan-in' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    const members = Array.from({ length: N }, (_, i) => ex.submit(async (k: number) => k, i));
    const total = ex.submit(async (xs: number[]) => xs.reduce((a, b) => a + b, 0), members);
    expect(await total).toBe((N * (N - 1)) / 2);
    expect(total.record?.inputs).toHaveLength(N);
    await wf.close();
  });

  it(`chain: ${N.toLocaleString('en')} tasks, each the input of the next`, async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'chain' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    let last: Task<number> = ex.submit(async () => 0);
    for (let i = 1; i < N; i++) last = ex.submit(async (x: number, _step: number) => x + 1, last, i);
    expect(await last).toBe(N - 1);
    await wf.close();
  });

  it('edges are rebuilt on resume: a restored dependent runs once its restored upstream succeeds', async () => {
    const first = countingStore();
    const wf1 = await openWorkflow({ store: first, name: 'edges' });
    const ex1 = executor(launch(wf1, inProcess()), { worker: { cores: 4 } });
    hang = true; // in flight when the first process "dies"
    ex1.submit(down, ex1.submit(upstream, 1));
    await wf1.flushed();
    // the crash: a second process opens a copy of what the first had written
    const copy = memoryStore();
    await copy.setMany(await first.entries<TaskRecord>());
    const wf2 = await openWorkflow({ store: copy, name: 'edges' });
    expect(wf2.state.counts.new).toBe(2);
    const ex2 = executor(launch(wf2, inProcess()), { worker: { cores: 4 } });
    hang = false;
    // both submitted again: neither adds its edges (they are part of the ids); the restore made them
    const result = ex2.submit(down, ex2.submit(upstream, 1));
    let timer: NodeJS.Timeout | undefined;
    const never = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error('the restored dependent never became ready')), 10_000);
    });
    expect(await Promise.race([result, never])).toBe(11);
    clearTimeout(timer);
    await wf2.close();
  });
});

let hang = false;
const upstream = defineTask('scale-test.upstream', async (x: number): Promise<number> => {
  if (hang) await new Promise(() => undefined);
  return x * 10;
});
const down = defineTask('scale-test.down', async (x: number) => x + 1);
