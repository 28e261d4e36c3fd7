// A failed task is not failed for the life of the process: task.retry(), submitting the same work again,
// and RxJS retry() around a pipeline each run it again.
import { TestScheduler } from 'rxjs/testing';
import { lastValueFrom, from, retry, toArray } from 'rxjs';
import {
  ExecutorShutdownError,
  InvalidTaskDescriptionError,
  StoreClosedError,
  NoExecutorError,
  UpstreamFailedError,
  call,
  currentTask,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  Task,
  type TaskRecord,
  type Workflow,
} from 'scalems';
import { virtual } from 'scalems/testing';

let wf: Workflow;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
});

/** A function that fails the first `n` times it is called for each argument. */
function flaky(n: number): (x: number) => Promise<number> {
  const calls = new Map<number, number>();
  return async (x: number) => {
    const c = (calls.get(x) ?? 0) + 1;
    calls.set(x, c);
    if (c <= n) throw new RangeError(`call ${c} for ${x} failed`);
    return x * 10;
  };
}

describe('retry in the same process', () => {
  it('task.retry() runs a failed task again: the same handle settles anew', async () => {
    const ex = executor(launch(wf, inProcess()));
    const task = ex.submit(flaky(1), 4);
    await expect(task).rejects.toThrow('call 1 for 4 failed');
    expect(task.state).toBe('failed');
    expect(task.retry()).toBe(task);
    expect(await task).toBe(40);
    expect(task.record).toMatchObject({ state: 'succeeded', attempts: 2 });
    expect(task.retry().state).toBe('succeeded'); // a succeeded task is left as it is
  });

  it('submitting the same work again runs a failed task again (same handle); a succeeded one is served', async () => {
    const ex = executor(launch(wf, inProcess()));
    const fn = flaky(1);
    const first = ex.submit(fn, 2);
    await expect(first).rejects.toThrow(RangeError);
    const again = ex.submit(fn, 2);
    expect(again).toBe(first);
    expect(await again).toBe(20);
    expect(ex.submit(fn, 2).record?.attempts).toBe(2);
  });

  it('the retry policy counts from the retry: each retry() gets the whole budget again', async () => {
    const ex = executor(launch(wf, inProcess()), { task: { retries: 1 } });
    const task = ex.submit(flaky(3), 1); // fails 3 times: attempts 1 and 2 fail, retry() runs 3 (fails) and 4
    await expect(task).rejects.toThrow('call 2 for 1 failed');
    expect(await task.retry()).toBe(10);
    expect(task.record?.attempts).toBe(4);
  });

  it('retry() of a dependent runs its failed inputs again first, transitively', async () => {
    const ex = executor(launch(wf, inProcess()));
    const source = ex.submit(flaky(1), 1);
    const mid = ex.submit(async (x: number) => x + 1, source);
    const end = ex.submit(async (x: number) => x * 2, mid);
    await expect(end).rejects.toThrow(UpstreamFailedError);
    expect([source.state, mid.state, end.state]).toEqual(['failed', 'failed', 'failed']);
    expect(await end.retry()).toBe(22);
    expect([source.state, mid.state]).toEqual(['succeeded', 'succeeded']);
  });

  it('a cancelled task runs again on retry()', async () => {
    const ex = executor(launch(wf, inProcess()));
    let calls = 0;
    const slow = async (x: number): Promise<number> => {
      calls++;
      if (calls === 1) {
        // waits until cancelled (no timer left behind to keep the test run alive)
        const signal = currentTask().signal;
        await new Promise((resolve) => signal.addEventListener('abort', resolve));
      }
      return x;
    };
    const task = ex.submit(slow, 7);
    await new Promise((resolve) => setTimeout(resolve, 20));
    task.cancel('changed my mind');
    await expect(task).rejects.toThrow('changed my mind');
    expect(await task.retry()).toBe(7);
  });

  it('a task failed and run again within one commit is counted once by its executor (shutdown still drains)', async () => {
    const ex = executor(launch(wf, inProcess()));
    const fn = flaky(1);
    const task = ex.submit(fn, 3);
    await expect(task).rejects.toThrow(RangeError);
    // cancel and re-submit in the same turn: the cancellation never commits on its own
    const later = async (): Promise<number> => new Promise<number>((resolve) => setTimeout(() => resolve(1), 50));
    const other = ex.submit(later);
    other.cancel();
    expect(ex.submit(later)).toBe(other);
    expect(await other).toBe(1);
    await ex.shutdown({ wait: true });
  });

  it('retry() refuses a task whose executor was shut down, or that failed in an earlier run', async () => {
    const store = memoryStore();
    const wf1 = await openWorkflow({ store, name: 'earlier' });
    const ex = executor(launch(wf1, inProcess()));
    const task = ex.submit(flaky(1), 9);
    await expect(task).rejects.toThrow(RangeError);
    await ex.shutdown({ wait: true });
    expect(() => task.retry()).toThrow(ExecutorShutdownError);
    await wf1.flushed();
    // the same store, as a new process would see it (a memory store cannot be reopened: copy it)
    const copy = memoryStore();
    await copy.setMany(await store.entries<TaskRecord>());
    const wf2 = await openWorkflow({ store: copy, name: 'earlier' });
    const restored = new Task(wf2, task.id);
    expect(restored.state).toBe('failed');
    expect(() => restored.retry()).toThrow(NoExecutorError);
    expect(() => restored.retry()).toThrow(/submit it again/);
  });

  it('RxJS retry() around a pipeline runs the failed members again, and the rest are served', async () => {
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    const runs = new Map<number, number>();
    const fn = flaky(1);
    const counted = async (x: number): Promise<number> => {
      runs.set(x, (runs.get(x) ?? 0) + 1);
      return x === 3 ? fn(x) : x * 10;
    };
    // the retry resubscribes the whole pipeline: the list is the second subscription's
    const results = await lastValueFrom(
      from([1, 2, 3, 4]).pipe(submitOn(ex, counted, { ordered: true }), toArray(), retry(1)),
    );
    expect(results).toEqual([10, 20, 30, 40]);
    expect(wf.state.counts).toMatchObject({ succeeded: 4, failed: 0 });
    // 1 finished before 3 failed: served on the second subscription; 3 ran twice
    expect([runs.get(1), runs.get(3)]).toEqual([1, 2]);
  });
});

