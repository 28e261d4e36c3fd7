/**
 * The behaviour every backend must have (DESIGN.md §6: "Every backend passes one backend conformance
 * suite"), as one `describe` block that test/backends.test.ts runs once per backend and kind of work.
 *
 * A backend is driven through a `Kit`: how each piece of work is expressed on it (a `defineTask`
 * function, a synchronous function timed by virtual(), a program) and how the test reads what the
 * work did. The checks look at the work itself wherever they can (marker files, pids, the times it
 * logged), not only at the engine's records: a backend that records a cancellation but leaves the
 * program running fails here.
 *
 * The behaviours, by group:
 *   results       a task's result comes back (12 at once, each its own); an upstream result feeds a downstream task
 *   failures      a failing task rejects with its typed error (the record holds it, others are unaffected, dependents
 *                 fail with UpstreamFailedError); a scalems error a function throws comes back as its own class
 *   cancellation  cancel() reaches the work (told to stop, it cleans up and ends); a queued task never starts; the
 *                 freed core runs the next task, only once the work has ended (backends that end it: `holdsStopped`)
 *   retries       retries with backoff succeed on the third attempt; without enough, the last attempt's error
 *   walltime      a task over its walltime fails with WalltimeExceededError and its work is stopped; its core runs
 *                 the next task only once the work has ended (`holdsStopped`)
 *   capacity      never more tasks at once than cores (as the work saw it); ranks × coresPerRank counts; a task
 *                 bigger than its executor fails at once with UnsatisfiableRequirementsError
 *   refusals      work the backend can never run is refused at submit, and nothing is recorded
 *   shutdown      dispose = shutdown({ wait: false }); shutdown({ wait: true }) waits; runtime.shutdown() lets
 *                 cancelled work stop cleanly and leaves nothing running
 *   context       currentTask() in a function; closures where the backend runs them
 *
 * Only the public entry points (`scalems`, `scalems/node`, `scalems/testing`) and test/support are
 * used, so that the suite holds across restructurings of src/.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  ExecutableFailedError,
  ExecutorShutdownError,
  PathEscapeError,
  TaskCancelledError,
  UnsatisfiableRequirementsError,
  UnserializableValueError,
  UpstreamFailedError,
  WalltimeExceededError,
  call,
  executor,
  isFinal,
  launch,
  memoryStore,
  openWorkflow,
  type Backend,
  type Executor,
  type Runtime,
  type Task,
  type TaskRequirements,
  type TaskSpec,
  type Workflow,
} from 'scalems';
import { maxOverlap, overlaps, type Interval } from './support/work';

/** What an error of failed work must look like (see `Kit.failure`). */
export interface ExpectedFailure {
  /** the class it is an instance of */
  readonly type: abstract new (...args: never[]) => Error;
  readonly name: string;
  readonly message: RegExp;
  /** fields of the error, compared with `toMatchObject` */
  readonly fields: Readonly<Record<string, unknown>>;
  /** what the task record's `error` holds, compared with `toMatchObject` */
  readonly recorded: Readonly<Record<string, unknown>>;
}

/**
 * How work is expressed on one backend, and how the test reads what it did. Each work method returns
 * a spec to submit; the work writes what it sees into the directory or log it is given.
 */
export interface Kit {
  /** seconds: a walltime long enough for `untilStopped` work to have started on this backend */
  readonly walltime: number;

