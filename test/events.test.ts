// workflow.events$: every transition of a task as a typed event, in order, after the commit that recorded it.
import { TestScheduler } from 'rxjs/testing';
import { filter, firstValueFrom, toArray, type Subscription } from 'rxjs';
import {
  call,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  submitOn,
  type TaskEvent,
  type TaskStateName,
  type Workflow,
} from 'scalems';
import { virtual } from 'scalems/testing';

const double = (n: number): number => n * 2;
const boom = (n: number): number => {
  throw new RangeError(`value ${n} out of range\nsecond line`);
};

let wf: Workflow;
let events: TaskEvent[];
let sub: Subscription | undefined;
beforeEach(async () => {
  wf = await openWorkflow({ store: memoryStore(), name: 'events' });
  events = [];
  sub = undefined;
});
afterEach(async () => {
  sub?.unsubscribe();
  await wf.close();
});

const record = (): void => {
  sub = wf.events$.subscribe((e) => events.push(e));
};
const kinds = (id?: string): string[] =>
  events.filter((e) => id === undefined || e.id === id).map((e) => `${e.type}:${e.attempt}`);

it('emits every transition in order, even several in one commit: submitted, started, retrying, succeeded', async () => {
  record();
  let calls = 0;
  const flaky = (n: number): number => {
    if (++calls === 1) throw new Error('first attempt fails');
    return n;
  };
  const ex = executor(launch(wf, inProcess()), { task: { retries: 1 } });
  const committed: TaskStateName[] = [];
  const t = ex.submit(flaky, 3);
  t.state$.subscribe((s) => committed.push(s));
  expect(await t).toBe(3);
  await wf.flushed();
  // the engine committed fewer states than happened: the events still have each of them, in order
  expect(committed).not.toContain('running');
  expect(kinds(t.id)).toEqual(['submitted:0', 'started:1', 'retrying:1', 'started:2', 'succeeded:2']);
  const retrying = events.find((e) => e.type === 'retrying');
  expect(retrying).toMatchObject({ type: 'retrying', error: { name: 'Error', message: 'first attempt fails' } });
});

it('carries id, label, name, kind, executor, attempt, time and duration', async () => {
  record();
  const ex = executor(launch(wf, inProcess()));
  const before = wf.now();
  const t = ex.submit({ ...call(double, 21), label: 'answer' });
  await t;
  await wf.flushed();
  const after = wf.now();
  const [submitted, started, succeeded] = events;
  expect(submitted).toEqual({
    type: 'submitted',
    id: t.id,
    label: 'answer',
    name: 'double',
    kind: 'function',
    executor: ex.id,
    attempt: 0,
    time: expect.any(Number),
  });
  expect(started).toMatchObject({ type: 'started', id: t.id, attempt: 1 });
  expect(succeeded).toMatchObject({ type: 'succeeded', id: t.id, attempt: 1, duration: expect.any(Number) });
  for (const e of events) {
    expect(e.time).toBeGreaterThanOrEqual(before);
    expect(e.time).toBeLessThanOrEqual(after);
  }
  expect(succeeded!.time - started!.time).toBe((succeeded as { duration: number }).duration);
});

it('is published after the commit that recorded it: the committed state already shows the change', async () => {
  const seen: Array<[string, TaskStateName | undefined]> = [];
  sub = wf.events$.subscribe((e) => seen.push([e.type, wf.state.tasks.get(e.id)?.state]));
  const ex = executor(launch(wf, inProcess()));
  await ex.submit(double, 1);
  await wf.flushed();
  // the last commit took the task from ready to succeeded: each event of it sees the committed result
  expect(seen.at(-1)).toEqual(['succeeded', 'succeeded']);
  for (const [, state] of seen) expect(state).toBeDefined();
});