describe('an outcome superseded within its own commit', () => {
  it('a task submitted again while its cancellation is delivered is followed to its new run, not to that end', async () => {
    // The audit's case: RxJS retry() around submitOn subscribed again as a member's failure was delivered, and
    // submitted again members that the first subscription's teardown had cancelled in the same commit; their
    // cancellations, delivered later in that commit, reached the new subscription ("nobody awaits its result"),
    // which failed with them instead of running them.
    const ex = executor(launch(wf, inProcess()), { worker: { cores: 2 } });
    let open!: () => void;
    const gate = new Promise<void>((resolve) => (open = resolve));
    const gated = async (): Promise<number> =>
      new Promise((resolve, reject) => {
        const signal = currentTask().signal;
        signal.addEventListener('abort', () => reject(signal.reason));
        void gate.then(() => resolve(42));
      });
    const b = ex.submit(gated);
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(b.state).toBe('running');
    // a task that fails as it is submitted, and b cancelled, in one commit: a first, b after it
    const a = ex.submit({ ...call(gated), key: 'never fits', requirements: { coresPerRank: 64 } });
    const seen: string[] = [];
    let again: Task<number> | undefined;
    a.subscribe({
      error: () => {
        again = ex.submit(gated); // the same work: b's handle, run again
        again.subscribe({ next: (v) => seen.push(`value ${v}`), error: (e: Error) => seen.push(e.name) });
      },
    });
    b.cancel();
    await new Promise((resolve) => setTimeout(resolve, 20));
    expect(again).toBe(b);
    expect(seen).toEqual([]); // before: ['TaskCancelledError']
    expect(b.state).toBe('running');
    open();
    await expect(b).resolves.toBe(42);
    expect(seen).toEqual(['value 42']);
  });
});

describe('submitOn with retry, pinned with marbles', () => {
  it('each subscription ends at the failure, the retry re-runs the failed member and the cancelled ones', () => {
    const scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    scheduler.run(({ cold, expectObservable, expectSubscriptions }) => {
      const ex = executor(launch(wf, virtual({ defaultDuration: 2 })), { worker: { cores: 4 } });
      const source = cold('-a-b-c|', { a: 1, b: 2, c: 3 });
      let failed = false;
      const member = (x: number): number => {
        if (x === 2 && !failed) {
          failed = true;
          throw new RangeError('member 2 diverged, once');
        }
        return x * 10;
      };
      // a at 1 ends at 3; b at 3 fails at 5 (c was submitted at 5 too: cancelled by the unsubscription);
      // resubscribed at 5: a is served at 6, b runs again (8 → 10), c (10 → 12)
      expectObservable(source.pipe(submitOn(ex, member), retry(1))).toBe('---a--a---b-(c|)', { a: 10, b: 20, c: 30 });
      expectSubscriptions(source.subscriptions).toBe(['^----!', '-----^-----!']);
    });
  });
});

