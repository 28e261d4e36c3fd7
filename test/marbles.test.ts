import { TestScheduler } from 'rxjs/testing';
import { map, toArray } from 'rxjs';
import { openWorkflow, launch, executor, call, submitOn, labelled, memoryStore, type Workflow } from 'scalems';
import { virtual } from 'scalems/testing';

// Marble diagrams of whole workflows: one frame is one virtual millisecond; task durations come from
// the virtual backend, everything else (admission, ordering, failure) is the real engine.

const simulate = (n: number): number => n * 10;
const analyse = (x: number): number => x + 1;
const explode = (n: number): number => {
  if (n === 2) throw new Error(`member ${n} diverged`);
  return n;
};

let wf: Workflow;
let scheduler: TestScheduler;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore() });
  scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
});

test('results arrive when each member finishes; a limit of 2 cores runs two at a time', () => {
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { simulate: 3 } }));
    const md = executor(rt, { worker: { cores: 2 } });
    const input = cold('(abcd|)', { a: 1, b: 2, c: 3, d: 4 });
    // four members of 3 frames on 2 cores: two finish at frame 3, two at frame 6
    // (a marble group spans as many frames as it has characters, so frames are listed with the values)
    const timed = input.pipe(
      submitOn(md, simulate),
      map((v) => `${scheduler.now()}:${v}`),
      toArray(),
    );
    expectObservable(timed).toBe('------(x|)', { x: ['3:10', '3:20', '6:30', '6:40'] });
  });
});

test('a second executor chained after the first: analysis starts as each simulation ends', () => {
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { simulate: 4, analyse: 2 } }));
    const md = executor(rt, { worker: { cores: 4 } });
    const an = executor(rt, { worker: { cores: 1 } });
    const input = cold('a-b|', { a: 1, b: 2 });
    // sims end at 4 and 6; analyses (1 core) at 6 and 8
    expectObservable(input.pipe(submitOn(md, simulate), submitOn(an, analyse))).toBe('------x-(y|)', { x: 11, y: 21 });
  });
});

test('ordered: results keep input order even when later members finish first', () => {
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: (job) => (job.label === 'slow' ? 5 : 1) }));
    const md = executor(rt, { worker: { cores: 4 } });
    const specs = cold('(ab|)', { a: 1, b: 2 }).pipe(
      map((n) => call(simulate, n)),
      labelled((s) => (s.args[0] === 1 ? 'slow' : 'fast')),
    );
    expectObservable(specs.pipe(submitOn(md))).toBe('-b---(a|)', { a: 10, b: 20 });
    expectObservable(specs.pipe(submitOn(md, { ordered: true }))).toBe('-----(ab|)', { a: 10, b: 20 });
  });
});

test('a failed member errors the stream; with settle it is one rejected outcome among the others', () => {
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { explode: 2 } }));
    const md = executor(rt, { worker: { cores: 4 } });
    const input = cold('(abc|)', { a: 1, b: 2, c: 3 });
    // member 1 finishes in the same frame, before member 2's failure ends the stream
    expectObservable(input.pipe(submitOn(md, explode))).toBe('--(a#)', { a: 1 }, new Error('member 2 diverged'));
    const settled = input.pipe(
      submitOn(md, explode, { settle: true }),
      map((s) => (s.status === 'fulfilled' ? `ok ${String(s.value)}` : `failed: ${(s.reason as Error).message}`)),
    );
    expectObservable(settled).toBe('--(abc|)', { a: 'ok 1', b: 'failed: member 2 diverged', c: 'ok 3' });
  });
});

test('retries with backoff happen in virtual time', () => {
  let calls = 0;
  const flaky = (_input: string): string => {
    calls++;
    if (calls < 3) throw new Error(`attempt ${calls} failed`);
    return `ok after ${calls}`;
  };
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { flaky: 1 } }));
    const ex = executor(rt, { task: { retries: { max: 2, backoff: 0.01, factor: 2 } } });
    // attempt 1 ends at 1; retry after 10 ms → attempt 2 ends at 12; retry after 20 ms → attempt 3 ends at 33
    expectObservable(cold('a|').pipe(submitOn(ex, flaky))).toBe('33ms (r|)', { r: 'ok after 3' });
  });
});

test('walltime stops a task that runs too long, in virtual time', () => {
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { simulate: 100 } }));
    const ex = executor(rt, { task: { walltime: 0.005 } });
    const out = cold('a|', { a: 1 }).pipe(
      submitOn(ex, simulate, { settle: true }),
      map((s) => (s.status === 'rejected' ? (s.reason as Error).name : 'ok')),
    );
    expectObservable(out).toBe('-----(w|)', { w: 'WalltimeExceededError' });
  });
});

test('a durations function that gives no duration, or throws, fails the task with InvalidOptionsError', () => {
  // NaN left the task running for good; a throw escaped scheduler.run() from inside a commit, and broke the marble
  // tests after it in the same file
  const bad: Array<[string, () => number]> = [
    ['NaN', () => NaN],
    ['a string', () => '3' as unknown as number],
    [
      'a throw',
      () => {
        throw new Error('no duration for it');
      },
    ],
  ];
  for (const [what, durations] of bad) {
    const errors: string[] = [];
    scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
    scheduler.run(({ cold, expectObservable }) => {
      const rt = launch(wf, virtual({ durations }));
      const ex = executor(rt);
      const out = cold('a|', { a: 1 }).pipe(
        submitOn(ex, simulate, { settle: true }),
        map((s) => (s.status === 'rejected' ? (errors.push((s.reason as Error).message), 'failed') : 'ok')),
      );
      expectObservable(out).toBe('f|', { f: 'failed' });
    });
    expect([what, errors]).toEqual([what, [expect.stringMatching(/^virtual\(\{ durations \}\): the function/)]]);
  }
  // the next marble test of the file still runs
  scheduler = new TestScheduler((actual, expected) => expect(actual).toEqual(expected));
  scheduler.run(({ cold, expectObservable }) => {
    const rt = launch(wf, virtual({ durations: { simulate: 2 } }));
    expectObservable(cold('a|', { a: 1 }).pipe(submitOn(executor(rt), simulate))).toBe('--(x|)', { x: 10 });
  });
});