it('failed carries the recorded error; a dependent fails with UpstreamFailedError and no duration; cancelled too', async () => {
  record();
  const ex = executor(launch(wf, inProcess()));
  const broken = ex.submit(boom, 1);
  broken.label = 'broken';
  const after = ex.submit(double, broken);
  const never = new Promise<number>(() => undefined);
  const hang = (): Promise<number> => never;
  const long = ex.submit(hang);
  await Promise.allSettled([broken, after]);
  await wf.flushed();
  long.cancel('not needed');
  await Promise.allSettled([long]);
  await wf.flushed();

  const failed = events.filter((e): e is Extract<TaskEvent, { type: 'failed' }> => e.type === 'failed');
  expect(failed.map((e) => e.id)).toEqual([broken.id, after.id]);
  expect(failed[0]).toMatchObject({
    label: 'broken',
    attempt: 1,
    duration: expect.any(Number),
    error: { name: 'RangeError', message: 'value 1 out of range\nsecond line' },
  });
  expect(failed[1]!.error).toMatchObject({ name: 'UpstreamFailedError', code: 'UPSTREAM_FAILED' });
  expect(failed[1]!.attempt).toBe(0);
  expect('duration' in failed[1]!).toBe(false);
  const cancelled = events.find((e) => e.type === 'cancelled');
  expect(cancelled).toMatchObject({
    id: long.id,
    attempt: 1,
    duration: expect.any(Number),
    error: { name: 'TaskCancelledError', message: 'not needed' },
  });
});

it('a task cancelled while it waits for its input is cancelled without a duration; a re-run is submitted again', async () => {
  record();
  const ex = executor(launch(wf, inProcess()));
  let release!: (n: number) => void;
  const gate = new Promise<number>((resolve) => (release = resolve));
  const slow = (): Promise<number> => gate;
  const first = ex.submit(slow);
  const second = ex.submit(double, first);
  second.cancel();
  await wf.flushed();
  release(2);
  await first;
  await wf.flushed();
  expect(events.find((e) => e.id === second.id && e.type === 'cancelled')).not.toHaveProperty('duration');
  expect(await second.retry()).toBe(4);
  await wf.flushed();
  expect(kinds(second.id)).toEqual(['submitted:0', 'cancelled:0', 'submitted:0', 'started:1', 'succeeded:1']);
});

it('nothing is recorded without subscribers; a subscriber gets the events from when it subscribed', async () => {
  const ex = executor(launch(wf, inProcess()));
  const s = wf.events$.subscribe();
  s.unsubscribe();
  await ex.submit(double, 1); // nobody listens: no event is made, nothing breaks
  await wf.flushed();
  record();
  await ex.submit(double, 2);
  await wf.flushed();
  expect(new Set(events.map((e) => e.type))).toEqual(new Set(['submitted', 'started', 'succeeded']));
  expect(new Set(events.map((e) => e.id)).size).toBe(1);
});

it('two subscribers get the same events; the stream completes when the workflow closes', async () => {
  const ex = executor(launch(wf, inProcess()));
  const all = firstValueFrom(wf.events$.pipe(toArray()));
  const successes = firstValueFrom(
    wf.events$.pipe(
      filter((e) => e.type === 'succeeded'),
      toArray(),
    ),
  );
  await Promise.all([ex.submit(double, 1), ex.submit(double, 2)]);
  await wf.close();
  expect((await all).length).toBe(6);
  expect((await successes).length).toBe(2);
});

it('in virtual time: events at the frames the work happens, retries after their backoff', () => {
  const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
  let calls = 0;
  const flaky = (n: number): number => {
    if (++calls < 3) throw new Error(`attempt ${calls} failed`);
    return n;
  };
  const seen: string[] = [];
  scheduler.run(({ cold, expectObservable }) => {
    record();
    const rt = launch(wf, virtual({ durations: { flaky: 1, double: 4 } }));
    const ex = executor(rt, { task: { retries: { max: 2, backoff: 0.01, factor: 2 } } });
    wf.events$.subscribe((e) => seen.push(`${e.time} ${e.type} ${e.name} #${e.attempt}`));
    expectObservable(cold('a|', { a: 7 }).pipe(submitOn(ex, flaky), submitOn(ex, double))).toBe('37ms (r|)', { r: 14 });
  });
  // attempt 1 ends at 1; retry after 10 ms → attempt 2 at 11..12; after 20 ms → attempt 3 at 32..33; double 33..37
  expect(seen).toEqual([
    '0 submitted flaky #0',
    '0 started flaky #1',
    '1 retrying flaky #1',
    '11 started flaky #2',
    '12 retrying flaky #2',
    '32 started flaky #3',
    '33 succeeded flaky #3',
    '33 submitted double #0',
    '33 started double #1',
    '37 succeeded double #1',
  ]);
  const retrying = events.filter((e) => e.type === 'retrying');
  expect(retrying.map((e) => (e as { duration: number }).duration)).toEqual([1, 1]);
});