describe('retry backoff', () => {
  it('a growing backoff waits at most the longest timer (24.8 days), never fires at once', () => {
    const scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    scheduler.run(({ flush }) => {
      const starts: number[] = [];
      const ex = executor(launch(wf, virtual({ defaultDuration: 1 })), {
        task: { retries: { max: 2, backoff: 2_000_000, factor: 10 } },
      });
      const fails = (): never => {
        starts.push(scheduler.now());
        throw new RangeError('again');
      };
      ex.submit(fails);
      flush();
      // each attempt's function runs (and fails) at the end of its 1 ms; the retry waits 2e6 s, then
      // min(2e7 s, 2^31 - 1 ms) instead of firing at once
      expect(starts).toEqual([1, 1 + 2e9 + 1, 1 + 2e9 + 1 + (2 ** 31 - 1) + 1]);
    });
  });

  it('a task cancelled while it waits out its backoff, then retried, waits out its new backoff in full', () => {
    const scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    scheduler.run(({ flush }) => {
      const starts: number[] = [];
      const ex = executor(launch(wf, virtual({ defaultDuration: 1 })), {
        task: { retries: { max: 3, backoff: 2, factor: 1 } },
      });
      const fails = (): never => {
        starts.push(scheduler.now());
        throw new RangeError('again');
      };
      const task = ex.submit(fails);
      task.then(undefined, () => undefined);
      // the first attempt fails at 1 ms: its retry is due at 2001 ms; cancelled at 1800 ms, retried at once
      scheduler.schedule(() => task.cancel('stop'), 1800);
      scheduler.schedule(() => task.retry(), 1801);
      flush();
      // the retried attempt fails at 1802 ms: the next is due 2 s later (the cancelled backoff, due at 2001 ms, must
      // not start it), and so on for the whole budget again (3 retries)
      expect(starts).toEqual([1, 1802, 3803, 5804, 7805]);
    });
  });
});

describe('a closed workflow', () => {
  it('refuses new runtimes, executors, submits and retries with StoreClosedError, and shuts down', async () => {
    const rt = launch(wf, inProcess());
    const ex = executor(rt, { name: 'analysis' });
    const failed = ex.submit(async () => Promise.reject(new RangeError('no')));
    await expect(failed).rejects.toThrow(RangeError);
    await wf.close();
    expect(() => launch(wf, inProcess())).toThrow(StoreClosedError);
    expect(() => executor(rt)).toThrow(StoreClosedError);
    expect(() => ex.submit(async () => 1)).toThrow(StoreClosedError);
    expect(() => failed.retry()).toThrow(StoreClosedError);
    expect(() => failed.retry()).toThrow(/workflow ".*" is closed.*openWorkflow\(\) to go on/);
    // nothing was left counted as outstanding: the executor and the runtime shut down
    await ex.shutdown({ wait: true });
    await rt.shutdown();
  });

  it('names a shut-down executor by its name, and the task by its name', async () => {
    const ex = executor(launch(wf, inProcess()), { name: 'analysis' });
    const failed = ex.submit(async function member() {
      throw new RangeError('no');
    });
    await expect(failed).rejects.toThrow(RangeError);
    await ex.shutdown();
    expect(() => ex.submit(async () => 1)).toThrow(/executor "analysis" \(executor-\d+\) has been shut down/);
    expect(() => failed.retry()).toThrow(/task member \(member-[0-9a-f]+\) cannot run again: its executor "analysis"/);
  });
});

describe('references to tasks', () => {
  it('an argument that names a task this workflow does not have is refused at submit', () => {
    const ex = executor(launch(wf, inProcess()));
    const f = async (x: unknown): Promise<unknown> => x;
    expect(() => ex.submit(f, { $task: 'no-such-id' })).toThrow(InvalidTaskDescriptionError);
    expect(() => ex.submit(f, [{ $task: 'no-such-id' }])).toThrow(/refer to task no-such-id.*does not have/);
    expect(wf.state.tasks.size).toBe(0);
  });
});