  /** result: `value` itself (plain JSON data) */
  echo(value: unknown): TaskSpec;
  /** result: n² */
  square(n: number): TaskSpec;
  /** result: the upstream task's value + k (the upstream is a `square`, `echo`, ... of the same kit) */
  plus(upstream: Task<unknown>, k: number): TaskSpec;
  /** fails with `message` (see `failure`) */
  fail(message: string): TaskSpec;
  /**
   * fails (`attempt <n> failed`) until it has run `failures` times (counted in `dir`, with the time each
   * attempt began), then its result is its attempt number (a function's as `currentTask().attempt` says)
   */
  flaky(dir: string, failures: number): TaskSpec;
  /**
   * runs until it is told to stop (a minute at most), noting in `dir` that it started, that it was told, and (after a
   * short cleanup) that it stopped
   */
  untilStopped(dir: string): TaskSpec;
  /** takes `ms`, logging its start and end in `log`; result: i */
  span(log: string, i: number, ms: number): TaskSpec;
  /** function kits: result `{ id, label, attempt, aborted }` as `currentTask()` told the function */
  whoAmI?(): TaskSpec;
  /** function kits: throws the scalems error class of that name */
  raise?(which: string): TaskSpec;

  /** the value the work computed, from its task's result (an executable's result is its files) */
  value(result: unknown): Promise<unknown>;
  /** what the error of `fail(message)` (and of `flaky` attempts) is */
  failure(message: string): ExpectedFailure;
  /** resolves once `untilStopped(dir)` work has started, as far as this backend lets the work tell */
  started(task: Task<unknown>, dir: string): Promise<void>;
  /**
   * resolves once `untilStopped(dir)` work was told to stop, finished its cleanup and ended (within
   * `withinMs`, default 10 s); rejects saying how far it got
   */
  stopped(task: Task<unknown>, dir: string, withinMs?: number): Promise<void>;
  /** asserts that `untilStopped(dir)` work never started */
  neverStarted(task: Task<unknown>, dir: string): Promise<void>;
  /** [start, end] of each `span(log, i, ...)` by i, as the work recorded them */
  intervals(log: string): Map<number, Interval>;
}

/** Where backends legitimately differ: the suite asks only what a backend promises. */
export interface BackendCapabilities {
  /**
   * runs plain closures, not only `defineTask` functions of registered modules (backends that run functions in this
   * process)
   */
  readonly closures: boolean;
  /** runs this kind of work with `ranks > 1` */
  readonly ranks: boolean;
  /**
   * Ends a stopped task's work itself (a process tree killed after its grace period, a thread terminated), and gives
   * its cores to no other task until that work has ended: when the task was cancelled or ran out of walltime (true),
   * or only when it ran out of walltime ('walltime': bullmq(), whose workers enforce it). Backends that run functions
   * on this or a worker's event loop cannot end them: false.
   */
  readonly holdsStopped: boolean | 'walltime';
}

/** Work a backend can never run: refused at submit with a typed error. */
export interface Refusal {
  readonly what: string;
  readonly spec: () => TaskSpec;
  readonly error: new (...args: never[]) => Error;
}

/** The groups of behaviours of the suite. */
export const BEHAVIOURS = [
  'results',
  'failures',
  'cancellation',
  'retries',
  'walltime',
  'capacity',
  'refusals',
  'shutdown',
  'context',
] as const;
export type Behaviour = (typeof BEHAVIOURS)[number];

/** One backend as the suite drives it. */
export interface BackendSetup {
  /** how work is expressed on it */
  readonly kit: Kit;
  /** work it can never run */
  readonly refuses: readonly Refusal[];
  /**
   * The behaviours to check (default: all). Only for a second kind of work on a backend that a full
   * run with another kind already checks: then the behaviours in which the two kinds of work differ.
   */
  readonly behaviours?: readonly Behaviour[];
  /**
   * ms each test (and hook) may take, where the backend may have to wait for resources (a Slurm allocation behind other
   * jobs); default jest's
   */
  readonly timeout?: number;
  /**
   * Runs every test on executors of two worker groups (`worker: [...]`): "main", of the cores the test asks for, which
   * the executor's task defaults pin its tasks to, and "spare", of one core, opened and closed with it but never used.
   * The suite then holds through the routing of tasks to groups, and shutdown must close both groups.
   */
  readonly groups?: boolean;
  /** A fresh backend for one test; `root` is a fresh temporary directory for working directories. */
  backend(root: string): BackendInstance;
}

