import { AsyncLocalStorage } from 'node:async_hooks';
import { availableParallelism } from 'node:os';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { join } from 'node:path';
import { threadId } from 'node:worker_threads';
import { from, map } from 'rxjs';
import {
  TaskCancelledError,
  UnknownTaskError,
  UnregisteredFunctionError,
  UnsatisfiableRequirementsError,
  UnserializableValueError,
  WorkerCrashedError,
  call,
  defineTask,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  type Executor,
  type Runtime,
  type TaskSpec,
  type Workflow,
} from 'scalems';
import { threads, type ThreadsOptions } from 'scalems/node';
import * as tasks from './fixtures/threads/tasks';

const MODULE = join(__dirname, 'fixtures', 'threads', 'tasks.ts');

/** Resolves once flags[index] is non-zero (the test's timeout bounds the wait). */
async function flagged(flags: Int32Array, index: number): Promise<void> {
  while (Atomics.load(flags, index) === 0) await Atomics.waitAsync(flags, index, 0, 50).value;
}

/** A threads() runtime of its own, on a workflow of its own, and its executor. */
async function ownThreads(options: Omit<ThreadsOptions, 'modules'>): Promise<{ rt: Runtime; ex: Executor }> {
  const rt = launch(await openWorkflow({ store: memoryStore() }), threads({ modules: [MODULE], ...options }));
  return { rt, ex: executor(rt) };
}

