import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { MessageChannel } from 'node:worker_threads';
import { lastValueFrom, from, toArray } from 'rxjs';
import {
  call,
  defineTask,
  StoreClosedError,
  InvalidOptionsError,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  TaskCancelledError,
  type Store,
  type Task,
  type TaskRecord,
  type WorkflowState,
} from 'scalems';
import { sqliteStore } from 'scalems/node';

/** A memory store that records every batch written to it. */
function recordingStore(): Store & { batches: Array<Array<readonly [string, unknown]>> } {
  const inner = memoryStore();
  const batches: Array<Array<readonly [string, unknown]>> = [];
  return {
    ...inner,
    batches,
    async setMany(entries) {
      batches.push([...entries]);
      await inner.setMany(entries);
    },
  };
}

const square = defineTask('workflow-test.square', async (n: number) => n * n);

/** What a process started after this one stopped finds in `store`: its records, in a store of its own. */
async function restarted(store: Store): Promise<Store> {
  const copy = memoryStore();
  await copy.setMany(await store.entries());
  return copy;
}

describe('workflow state stream', () => {
  it('emits committed states in batches, with counts per state kept by the reducer', async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'batches' });
    const states: WorkflowState[] = [];
    wf.state$.subscribe((s) => states.push(s));
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 4 } });
    await lastValueFrom(from(Array.from({ length: 50 }, (_, i) => i)).pipe(submitOn(ex, square), toArray()));
    const last = states[states.length - 1]!;
    expect(last.name).toBe('batches');
    expect(last.counts).toEqual({ new: 0, submitted: 0, ready: 0, running: 0, succeeded: 50, failed: 0, cancelled: 0 });
    expect([...last.tasks.values()]).toHaveLength(50);
    // 50 tasks × 3 transitions: far fewer commits than changes
    expect(states.length).toBeLessThan(50);
    // states are immutable snapshots: an earlier one is unchanged by later commits
    expect(states[0]!.counts.succeeded).toBe(0);
  });

  it('writes only the records that changed, each once per batch', async () => {
    const store = recordingStore();
    const wf = await openWorkflow({ store });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    const a = ex.submit(square, 3);
    await a;
    await wf.flushed();
    const writtenBefore = store.batches.flat().length;
    const b = ex.submit(square, 4);
    await b;
    await wf.flushed();
    const later = store.batches.flat().slice(writtenBefore);
    expect(new Set(later.map(([k]) => k))).toEqual(new Set([`task:${b.id}`]));
    for (const batch of store.batches) expect(new Set(batch.map(([k]) => k)).size).toBe(batch.length);
    const final = later[later.length - 1]![1] as TaskRecord;
    expect(final).toMatchObject({ id: b.id, state: 'succeeded', result: 16, attempts: 1 });
  });

  it('writes behind: the commits of a short run reach the store as one batch, each record once in its last state', async () => {
    const store = recordingStore();
    const wf = await openWorkflow({ store });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    let commits = 0;
    wf.state$.subscribe(() => commits++);
    const tasks = [1, 2, 3, 4, 5].map((n) => ex.submit(square, n));
    await Promise.all(tasks);
    expect(commits).toBeGreaterThan(1); // submitted, started, finished in several commits...
    expect(store.batches).toHaveLength(0); // ...none of them written yet
    await new Promise((resolve) => setTimeout(resolve, 200)); // the write-behind window (50 ms) passes
    expect(store.batches).toHaveLength(1);
    expect(store.batches[0]!.map(([k]) => k).sort()).toEqual(tasks.map((t) => `task:${t.id}`).sort());
    for (const [, rec] of store.batches[0]!) expect(rec).toMatchObject({ state: 'succeeded', attempts: 1 });
    // flushed() does not wait for the window
    const six = ex.submit(square, 6);
    await six;
    await wf.flushed();
    expect(store.batches).toHaveLength(2);
    expect(store.batches[1]!.map(([k]) => k)).toEqual([`task:${six.id}`]);
  });

  it('writes the changes of tasks still in flight later (within a second), settled tasks sooner', async () => {
    const store = recordingStore();
    const wf = await openWorkflow({ store });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    const hang = ex.submit(async () => gate);
    const quick = ex.submit(square, 7);
    await quick;
    await new Promise((resolve) => setTimeout(resolve, 200));
    // the settled task is written; the running one is not yet
    expect(store.batches.flat().map(([k]) => k)).toEqual([`task:${quick.id}`]);
    await new Promise((resolve) => setTimeout(resolve, 1000));
    const hung = store.batches.flat().filter(([k]) => k === `task:${hang.id}`);
    expect(hung).toHaveLength(1);
    expect(hung[0]![1]).toMatchObject({ state: 'running' });
    release();
    await hang;
    await wf.flushed();
    expect(
      store.batches
        .flat()
        .filter(([k]) => k === `task:${hang.id}`)
        .map(([, r]) => (r as TaskRecord).state),
    ).toEqual(['running', 'succeeded']);
  });

  it('writes settled tasks while a long synchronous burst runs, not only at its end', async () => {
    const store = recordingStore();
    const wf = await openWorkflow({ store });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 64 } });
    // 20 000 tasks chained through microtasks only: no timer fires until they are all done
    await lastValueFrom(from(Array.from({ length: 20_000 }, (_, i) => i)).pipe(submitOn(ex, square), toArray()));
    expect(store.batches.length).toBeGreaterThan(1);
    await wf.flushed();
    const written = new Map(store.batches.flat().map(([k, v]) => [k, v as TaskRecord]));
    expect(written.size).toBe(20_000);
    for (const rec of written.values()) expect(rec.state).toBe('succeeded');
  });

  it('commits once for the changes of many events handled in one turn of the event loop', async () => {
    const wf = await openWorkflow({ store: memoryStore(), name: 'turns' });
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 20 } });
    const resolvers: Array<() => void> = [];
    const wait = defineTask('workflow-test.wait', async (n: number) => {
      await new Promise<void>((r) => resolvers.push(r));
      return n;
    });
    const tasks = Array.from({ length: 20 }, (_, i) => ex.submit(wait, i));
    while (resolvers.length < 20) await new Promise((r) => setTimeout(r, 1));
    await wf.flushed();
    const settledCommits: number[] = [];
    wf.state$.subscribe((s) => settledCommits.push(s.counts.succeeded));
    // 20 messages posted at once arrive in one turn, each a separate event followed by its own
    // microtasks (as worker threads' answers do)
    const { port1, port2 } = new MessageChannel();
    port2.on('message', (i: number) => resolvers[i]!());
    for (let i = 0; i < 20; i++) port1.postMessage(i);
    await Promise.all(tasks);
    port2.close();
    expect(settledCommits).toEqual([0, 20]); // the current state, then one commit with all of them
  });

  it('notifies only the tasks that changed', async () => {
    const wf = await openWorkflow({ store: memoryStore() });
    const ex = executor(launch(wf, inProcess()));
    const quiet = ex.submit(square, 1);
    await quiet;
    const heard: string[] = [];
    wf.watch(quiet.id, (r) => heard.push(r.state));
    await ex.submit(square, 2);
    expect(heard).toEqual([]);
  });

  it('reopening on the same store restores every record; succeeded work is served, not run again', async () => {
    const store = memoryStore();
    let runs = 0;
    const count = defineTask('workflow-test.count', async (n: number) => {
      runs++;
      return n + 1;
    });
    const first = await openWorkflow({ store });
    const ex1 = executor(launch(first, inProcess()));
    const t = ex1.submit(count, 1);
    t.label = 'counted';
    expect(await t).toBe(2);
    await first.flushed();

    const second = await openWorkflow({ store: await restarted(store) });
    expect(second.state.counts.succeeded).toBe(1);
    expect(second.labelled('counted')).toBe(t.id);
    const ex2 = executor(launch(second, inProcess()));
    const again = ex2.submit(count, 1);
    expect(again.id).toBe(t.id);
    expect(await again).toBe(2);
    expect(runs).toBe(1);
  });

  it('a store is one open workflow’s: a second open of it in this process is refused until the first closes', async () => {
    const store = memoryStore();
    const first = await openWorkflow({ store, name: 'first' });
    // before: taken; both then ran the same tasks, and the first to close closed the store under the other
    const error = await openWorkflow({ store, name: 'second' }).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(InvalidOptionsError);
    expect((error as Error).message).toMatch(/store of workflow "first", which is open in this process/);
    await executor(launch(first, inProcess())).submit(async () => 1);
    await first.close();
    const file = join(mkdtempSync(join(tmpdir(), 'scalems-one-store-')), 'state.sqlite');
    const sqlite = sqliteStore(file);
    const a = await openWorkflow({ store: sqlite, name: 'a' });
    await expect(openWorkflow({ store: sqlite, name: 'b' })).rejects.toThrow(InvalidOptionsError);
    await a.close();
    rmSync(dirname(file), { recursive: true, force: true });
  });

  it('tasks that were in flight when the process stopped run again after reopening', async () => {
    const store = memoryStore();
    const first = await openWorkflow({ store });
    const ex1 = executor(launch(first, inProcess()));
    let hangs = true;
    const hang = defineTask('workflow-test.hang', async (n: number) => {
      if (hangs) await new Promise((resolve) => setTimeout(resolve, 10_000));
      return n;
    });
    const stuck = ex1.submit(hang, 5);
    await new Promise((r) => setTimeout(r, 5));
    await first.flushed();
    expect((await store.get<TaskRecord>(`task:${stuck.id}`))?.state).toBe('running');
    // the "crash": what the store held at this moment is all a new process sees
    const survivor = memoryStore();
    await survivor.setMany(await store.entries());
    stuck.cancel();
    const second = await openWorkflow({ store: survivor });
    expect(second.record(stuck.id)?.state).toBe('new');
    hangs = false;
    const ex2 = executor(launch(second, inProcess()));
    const rerun = ex2.submit(hang, 5);
    expect(rerun.id).toBe(stuck.id);
    expect(await rerun).toBe(5);
    expect(rerun.record?.attempts).toBe(2);
  });
});

