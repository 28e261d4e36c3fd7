// submitOn, pinned as RxJS pins its operators (spec/operators/*-spec.ts): marble diagrams of the result
// and of the source's subscription, on the virtual backend (one frame = one virtual millisecond).
import { TestScheduler } from 'rxjs/testing';
import { from, map, type OperatorFunction } from 'rxjs';
import {
  InvalidTaskDescriptionError,
  UnsatisfiableRequirementsError,
  UpstreamFailedError,
  call,
  executor,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  type Settled,
  type TaskSpec,
  type Workflow,
} from 'scalems';
import { virtual } from 'scalems/testing';

const times10 = (n: number): number => n * 10;
const failsOn2 = (n: number): number => {
  if (n === 2) throw new Error('member 2 diverged');
  return n;
};

let wf: Workflow;
let scheduler: TestScheduler;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
});

/** An executor of `cores` on which every task takes `frames`. */
const executorOf = (frames: number, cores = 4) =>
  executor(launch(wf, virtual({ defaultDuration: frames })), { worker: { cores } });

/** How many tasks the workflow has recorded, by state. */
const counts = () => wf.state.counts;

describe('submitOn', () => {
  it('emits each result when its task settles and completes after the source and every task', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const ex = executorOf(3);
      const source = hot('-a-b-|', { a: 1, b: 2 });
      expectObservable(source.pipe(submitOn(ex, times10))).toBe('----a-(b|)', { a: 10, b: 20 });
      expectSubscriptions(source.subscriptions).toBe('^----!');
    });
  });

  it('unsubscribing unsubscribes the source and cancels the tasks in flight', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions, flush }) => {
      const ex = executorOf(4);
      const source = hot('-a-b-c-d-|', { a: 1, b: 2, c: 3, d: 4 });
      expectObservable(source.pipe(submitOn(ex, times10)), '^-----!').toBe('-----a', { a: 10 });
      expectSubscriptions(source.subscriptions).toBe('^-----!');
      flush();
      // a (submitted at 1) finished at 5; b (3) and c (5) were in flight at 6: cancelled; d never submitted
      expect(counts()).toMatchObject({ succeeded: 1, cancelled: 2 });
      expect(wf.state.tasks.size).toBe(3);
    });
  });

  it('a failed task errors the stream and unsubscribes the source: nothing is submitted after it', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions, flush }) => {
      const ex = executorOf(2);
      const source = hot('-a-b-c-d-|', { a: 1, b: 2, c: 3, d: 4 });
      expectObservable(source.pipe(submitOn(ex, failsOn2))).toBe('---a-#', { a: 1 }, new Error('member 2 diverged'));
      expectSubscriptions(source.subscriptions).toBe('^----!');
      flush();
      // a, b and c were submitted (c at 5, the frame b failed in: it is cancelled); d never was
      expect(wf.state.tasks.size).toBe(3);
      expect(counts()).toMatchObject({ succeeded: 1, failed: 1, cancelled: 1 });
    });
  });

  it('with { settle: true } a failure is one outcome among the others and the source runs to its end', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const ex = executorOf(2);
      const source = hot('-a-b-c-|', { a: 1, b: 2, c: 3 });
      const outcomes = source.pipe(
        submitOn(ex, failsOn2, { settle: true }),
        map((s: Settled<number>) => (s.status === 'fulfilled' ? s.value : 'x')),
      );
      expectObservable(outcomes).toBe('---a-b-(c|)', { a: 1, b: 'x', c: 3 });
      expectSubscriptions(source.subscriptions).toBe('^------!');
    });
  });

  it('submitOn(executor, undefined, options) takes the options (before: dropped, so a failure errored the stream)', () => {
    scheduler.run(({ hot, expectObservable }) => {
      const ex = executorOf(2);
      const source = hot('-a-b-c-|', { a: call(failsOn2, 1), b: call(failsOn2, 2), c: call(failsOn2, 3) });
      const outcomes = source.pipe(
        submitOn(ex, undefined, { settle: true }),
        map((s: Settled<number>) => (s.status === 'fulfilled' ? s.value : 'x')),
      );
      expectObservable(outcomes).toBe('---a-b-(c|)', { a: 1, b: 'x', c: 3 });
    });
  });

  it('a source error errors the stream at once and cancels the tasks in flight', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions, flush }) => {
      const ex = executorOf(10);
      const source = hot('-a-#', { a: 1 });
      expectObservable(source.pipe(submitOn(ex, times10))).toBe('---#');
      expectSubscriptions(source.subscriptions).toBe('^--!');
      flush();
      expect(counts()).toMatchObject({ cancelled: 1 });
    });
  });

  it('{ ordered: true } emits in input order, holding a result until those before it have come', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const ex = executor(launch(wf, virtual({ durations: (job) => (job.args[0] === 1 ? 5 : 1) })), {
        worker: { cores: 4 },
      });
      const source = hot('-a-b|', { a: 1, b: 2 });
      expectObservable(source.pipe(submitOn(ex, times10, { ordered: true }))).toBe('------(ab|)', { a: 10, b: 20 });
      expectSubscriptions(source.subscriptions).toBe('^---!');
    });
  });

  it('{ ordered: true }: a failure behind a running member stops the pulling at once; its error comes in its turn', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions, flush }) => {
      const ex = executor(launch(wf, virtual({ durations: (job) => (job.args[0] === 1 ? 10 : 1) })), {
        worker: { cores: 4 },
      });
      const source = hot('-a-b-c-d-|', { a: 1, b: 2, c: 3, d: 4 });
      const out = source.pipe(submitOn(ex, failsOn2, { ordered: true }));
      expectObservable(out).toBe('-----------(a#)', { a: 1 }, new Error('member 2 diverged'));
      // before: pulled to the end, c and d submitted, until a's turn came at frame 11
      expectSubscriptions(source.subscriptions).toBe('^---!');
      flush();
      expect(counts()).toMatchObject({ succeeded: 1, failed: 1, cancelled: 0 });
    });
  });

  it('stops pulling a synchronous source at an error: the rest is neither pulled nor submitted', () => {
    scheduler.run(({ expectObservable }) => {
      const ex = executorOf(1);
      let pulled = 0;
      function* inputs(): Generator<TaskSpec | number> {
        for (const item of [call(times10, 1), 2, call(times10, 3), call(times10, 4)]) {
          pulled++;
          yield item;
        }
      }
      // the second input is not a spec: submitOn(ex) refuses it, in the middle of from()'s loop
      const refused = from(inputs()).pipe(submitOn(ex) as unknown as OperatorFunction<TaskSpec | number, unknown>);
      expectObservable(refused).toBe('#', undefined, expect.any(InvalidTaskDescriptionError) as unknown as Error);
      scheduler.flush();
      expect(pulled).toBe(2);
      expect(wf.state.tasks.size).toBe(1);
    });
  });

  it.each(['requirements it can never meet', 'an input that failed'] as const)(
    'stops pulling a synchronous source at a member that fails as it is submitted (%s); its error comes later',
    (failsAtOnce) => {
      scheduler.run(({ flush }) => {
        const ex = executorOf(1);
        const failed = ex.submit(failsOn2, 2);
        flush();
        const before = wf.state.tasks.size;
        let pulled = 0;
        function* inputs(): Generator<TaskSpec<number>> {
          for (let i = 1; i <= 100; i++) {
            pulled++;
            if (i !== 3) yield call(times10, i);
            else if (failsAtOnce === 'an input that failed') yield call(times10, failed as unknown as number);
            else yield { ...call(times10, i), requirements: { coresPerRank: 64 } };
          }
        }
        const seen: unknown[] = [];
        from(inputs())
          .pipe(submitOn(ex))
          .subscribe({ next: (v) => seen.push(v), error: (e: unknown) => seen.push(e) });
        flush();
        expect(seen).toEqual([
          expect.any(failsAtOnce === 'an input that failed' ? UpstreamFailedError : UnsatisfiableRequirementsError),
        ]);
        // pulled up to the member that failed, and no further; the two before it were cancelled with the stream
        expect(pulled).toBe(3);
        expect(wf.state.tasks.size - before).toBe(3);
        expect(counts()).toMatchObject({ cancelled: 2 });
      });
    },
  );

  it('keeps a window of unsettled tasks (256 here): a large source waits as inputs, not as tasks in flight', () => {
    scheduler.run(({ flush }) => {
      const ex = executorOf(1, 1);
      let most = 0;
      wf.state$.subscribe((s) => (most = Math.max(most, s.counts.submitted + s.counts.ready + s.counts.running)));
      const results: number[] = [];
      from(Array.from({ length: 1000 }, (_, i) => i))
        .pipe(submitOn(ex, times10))
        .subscribe((r) => results.push(r));
      flush();
      expect(results).toHaveLength(1000);
      expect(results.slice(0, 3)).toEqual([0, 10, 20]);
      expect(most).toBe(256);
    });
  });

  it('after a failure, inputs still waiting outside the window are never submitted (nor cancelled)', () => {
    scheduler.run(({ expectObservable, flush }) => {
      const ex = executorOf(1, 1);
      const source = from(Array.from({ length: 1000 }, (_, i) => i + 1));
      expectObservable(source.pipe(submitOn(ex, failsOn2))).toBe('-a#', { a: 1 }, new Error('member 2 diverged'));
      flush();
      // the first 256 were submitted, and the 257th when the first settled; 2 failed, the rest of the window was
      // cancelled; 743 never were submitted
      expect(wf.state.tasks.size).toBe(257);
      expect(counts()).toMatchObject({ succeeded: 1, failed: 1, cancelled: 255 });
    });
  });
});
