// task(), withRequirements() and labelled(), pinned as RxJS pins its operators: marble diagrams of what
// each emits and of the source's subscription. Nothing here submits: these operators only build specs.
import { TestScheduler } from 'rxjs/testing';
import { map } from 'rxjs';
import {
  InvalidRequirementsError,
  InvalidTaskDescriptionError,
  call,
  labelled,
  task,
  withRequirements,
  type TaskSpec,
} from 'scalems';

const simulate = (n: number): number => n * 10;

let scheduler: TestScheduler;
beforeEach(() => {
  scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
});

/** A spec's observable fields (the live function is kept under a symbol, not compared). */
const fields = (s: TaskSpec) => ({ name: s.name, args: s.args, requirements: s.requirements, label: s.label });

describe('task(fn, ...args)', () => {
  it('is cold: each subscription gets a spec made then, and completes', () => {
    scheduler.run(({ expectObservable }) => {
      const one$ = task(simulate, 7);
      const spec = { name: 'simulate', args: [7], requirements: undefined, label: undefined };
      expectObservable(one$.pipe(map(fields))).toBe('(s|)', { s: spec });
      expectObservable(one$.pipe(map(fields)), '--^').toBe('--(s|)', { s: spec });
    });
    const seen: TaskSpec[] = [];
    const one$ = task(simulate, 7);
    one$.subscribe((s) => seen.push(s));
    one$.subscribe((s) => seen.push(s));
    expect(seen).toHaveLength(2);
    expect(seen[0]).not.toBe(seen[1]); // made per subscription, not once when task() was called
  });
});

describe('withRequirements(req)', () => {
  it('adds the requirements to each spec over its own, and mirrors the source subscription', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-b-|', {
        a: call(simulate, 1),
        b: { ...call(simulate, 2), requirements: { ranks: 2, walltime: 5 } },
      });
      expectObservable(source.pipe(withRequirements({ walltime: 60, coresPerRank: 2 }), map(fields))).toBe('-a-b-|', {
        a: { name: 'simulate', args: [1], requirements: { walltime: 60, coresPerRank: 2 }, label: undefined },
        b: { name: 'simulate', args: [2], requirements: { ranks: 2, walltime: 60, coresPerRank: 2 }, label: undefined },
      });
      expectSubscriptions(source.subscriptions).toBe('^----!');
    });
  });

  it('validates when the pipeline is built: a bad field throws naming its path', () => {
    expect(() => withRequirements({ ranks: 0 })).toThrow(InvalidRequirementsError);
    expect(() => withRequirements({ coresPerRank: 'two' } as unknown as { coresPerRank: number })).toThrow(
      /coresPerRank/,
    );
  });

  it('an unsubscription reaches the source', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-b-c-|', { a: call(simulate, 1), b: call(simulate, 2), c: call(simulate, 3) });
      expectObservable(
        source.pipe(
          withRequirements({ ranks: 1 }),
          map((s) => s.args[0]),
        ),
        '^--!',
      ).toBe('-a-', { a: 1 });
      expectSubscriptions(source.subscriptions).toBe('^--!');
    });
  });
});

describe('labelled(label)', () => {
  it('gives each spec a label from its index, and mirrors the source subscription and its error', () => {
    scheduler.run(({ hot, expectObservable, expectSubscriptions }) => {
      const source = hot('-a-b-#', { a: call(simulate, 1), b: call(simulate, 2) });
      expectObservable(
        source.pipe(
          labelled((_s, i) => `member-${i}`),
          map((s) => s.label),
        ),
      ).toBe('-a-b-#', {
        a: 'member-0',
        b: 'member-1',
      });
      expectSubscriptions(source.subscriptions).toBe('^----!');
    });
  });

  it('a fixed string labels every spec (for a single task); anything else is refused when built', () => {
    scheduler.run(({ cold, expectObservable }) => {
      expectObservable(
        cold('a|', { a: call(simulate, 1) }).pipe(
          labelled('only'),
          map((s) => s.label),
        ),
      ).toBe('a|', {
        a: 'only',
      });
    });
    expect(() => labelled(42 as unknown as string)).toThrow(InvalidTaskDescriptionError);
  });
});

describe('withRequirements() and labelled() over what is not a spec (an untyped stream)', () => {
  it.each([
    ['a number', 1, /got number: make specs of plain values first \(map\(\(v\) => call\(fn, v\)\)\)/],
    ['null', null, /got null: make specs/],
    ['an object', { n: 1 }, /got an object that is not one \(n\)/],
  ])('errors the stream with InvalidTaskDescriptionError for %s, and makes no spec of it', (_what, value, why) => {
    for (const operator of [withRequirements({ walltime: 5 }), labelled('x')]) {
      const seen: unknown[] = [];
      const errors: unknown[] = [];
      scheduler.run(({ cold }) => {
        cold('a|', { a: value as unknown as TaskSpec })
          .pipe(operator)
          .subscribe({ next: (v) => seen.push(v), error: (e: unknown) => errors.push(e) });
      });
      expect(seen).toEqual([]);
      expect(errors).toHaveLength(1);
      expect(errors[0]).toBeInstanceOf(InvalidTaskDescriptionError);
      expect((errors[0] as Error).message).toMatch(why);
    }
  });
});