describe('resubmitting restored work', () => {
  it('a restored failed task runs again when submitted again, and settling it in the same commit still drains its executor', async () => {
    const store = memoryStore();
    let failing = true;
    const flaky = defineTask('workflow-test.flaky', async (n: number) => {
      if (failing) throw new Error('not yet');
      return n;
    });
    const first = await openWorkflow({ store });
    const ex1 = executor(launch(first, inProcess()));
    const t = ex1.submit(flaky, 1);
    await expect(t).rejects.toThrow('not yet');
    await first.flushed();

    const secondStore = await restarted(store);
    const second = await openWorkflow({ store: secondStore });
    expect(second.record(t.id)?.state).toBe('failed');
    const small = executor(launch(second, inProcess()), { worker: { cores: 1 } });
    // same task (requirements are not identity), now impossible: it fails in the commit that submits it
    const impossible = small.submit({ ...call(flaky, 1), requirements: { ranks: 2 } });
    await expect(impossible).rejects.toThrow(/needs 2 cores/);
    await expect(
      Promise.race([
        small.shutdown({ wait: true }).then(() => 'drained'),
        new Promise((r) => setTimeout(() => r('hung'), 2000)),
      ]),
    ).resolves.toBe('drained');

    await second.flushed();
    const third = await openWorkflow({ store: await restarted(secondStore) });
    failing = false;
    const again = executor(launch(third, inProcess())).submit(flaky, 1);
    expect(await again).toBe(1);
    expect(again.record?.attempts).toBe(2);
  });
});