export interface BackendInstance {
  readonly backend: Backend;
  /**
   * What of the backend is still running (processes, threads, allocations); expected empty once `runtime.shutdown()`
   * resolved.
   */
  leftovers?(): Promise<string[]>;
}

/** A spec with requirements added. */
const needing = (spec: TaskSpec, requirements: TaskRequirements): TaskSpec => ({
  ...spec,
  requirements: { ...spec.requirements, ...requirements },
});

/** The error a task rejected with (fails the test if it succeeded). */
async function rejection(task: PromiseLike<unknown>): Promise<Error & { code?: string }> {
  try {
    await task;
  } catch (err) {
    return err as Error & { code?: string };
  }
  throw new Error('expected the task to fail, but it succeeded');
}

function expectFailure(err: Error, expected: ExpectedFailure): void {
  expect(err).toBeInstanceOf(expected.type);
  expect(err.name).toBe(expected.name);
  expect(err.message).toMatch(expected.message);
  expect(err).toMatchObject(expected.fields);
}

const range = (n: number): number[] => Array.from({ length: n }, (_, i) => i);
const ms = (n: number): bigint => BigInt(n) * 1_000_000n;

/**
 * Defines the conformance suite for one backend (one `describe` block). Each test gets a fresh temporary
 * directory, a fresh backend from `setup.backend(root)`, and a fresh workflow and runtime on it.
 */