/** `p`, or a rejection naming `what` if it has not settled within 10 s (a hang fails the test, not the suite). */
async function within<T>(p: PromiseLike<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      p,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what}: not within 10 s`)), 10_000);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** `n` shared 32-bit counters (tasks.counted, tasks.holds, tasks.spins write them). */
const shared = (n: number): Int32Array => new Int32Array(new SharedArrayBuffer(4 * n));

/** Lets a `tasks.holds` task that holds its thread on `flags` return. */
function release(flags: Int32Array): void {
  Atomics.store(flags, 1, 1);
  Atomics.notify(flags, 1);
}

const withRequirements = <R>(spec: TaskSpec<R>, requirements: TaskSpec['requirements']): TaskSpec<R> => ({
  ...spec,
  requirements,
});

let wf: Workflow;
let rt: Runtime;
let ex: Executor;

beforeAll(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  // A grace period beyond the test timeout: a thread left hanging (not released through its signal or
  // its communicator) shows as a failed test instead of being terminated quietly.
  rt = launch(wf, threads({ modules: [MODULE], maxThreads: 4, cancelGraceMs: 60_000 }));
  ex = executor(rt);
});

afterAll(() => rt.shutdown());

describe('threads(): running registered functions', () => {
  it('runs a defineTask function on a worker thread, by name', async () => {
    const result = await ex.submit(tasks.add, 2, 3);
    expect(result.sum).toBe(5);
    expect(result.threadId).not.toBe(threadId);
  });
});

describe('threads(): refused at submit', () => {
  it('refuses a closure, naming the function and telling to use defineTask', () => {
    const offset = 1;
    const addOffset = (x: number): number => x + offset;
    expect(() => ex.submit(addOffset, 1)).toThrow(UnregisteredFunctionError);
    expect(() => ex.submit(addOffset, 1)).toThrow(/addOffset.*defineTask/);
  });

  it('refuses a defineTask function that the listed modules do not define', () => {
    const elsewhere = defineTask('threads.notInModules', (x: number) => x);
    expect(() => ex.submit(elsewhere, 1)).toThrow(UnknownTaskError);
    expect(() => ex.submit(elsewhere, 1)).toThrow(/threads\.notInModules.*tasks\.ts/);
  });

  it('refuses executables, naming processes()', () => {
    const spec: TaskSpec = { kind: 'executable', name: 'echo', args: ['hi'] };
    expect(() => ex.submit(spec)).toThrow(UnsatisfiableRequirementsError);
    expect(() => ex.submit(spec)).toThrow(/processes\(\)/);
  });

  it('refuses arguments structured clone cannot copy, naming the argument and path', () => {
    class Point {
      constructor(readonly x: number) {}
    }
    expect(() => ex.submit(tasks.add, 1, { opts: { cb: () => 2 } } as unknown as number)).toThrow(
      UnserializableValueError,
    );
    expect(() => ex.submit(tasks.add, 1, { opts: { cb: () => 2 } } as unknown as number)).toThrow(
      /argument 1\.opts\.cb is a function/,
    );
    expect(() => ex.submit(tasks.add, Symbol('s') as unknown as number, 1)).toThrow(/argument 0 is a symbol/);
    expect(() => ex.submit(tasks.add, [new Point(1)] as unknown as number, 1)).toThrow(
      /argument 0\[0\] is an instance of Point/,
    );
  });

  it('refuses an executor with more cores than maxThreads; cores default to os.availableParallelism()', async () => {
    const own = launch(wf, threads({ modules: [MODULE] }));
    expect(executor(own).capacity.cores).toBe(availableParallelism());
    expect(() => executor(own, { worker: { cores: availableParallelism() + 1 } })).toThrow(
      UnsatisfiableRequirementsError,
    );
    await own.shutdown();
  });
});

describe('threads(): failures', () => {
  it('a task that calls process.exit() fails with WorkerCrashedError and the pool goes on', async () => {
    await expect(ex.submit(tasks.exitsThread)).rejects.toThrow(WorkerCrashedError);
    const after = await Promise.all([1, 2, 3, 4, 5].map((i) => ex.submit(tasks.add, i, 100)));
    expect(after.map((r) => r.sum)).toEqual([101, 102, 103, 104, 105]);
  });

  it('an uncaught error in a timer fails the task with WorkerCrashedError naming it, and the pool goes on', async () => {
    const crashed = ex.submit(tasks.throwsInTimer);
    await expect(crashed).rejects.toThrow(WorkerCrashedError);
    await expect(crashed).rejects.toThrow(/boom in a timer/);
    await expect(ex.submit(tasks.add, 7, 7)).resolves.toMatchObject({ sum: 14 });
  });

  it('an upstream result that cannot be sent to a thread fails the task with UnserializableValueError', async () => {
    const local = executor(launch(wf, inProcess()));
    const upstream = local.submit(() => ({ callback: () => 1 }));
    const downstream = ex.submit(tasks.add, upstream as unknown as number, 1);
    await expect(downstream).rejects.toThrow(UnserializableValueError);
    await expect(downstream).rejects.toThrow(/cannot be sent to a worker thread/);
    await local.shutdown({ wait: true });
  });

  it('a result structured clone cannot copy fails with UnserializableValueError', async () => {
    await expect(ex.submit(tasks.returnsFunction)).rejects.toThrow(UnserializableValueError);
  });

  it('a thrown error or a result that cannot be read fails its task, not its thread; AggregateError comes back whole', async () => {
    // before: each was WorkerCrashedError (the thread died reading it), and an AggregateError a plain Error
    const thrown = await Promise.resolve(ex.submit(tasks.throwsOdd, 'getter')).catch((e: unknown) => e);
    expect(thrown).not.toBeInstanceOf(WorkerCrashedError);
    expect((thrown as Error).message).toBe('with a bad field');
    const returned = ex.submit(tasks.returnsBadGetter);
    await expect(returned).rejects.toThrow(UnserializableValueError);
    await expect(returned).rejects.toThrow(/reading it threw result getter/);
    const aggregate = await Promise.resolve(ex.submit(tasks.throwsOdd, 'aggregate')).catch((e: unknown) => e);
    expect(aggregate).toBeInstanceOf(AggregateError);
    expect((aggregate as AggregateError).errors).toEqual([new RangeError('one'), new Error('two')]);
    expect((aggregate as AggregateError).errors[0]).toBeInstanceOf(RangeError);
  });
});

describe('threads(): the submitter’s async context', () => {
  it('is not kept for a task that runs on a thread (only in-process backends run functions in it)', async () => {
    const storage = new AsyncLocalStorage<{ payload: number[] }>();
    const flags = new Int32Array(new SharedArrayBuffer(12));
    let ref: WeakRef<object> | undefined;
    const t = (() => {
      const payload = { payload: new Array<number>(100_000).fill(1) };
      ref = new WeakRef(payload);
      return storage.run(payload, () => ex.submit(tasks.untilAborted, flags, 2));
    })();
    await flagged(flags, 0); // running on its thread
    const collect =
      (globalThis as { gc?: () => void }).gc ??
      (runInNewContext('gc', (setFlagsFromString('--expose-gc'), {})) as () => void);
    for (let i = 0; i < 5 && ref.deref() !== undefined; i++) {
      await new Promise((r) => setTimeout(r, 5)); // (a WeakRef read keeps its target for the rest of the job)
      collect();
    }
    expect(ref.deref()).toBeUndefined(); // collected while the task still runs
    t.cancel();
    await expect(t).rejects.toThrow(TaskCancelledError);
  });
});

describe('threads(): cancellation reaches the function through its signal', () => {
  it('unsubscribing from submitOn aborts the running tasks it submitted', async () => {
    const flags = [new Int32Array(new SharedArrayBuffer(12)), new Int32Array(new SharedArrayBuffer(12))];
    const sub = from(flags)
      .pipe(
        map((f, i) => call(tasks.untilAborted, f, 10 + i)),
        submitOn(ex),
      )
      .subscribe();
    await Promise.all(flags.map((f) => flagged(f, 0)));
    sub.unsubscribe();
    await Promise.all(flags.map((f) => flagged(f, 1)));
    expect(flags.map((f) => Atomics.load(f, 1))).toEqual([1, 1]);
  });

  it('a task that ignores its signal has its thread terminated after the grace period, and the pool goes on', async () => {
    const own = launch(wf, threads({ modules: [MODULE], maxThreads: 1, cancelGraceMs: 100 }));
    const one = executor(own);
    const flags = new Int32Array(new SharedArrayBuffer(8));
    const t = one.submit(tasks.spins, flags);
    await flagged(flags, 0);
    t.cancel();
    await expect(t).rejects.toThrow(TaskCancelledError);
    // the only thread spins forever: this runs only on the thread that replaced it
    await expect(one.submit(tasks.add, 2, 2)).resolves.toMatchObject({ sum: 4 });
    await own.shutdown();
  });

  it('a task of two ranks submitted while a cancelled task still spins runs once its thread is replaced', async () => {
    const { rt, ex: two } = await ownThreads({ maxThreads: 2, cancelGraceMs: 200 });
    const flags = shared(2);
    const t = two.submit(tasks.spins, flags);
    await flagged(flags, 0);
    t.cancel();
    await expect(t).rejects.toThrow(TaskCancelledError);
    // its cores are free at once, its thread only after the grace period: one rank found an idle thread, the other
    // none, and nothing placed it once the spinning thread was gone (it hung, and everything behind it)
    const wide = two.submit({ ...call(tasks.partialSums, 10), requirements: { ranks: 2 } });
    const after = two.submit(tasks.add, 3, 4);
    await expect(within(wide, 'the task of two ranks')).resolves.toMatchObject({ total: 55, size: 2 });
    await expect(within(after, 'the task behind it')).resolves.toMatchObject({ sum: 7 });
    await rt.shutdown();
  });
});

describe('threads(): tasks queued on a busy thread', () => {
  // With 2 threads, the executor hands over 4 one-core tasks at once: one runs on each thread and one more waits on
  // each thread's lane, so the second task on the first lane is queued behind the first. Each test has a workflow of
  // its own: the same task (same arguments) in one workflow would be one task.

  it('a short task queued behind a long one is taken back by the other thread, and runs there once', async () => {
    const { rt, ex: two } = await ownThreads({ maxThreads: 2, cancelGraceMs: 60_000 });
    const flags = shared(2);
    const counts = shared(6);
    const long = two.submit(tasks.holds, flags);
    const short = [0, 1, 2, 3, 4, 5].map((i) => two.submit(tasks.counted, counts, i));
    // all of them end while the long task still holds its thread (without steal-back, one would wait behind it)
    const done = await Promise.all(short);
    expect(Atomics.load(flags, 1)).toBe(0);
    release(flags);
    const longThread = await long;
    expect(done.every((r) => r.threadId !== longThread)).toBe(true);
    expect([...counts]).toEqual([1, 1, 1, 1, 1, 1]);
    await rt.shutdown();
  });

  it('a task queued behind a long one goes to the other thread even while that thread is never idle', async () => {
    const { rt, ex: two } = await ownThreads({ maxThreads: 2 });
    const flags = shared(2);
    const seq = shared(1);
    const long = two.submit(tasks.holds, flags);
    const short = Array.from({ length: 30 }, (_, i) => two.submit(tasks.ordered, seq, i));
    const done = await Promise.all(short);
    // The second short task was queued behind the long one. The other thread always has a task queued (it is never
    // idle until the last one), yet it takes that task back after a few answers: it does not run last.
    const overtaken = Math.max(...done.map((r) => r.order - r.i));
    expect(overtaken).toBeLessThan(16);
    release(flags);
    await long;
    await rt.shutdown();
  });

  it('a thread that dies with tasks queued behind it: the one it ran fails, the queued ones run once each', async () => {
    // one thread: nothing takes the queued task back; it is on the dying thread's lane
    const { rt, ex: one } = await ownThreads({ maxThreads: 1 });
    const counts = shared(4);
    const crashing = one.submit(tasks.exitsThread);
    const queued = [0, 1, 2, 3].map((i) => one.submit(tasks.counted, counts, i));
    await expect(crashing).rejects.toThrow(WorkerCrashedError);
    expect((await Promise.all(queued)).map((r) => r.i)).toEqual([0, 1, 2, 3]);
    expect([...counts]).toEqual([1, 1, 1, 1]);
    await rt.shutdown();
  });

  it('a cancelled task whose thread is terminated after the grace period: the tasks queued behind it run once each', async () => {
    const { rt, ex: one } = await ownThreads({ maxThreads: 1, cancelGraceMs: 100 });
    const flags = shared(2);
    const counts = shared(3);
    const spinning = one.submit(tasks.spins, flags);
    const queued = [0, 1, 2].map((i) => one.submit(tasks.counted, counts, i));
    await flagged(flags, 0);
    spinning.cancel();
    await expect(spinning).rejects.toThrow(TaskCancelledError);
    expect((await Promise.all(queued)).map((r) => r.i)).toEqual([0, 1, 2]);
    expect([...counts]).toEqual([1, 1, 1]);
    await rt.shutdown();
  });

  it('tasks cancelled in one run, running and queued: a thread that stops one never starts the next', async () => {
    // told to abort at once, a thread stopped the first task and took the one queued on its lane before the run of
    // cancels came to it, and started it (2 rounds in 8, in an audit)
    const { rt, ex: two } = await ownThreads({ maxThreads: 2, cancelGraceMs: 60_000 });
    for (let round = 0; round < 8; round++) {
      const starts = shared(6);
      // two run, one waits on each thread's lane, two wait in the executor
      // (a key per round: the arguments of each round are alike, and a cancelled task submitted again runs as it was)
      const all = [0, 1, 2, 3, 4, 5].map((i) =>
        two.submit({ ...call(tasks.waitsForAbort, starts, i), key: `${round}` }),
      );
      await flagged(starts, 0);
      await flagged(starts, 1);
      for (const t of all) t.cancel();
      await Promise.allSettled(all);
      await new Promise((r) => setTimeout(r, 50)); // a start would be counted by then
      expect([round, [...starts]]).toEqual([round, [1, 1, 0, 0, 0, 0]]);
    }
    await rt.shutdown();
  });

  it('a task cancelled while queued on a thread’s lane never runs; the others run once each', async () => {
    const { rt, ex: one } = await ownThreads({ maxThreads: 1, cancelGraceMs: 60_000 });
    const flags = shared(2);
    const counts = shared(3);
    const long = one.submit(tasks.holds, flags);
    const queued = [0, 1, 2].map((i) => one.submit(tasks.counted, counts, i));
    await flagged(flags, 0);
    queued[0]!.cancel();
    await expect(queued[0]).rejects.toThrow(TaskCancelledError);
    release(flags);
    await long;
    await Promise.all(queued.slice(1));
    expect([...counts]).toEqual([0, 1, 1]);
    await rt.shutdown();
  });
});

describe('threads(): function tasks with ranks > 1', () => {
  it('runs on `ranks` threads at once; allreduce combines the partial sums; the result is rank 0’s', async () => {
    const n = 1000;
    const result = await ex.submit(withRequirements(call(tasks.partialSums, n), { ranks: 4 }));
    expect(result).toMatchObject({ total: (n * (n + 1)) / 2, biggest: 3, rank: 0, size: 4 });
  });

  it('bcast, barrier, send and recv between ranks on distinct threads', async () => {
    const replies = (await ex.submit(withRequirements(call(tasks.bcastBarrier), { ranks: 3 })))!;
    expect(replies.map((r) => r.rank)).toEqual([0, 1, 2]);
    expect(replies.every((r) => r.seed === 42)).toBe(true);
    expect(new Set(replies.map((r) => r.threadId)).size).toBe(3);
  });

  it('a failing rank fails the task with its error and releases the waiting ranks', async () => {
    const released = new Int32Array(new SharedArrayBuffer(4));
    const failing = ex.submit(withRequirements(call(tasks.rankFails, released), { ranks: 3 }));
    await expect(failing).rejects.toThrow('rank 1 gives up');
    await expect(failing).rejects.toMatchObject({ name: 'RangeError', rank: 1 });
    // ranks 0 and 2 were released from their recv (they would wait forever without it)
    while (Atomics.load(released, 0) < 2) await Atomics.waitAsync(released, 0, Atomics.load(released, 0), 50).value;
    const result = await ex.submit(withRequirements(call(tasks.partialSums, 10), { ranks: 4 }));
    expect(result.total).toBe(55);
  });

  it('a rank whose thread dies fails the task with WorkerCrashedError of that rank, not its peers’ failures', async () => {
    // ranks 0 and 2 wait for rank 1 in allreduce; rank 0 ends, told rank 1 has, and rank 2, told rank 0 has: the task
    // was reported as rank 2's TaskFailedError blaming rank 0, or as the crash without its rank
    const runs = Array.from({ length: 4 }, (_, i) =>
      ex.submit({ ...withRequirements(call(tasks.rankExits), { ranks: 3 }), key: `exits-${i}` }),
    );
    const errors = await Promise.all(
      runs.map((t) =>
        t.then(
          () => undefined,
          (err: unknown) => err,
        ),
      ),
    );
    for (const err of errors) {
      expect(err).toBeInstanceOf(WorkerCrashedError);
      expect(err).toMatchObject({ rank: 1, message: expect.stringMatching(/rank 1: its worker thread died/) });
    }
  });

  it('a mistake with the communicator is refused with InvalidOptionsError naming the call and what is allowed', async () => {
    const refusals = await ex.submit(withRequirements(call(tasks.misusesComm), { ranks: 2 }));
    expect(refusals).toEqual([
      'UnserializableValueError UNSERIALIZABLE_VALUE: comm.send: the value sent from rank 0 to rank 1.cb is a ' +
        'function (cb)',
      'InvalidOptionsError INVALID_OPTIONS: comm.send: rank 0 cannot send to or from itself',
      'InvalidOptionsError INVALID_OPTIONS: comm.recv: rank must be an integer in 0..1; got 2',
      'InvalidOptionsError INVALID_OPTIONS: comm.send: tag must be a non-negative integer; got -1',
      'InvalidOptionsError INVALID_OPTIONS: comm.allreduce: op must be one of sum, prod, min, max; got median',
      'InvalidOptionsError INVALID_OPTIONS: comm.allreduce: value must be a number; got string',
    ]);
  });

  it('a rank waiting for a rank that has returned is told so, instead of waiting forever', async () => {
    const t = ex.submit(withRequirements(call(tasks.waitsForReturnedRank), { ranks: 2 }));
    await expect(t).rejects.toThrow(/rank 1: recv\(from 0, tag 5\) cannot complete: rank 0 has ended/);
  });
});