describe('workflow.close() while tasks run or wait', () => {
  it('cancels them (recorded, so that a resume runs them again), then closes: nothing is thrown later', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'scalems-close-'));
    try {
      const file = join(dir, 'state.sqlite');
      const wf = await openWorkflow({ store: sqliteStore(file), name: 'closing' });
      const ex = executor(launch(wf, inProcess()), { worker: { cores: 1 } });
      let finish: (v: number) => void = () => undefined;
      let began: () => void = () => undefined;
      const started = new Promise<void>((resolve) => (began = resolve));
      const slow = (): Promise<number> => {
        began();
        return new Promise<number>((r) => (finish = r));
      };
      const running: Task<number> = ex.submit(slow);
      const waiting = ex.submit(square, 3); // one core: it waits for the slow one
      await started;
      await wf.close();
      for (const t of [running, waiting]) {
        await expect(t).rejects.toThrow(TaskCancelledError);
        expect(t.state).toBe('cancelled');
      }
      await expect(running).rejects.toThrow(/workflow "closing" was closed while it ran; a resume runs it again/);
      await expect(waiting).rejects.toThrow(/was closed while it waited/);
      finish(7); // the function ends after the close: nothing is dispatched, nothing thrown
      await new Promise((r) => setImmediate(r));
      expect(ex.isShutdown).toBe(true);
      expect(() => ex.submit(square, 4)).toThrow(StoreClosedError);

      const again = await openWorkflow({ store: sqliteStore(file), name: 'closing' });
      expect(again.record(waiting.id)?.state).toBe('cancelled');
      const ex2 = executor(launch(again, inProcess()), { worker: { cores: 1 } });
      await expect(ex2.submit(square, 3)).resolves.toBe(9);
      await ex2.shutdown({ wait: true });
      await again.close();
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('workflow.close() whose last write fails', () => {
  it('rejects, keeps the store open and its records, refuses new work, and close() again writes them and closes', async () => {
    const inner = memoryStore();
    let failing = false;
    let storeClosed = 0;
    const store: Store = {
      ...inner,
      async setMany(entries) {
        if (failing) throw new Error('no space left on device (a stand-in)');
        await inner.setMany(entries);
      },
      async close() {
        storeClosed++; // (inner stays open: read below as a new process would find it)
      },
    };
    const wf = await openWorkflow({ store, name: 'close-retry' });
    const ex = executor(launch(wf, inProcess()));
    failing = true;
    const done = ex.submit(square, 6);
    expect(await done).toBe(36);
    await expect(wf.close()).rejects.toThrow('no space left on device');
    expect(storeClosed).toBe(0); // still open: its records are kept, to be written
    expect(() => executor(launch(wf, inProcess()))).toThrow(StoreClosedError);
    expect(() => executor(launch(wf, inProcess()))).toThrow(/being closed.*call it again/);
    await expect(wf.close()).rejects.toThrow('no space left on device'); // still failing: tried again, not cached

    failing = false; // space freed
    await wf.close();
    expect(storeClosed).toBe(1);
    await wf.close(); // closed: nothing more
    expect(storeClosed).toBe(1);
    const again = await openWorkflow({ store: await restarted(inner), name: 'close-retry' });
    expect(again.record(done.id)).toMatchObject({ state: 'succeeded', result: 36 });
    // the store is not held by the closed workflow any more
    await again.close();
    await expect(openWorkflow({ store, name: 'close-retry' })).resolves.toBeDefined();
  });
});

describe('openWorkflow() options', () => {
  it.each([
    ['a number', 42, /expected a string, got number/],
    ['an empty string', '', /it is empty/],
    ['300 characters', 'x'.repeat(300), /longer than 200 characters/],
    ['a path', 'a/b', /use letters, digits/],
    ['".."', '..', /use letters, digits/],
    ['a tab', 'tab\there', /use letters, digits/],
  ])('refuses %s as a name with InvalidOptionsError, before touching the disk', async (_, name, why) => {
    const cwd = process.cwd();
    const dir = mkdtempSync(join(tmpdir(), 'scalems-names-'));
    process.chdir(dir);
    try {
      const opening = openWorkflow({ name: name as string });
      await expect(opening).rejects.toThrow(InvalidOptionsError);
      await expect(opening).rejects.toThrow(why);
      expect(existsSync(join(dir, '.scalems'))).toBe(false);
    } finally {
      process.chdir(cwd);
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses options that are not an object, and a store that is not a Store', async () => {
    await expect(openWorkflow(null as never)).rejects.toThrow(InvalidOptionsError);
    await expect(openWorkflow([] as never)).rejects.toThrow(/openWorkflow\(options\): expected an object/);
    await expect(openWorkflow({ store: 'state.sqlite' as never })).rejects.toThrow(/expected a Store/);
    // an array has `entries`, but is no store
    await expect(openWorkflow({ store: [] as never })).rejects.toThrow(/openWorkflow\(\{ store \}\): expected a Store/);
    await expect(openWorkflow({ name: null as never, store: memoryStore() })).rejects.toThrow(
      /expected a string, got object/,
    );
  });

  it('refuses a misspelt option, which used to open the default store instead (a SQLite file, on Node)', async () => {
    const opening = openWorkflow({ name: 'typo', stor: memoryStore() } as never);
    await expect(opening).rejects.toThrow(InvalidOptionsError);
    await expect(opening).rejects.toThrow(/openWorkflow\(\{ stor \}\): unknown option \(did you mean "store"\?/);
  });

  it('refuses a log that is not a level or { level, sink } with a function sink', async () => {
    for (const log of [{ level: 'info', sink: 5 }, { level: 'loud' }, { level: 'info', sinc: () => 0 }, 'verbose'])
      await expect(openWorkflow({ store: memoryStore(), log: log as never })).rejects.toThrow(
        /openWorkflow\(\{ log \}\): expected a level .* or \{ level, sink\? \}/,
      );
    const lines: string[] = [];
    const wf = await openWorkflow({
      store: memoryStore(),
      log: { level: 'info', sink: (_, line) => lines.push(line) },
    });
    await wf.close();
    expect(lines.length).toBeGreaterThan(0);
  });
});