export function backendConformance(name: string, capabilities: BackendCapabilities, setup: BackendSetup): void {
  const { kit } = setup;
  describe(`Backend conformance: ${name}`, () => {
    let root: string;
    let instance: BackendInstance;
    let wf: Workflow;
    let rt: Runtime;
    let submitted: Array<Task<unknown>>;

    beforeEach(async () => {
      root = mkdtempSync(join(tmpdir(), 'scalems-conformance-'));
      instance = setup.backend(root);
      wf = await openWorkflow({ store: memoryStore(), name: 'conformance' });
      rt = launch(wf, instance.backend);
      submitted = [];
    }, setup.timeout);

    afterEach(async () => {
      // work a failed test left running must not hold up the shutdown (nor, on Slurm, the next allocation)
      for (const t of submitted) t.cancel('the test is over');
      await rt.shutdown();
      // a program cancelled during the test may still be in its cleanup (tasks.CLEANUP_MS, within its grace) when the
      // shutdown resolves, as the shutdown behaviour below allows: its last marker can land while the root is removed
      // (ENOTEMPTY, seen once in CI on bullmq()), which rmSync retries
      rmSync(root, { recursive: true, force: true, maxRetries: 10, retryDelay: 50 });
    }, setup.timeout);

    /**
     * An executor of `cores` on this test's runtime: 2 where running side by side is the point, else 1
     * (each costs: a thread pool that loads the task modules, a Slurm allocation). One at a time: on
     * Slurm each is an allocation, and the test cluster has 2 CPUs.
     */
    const open = (cores: 1 | 2): Executor =>
      setup.groups === true
        ? executor(rt, {
            worker: [
              { name: 'spare', cores: 1 },
              { name: 'main', cores },
            ],
            task: { group: 'main' },
          })
        : executor(rt, { worker: { cores } });
    function submit(ex: Executor, spec: TaskSpec): Task<unknown> {
      const t = ex.submit(spec);
      submitted.push(t);
      return t;
    }
    const dir = (name: string): string => {
      const d = join(root, name);
      mkdirSync(d);
      return d;
    };
    const valueOf = async (t: Task<unknown>): Promise<unknown> => kit.value(await t);
    /** `test` with the setup's timeout */
    const check = (title: string, fn: () => Promise<void>): void => test(title, fn, setup.timeout);
    check.each =
      <T extends object>(table: readonly T[]) =>
      (title: string, fn: (row: T) => Promise<void>) =>
        test.each(table)(title, fn, setup.timeout);
    /** A group of behaviours, defined if the setup asks for it (all by default). */
    const behaviour = (group: Behaviour, fn: () => void): void => {
      if (setup.behaviours === undefined || setup.behaviours.includes(group)) describe(group, fn);
    };

    behaviour('results', () => {
      check(
        'each task’s result comes back as the data its work produced, 12 at once each their own; its record says ' +
          'one attempt, with its times',
        async () => {
          const ex = open(2);
          const data = { text: 'ünïcode "quoted" \\ $HOME *', list: [1, -2.5, true, null, { deep: [[]] }], empty: {} };
          const echoed = submit(ex, kit.echo(data));
          const squares = range(12).map((n) => submit(ex, kit.square(n)));
          expect(await valueOf(echoed)).toEqual(data);
          expect(await Promise.all(squares.map(valueOf))).toEqual(range(12).map((n) => n * n));
          for (const t of [echoed, ...squares]) {
            expect(t.record).toMatchObject({ state: 'succeeded', attempts: 1 });
            expect(t.record!.finishedAt).toBeGreaterThanOrEqual(t.record!.startedAt!);
          }
        },
      );

      check('an upstream task’s result feeds a downstream task; the edge is recorded', async () => {
        const ex = open(1);
        const up = submit(ex, kit.square(4));
        const down = submit(ex, kit.plus(up, 1));
        expect(await valueOf(down)).toBe(17);
        expect(down.record?.inputs).toEqual([up.id]);
      });
    });

    behaviour('failures', () => {
      check(
        'a failing task rejects with its typed error, which its record holds; other tasks are unaffected; ' +
          'dependents fail with UpstreamFailedError',
        async () => {
          const ex = open(2);
          const failing = submit(ex, kit.fail('bad input 7'));
          const others = range(4).map((n) => submit(ex, kit.square(n)));
          const dependent = submit(ex, kit.plus(failing, 1));
          const expected = kit.failure('bad input 7');
          expectFailure(await rejection(failing), expected);
          expect(failing.state).toBe('failed');
          expect(failing.record?.error).toMatchObject(expected.recorded);
          expect(await Promise.all(others.map(valueOf))).toEqual([0, 1, 4, 9]);
          const upstream = await rejection(dependent);
          expect(upstream).toBeInstanceOf(UpstreamFailedError);
          expect(upstream).toMatchObject({ upstreamId: failing.id });
        },
      );

      if (kit.raise !== undefined) {
        const raise = kit.raise;
        check('a scalems error the function throws comes back as its own class, with its code and fields', async () => {
          const ex = open(2);
          const thrown = [
            {
              class: ExecutableFailedError,
              code: 'EXECUTABLE_FAILED',
              fields: { exitCode: 4, stderrTail: 'last words' },
            },
            { class: PathEscapeError, code: 'PATH_ESCAPE', fields: {} },
            { class: UnserializableValueError, code: 'UNSERIALIZABLE_VALUE', fields: {} },
          ];
          const errors = await Promise.all(thrown.map((e) => rejection(submit(ex, raise(e.class.name)))));
          // one table, so that a failure shows at once which classes come back wrong
          const seen = errors.map((err, i) => ({
            thrown: thrown[i]!.class.name,
            class: err.constructor.name,
            instanceOfIt: err instanceof thrown[i]!.class,
            code: err.code,
          }));
          expect(seen).toEqual(
            thrown.map((e) => ({ thrown: e.class.name, class: e.class.name, instanceOfIt: true, code: e.code })),
          );
          errors.forEach((err, i) => expect(err).toMatchObject(thrown[i]!.fields));
        });
      }
    });

    behaviour('cancellation', () => {
      check(
        'cancel(): a running task rejects with TaskCancelledError and its work is told to stop and ends; a ' +
          'queued one never starts; the freed core runs the next task',
        async () => {
          const ex = open(1);
          const first = dir('first');
          const second = dir('second');
          const running = submit(ex, kit.untilStopped(first));
          const queued = submit(ex, kit.untilStopped(second));
          const next = submit(ex, kit.square(3));
          await kit.started(running, first);
          queued.cancel();
          await expect(queued).rejects.toBeInstanceOf(TaskCancelledError);
          running.cancel('enough');
          await expect(running).rejects.toBeInstanceOf(TaskCancelledError);
          expect([running.state, queued.state]).toEqual(['cancelled', 'cancelled']);
          expect(running.record?.error).toMatchObject({ code: 'TASK_CANCELLED' });
          await kit.stopped(running, first);
          expect(await valueOf(next)).toBe(9);
          await kit.neverStarted(queued, second);
        },
      );
    });

    /**
     * Once `stop(task)` stopped the `untilStopped` work in `work`, the next task (a span) starts only after that work
     * has ended, cleanup included: the stopped task's core is not given to it before.
     */
    const nextWaitsForTheEnd = async (stop: (task: Task<unknown>) => Promise<void>, walltime?: number) => {
      const ex = open(1);
      expect(await valueOf(submit(ex, kit.square(2)))).toBe(4); // the executor is up (its threads, its allocation)
      const work = dir('work');
      const log = join(root, 'spans.log');
      const stopped = submit(ex, needing(kit.untilStopped(work), walltime === undefined ? {} : { walltime }));
      const next = submit(ex, kit.span(log, 0, 10));
      await kit.started(stopped, work);
      await stop(stopped);
      expect(await valueOf(next)).toBe(0);
      await kit.stopped(stopped, work);
      const ended = BigInt(readFileSync(join(work, 'ended'), 'utf8'));
      const [began] = kit.intervals(log).get(0)!;
      expect(began - ended).toBeGreaterThan(0n);
    };

    behaviour('cancellation', () => {
      if (capabilities.holdsStopped !== true) return;
      check('the core of a cancelled task runs the next task only once its work has ended, cleanup included', () =>
        nextWaitsForTheEnd(async (task) => {
          task.cancel();
          await expect(task).rejects.toBeInstanceOf(TaskCancelledError);
        }),
      );
    });

    behaviour('walltime', () => {
      if (capabilities.holdsStopped === false) return;
      check('the core of a task over its walltime runs the next task only once its work has ended', () =>
        nextWaitsForTheEnd(async (task) => {
          await expect(task).rejects.toBeInstanceOf(WalltimeExceededError);
        }, kit.walltime),
      );
    });

    behaviour('retries', () => {
      check(
        'retries: 2 — a task that fails twice succeeds on its third attempt, each retry after its backoff; ' +
          'retries: 1 — it fails with the last attempt’s error',
        async () => {
          const ex = open(2);
          const twice = dir('twice');
          const succeeds = submit(ex, needing(kit.flaky(twice, 2), { retries: { max: 2, backoff: 0.05, factor: 2 } }));
          const fails = submit(ex, needing(kit.flaky(dir('always'), 5), { retries: 1 }));
          expect(await valueOf(succeeds)).toBe(3);
          expect(succeeds.record).toMatchObject({ state: 'succeeded', attempts: 3 });
          // by the work's own clock: attempt 2 began 50 ms or more after attempt 1, attempt 3 100 ms or more after
          // attempt 2
          const began = readAttempts(twice);
          expect(began).toHaveLength(3);
          expect(began[1]! - began[0]!).toBeGreaterThanOrEqual(ms(45));
          expect(began[2]! - began[1]!).toBeGreaterThanOrEqual(ms(95));
          const expected = kit.failure('attempt 2 failed');
          expectFailure(await rejection(fails), expected);
          expect(fails.record).toMatchObject({ state: 'failed', attempts: 2, error: expected.recorded });
        },
      );
    });

    behaviour('walltime', () => {
      check(
        'a task over its walltime fails with WalltimeExceededError, its work is told to stop and ends, and its ' +
          'core runs the next task',
        async () => {
          const ex = open(1);
          expect(await valueOf(submit(ex, kit.square(2)))).toBe(4); // the executor is up (its threads, its allocation)
          const work = dir('work');
          const slow = submit(ex, needing(kit.untilStopped(work), { walltime: kit.walltime }));
          const next = submit(ex, kit.square(5));
          const err = await rejection(slow);
          expect(err).toBeInstanceOf(WalltimeExceededError);
          expect(err.message).toContain(`walltime of ${kit.walltime} s`);
          expect(slow.record?.error).toMatchObject({ code: 'WALLTIME_EXCEEDED' });
          await kit.stopped(slow, work);
          expect(await valueOf(next)).toBe(25);
        },
      );
    });

    behaviour('capacity', () => {
      check(
        'never runs more tasks at once than the executor has cores (6 tasks of 150 ms on 2 cores, as the work saw it)',
        async () => {
          const ex = open(2);
          const log = join(root, 'spans.log');
          const tasks = range(6).map((i) => submit(ex, kit.span(log, i, 150)));
          expect(await Promise.all(tasks.map(valueOf))).toEqual(range(6));
          const spans = kit.intervals(log);
          expect([...spans.keys()].sort()).toEqual(range(6));
          expect(maxOverlap(spans.values())).toBeLessThanOrEqual(2);
        },
      );

      check(
        `counts ranks × coresPerRank: a task of 2 cores on a 2-core executor runs alone (coresPerRank: ` +
          `2${capabilities.ranks ? '; ranks: 2' : ''})`,
        async () => {
          const ex = open(2);
          const log = join(root, 'spans.log');
          const wide = new Map<number, TaskRequirements>([[1, { coresPerRank: 2 }]]);
          if (capabilities.ranks) wide.set(3, { ranks: 2 });
          await Promise.all(range(5).map((i) => submit(ex, needing(kit.span(log, i, 150), wide.get(i) ?? {}))));
          const spans = kit.intervals(log);
          expect([...spans.keys()].sort()).toEqual(range(5));
          for (const i of wide.keys()) {
            const alongside = [...spans]
              .filter(([j, span]) => j !== i && overlaps(span, spans.get(i)!))
              .map(([j]) => j);
            expect({ wide: i, alongside }).toEqual({ wide: i, alongside: [] });
          }
        },
      );

      check(
        'a task needing more cores than its executor has fails at once (not after the running work) with ' +
          'UnsatisfiableRequirementsError naming both figures',
        async () => {
          const ex = open(1);
          const blocker = dir('blocker');
          const never = dir('never');
          const running = submit(ex, kit.untilStopped(blocker));
          await kit.started(running, blocker);
          const big = submit(ex, needing(kit.untilStopped(never), { coresPerRank: 2 }));
          const err = await rejection(big);
          expect(err).toBeInstanceOf(UnsatisfiableRequirementsError);
          expect(err.message).toMatch(/needs 2 cores\b.*\bhas 1\b/); // what it asks, and what the executor has
          expect(big.record?.error).toMatchObject({ code: 'UNSATISFIABLE_REQUIREMENTS' });
          expect(running.state).toBe('running'); // it did not wait for capacity
          running.cancel();
          expect(await valueOf(submit(ex, kit.square(5)))).toBe(25);
          await kit.neverStarted(big, never);
        },
      );
    });

    behaviour('refusals', () => {
      if (setup.refuses.length === 0) return;
      check.each(setup.refuses)(
        'refuses $what with a typed error at submit; nothing is recorded for it',
        async ({ spec, error }) => {
          const ex = open(1);
          // what happened, in one object: a failure shows what the backend did instead of refusing
          let outcome: Record<string, unknown>;
          try {
            const accepted = submit(ex, spec());
            outcome = {
              accepted: await accepted.then(
                () => 'and ran it',
                (err: unknown) => `and failed it later with ${String(err)}`,
              ),
            };
          } catch (err) {
            outcome = { refusedWith: (err as Error).name, instanceOfIt: err instanceof error };
          }
          expect(outcome).toEqual({ refusedWith: error.name, instanceOfIt: true });
          expect(await valueOf(submit(ex, kit.square(2)))).toBe(4); // committed after the refusal, if anything was
          expect(wf.state.tasks.size).toBe(1);
          expect(Object.values(wf.state.counts).reduce((a, b) => a + b, 0)).toBe(1);
        },
      );
    });

    behaviour('shutdown', () => {
      check(
        'disposing an executor (await using) is shutdown({ wait: false }): handles stay valid, its tasks still ' +
          'finish, new work throws ExecutorShutdownError',
        async () => {
          const log = join(root, 'spans.log');
          let ex: Executor;
          let first: Task<unknown>;
          let second: Task<unknown>;
          {
            await using scoped = open(1);
            ex = scoped;
            first = submit(scoped, kit.span(log, 0, 300));
            second = submit(scoped, kit.square(5));
          }
          expect(ex.isShutdown).toBe(true);
          expect(isFinal(first.state)).toBe(false); // disposing did not wait
          expect(() => ex.submit(kit.square(6))).toThrow(ExecutorShutdownError);
          expect(await valueOf(first)).toBe(0);
          expect(await valueOf(second)).toBe(25);
          expect(second.record?.state).toBe('succeeded');
        },
      );

      check('shutdown({ wait: true }) resolves only once every task has settled and its work has ended', async () => {
        const ex = open(1);
        const log = join(root, 'spans.log');
        const tasks = range(2).map((i) => submit(ex, kit.span(log, i, 100)));
        const failing = submit(ex, kit.fail('late failure'));
        await ex.shutdown({ wait: true });
        expect(tasks.map((t) => t.state)).toEqual(['succeeded', 'succeeded']);
        expect(failing.state).toBe('failed');
        expect([...kit.intervals(log).keys()].sort()).toEqual([0, 1]);
        expect(() => ex.submit(kit.square(6))).toThrow(ExecutorShutdownError);
      });

      check(
        'runtime.shutdown() lets cancelled work stop cleanly, then releases the backend: handles stay valid, ' +
          'nothing of it is left running',
        async () => {
          const ex = open(2);
          const work = dir('work');
          const cancelled = submit(ex, kit.untilStopped(work));
          const done = submit(ex, kit.square(7));
          await kit.started(cancelled, work);
          expect(await valueOf(done)).toBe(49);
          // shut down right after the cancel, with nothing else running: the cancelled work is all that is left to wait
          // for
          cancelled.cancel();
          await rt.shutdown();
          expect([done.state, cancelled.state]).toEqual(['succeeded', 'cancelled']);
          expect(await valueOf(done)).toBe(49);
          expect(() => ex.submit(kit.square(8))).toThrow(ExecutorShutdownError);
          // released, so the work has stopped (in-process functions, which nothing kills, finish their cleanup just
          // after)
          await kit.stopped(cancelled, work, 2000);
          expect((await instance.leftovers?.()) ?? []).toEqual([]);
        },
      );
    });

    behaviour('context', () => {
      if (kit.whoAmI !== undefined) {
        const whoAmI = kit.whoAmI;
        check('currentTask() gives the function its id, label, attempt and a live signal', async () => {
          const t = submit(open(1), { ...whoAmI(), label: 'who' });
          expect(await valueOf(t)).toEqual({ id: t.id, label: 'who', attempt: 1, aborted: false });
        });
      }

      if (capabilities.closures) {
        check('runs closures, with the variables they capture', async () => {
          const offset = 10;
          const t = submit(
            open(1),
            call((x: number) => x + offset, 5),
          );
          expect(await t).toBe(15);
        });
      }
    });
  });
}

/** The start times of the attempts a `flaky` work logged in `<dir>/attempts` (`<n> <time>` lines). */
function readAttempts(dir: string): bigint[] {
  return readFileSync(join(dir, 'attempts'), 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((line) => BigInt(line.split(' ')[1]!));
}
