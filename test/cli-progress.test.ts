import { Writable } from 'node:stream';
import { Subject } from 'rxjs';
import { TestScheduler } from 'rxjs/testing';
import {
  InvalidOptionsError,
  executor,
  inProcess,
  launch,
  memoryStore,
  openWorkflow,
  type TaskStateName,
  type WorkflowState,
} from 'scalems';
import { emptyTable } from '../src/store/table';
import { progress } from 'scalems/node';

/** A stream that keeps what is written, optionally posing as a terminal. */
function capture(isTTY = false): Writable & { text: () => string; isTTY: boolean } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer | string, _encoding, done) {
      chunks.push(chunk.toString());
      done();
    },
    decodeStrings: false,
  });
  return Object.assign(stream, { text: () => chunks.join(''), isTTY });
}

/** A workflow state with only the counts filled in (all that progress() reads). */
function counts(c: Partial<Record<TaskStateName, number>>): WorkflowState {
  return {
    name: 'w',
    tasks: emptyTable(),
    labels: emptyTable(),
    counts: { new: 0, submitted: 0, ready: 0, running: 0, succeeded: 0, failed: 0, cancelled: 0, ...c },
  };
}

describe('progress() in lines mode', () => {
  it('prints at most one line per interval (the latest state), at once for each new 10%, and a last one at the end', () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    const lines: Array<[number, string]> = [];
    const stream = new Writable({
      write(chunk: Buffer, _e, done) {
        for (const line of chunk.toString().split('\n').filter(Boolean)) lines.push([scheduler.now(), line]);
        done();
      },
    });
    scheduler.run(() => {
      const states = new Subject<WorkflowState>();
      progress({ state$: states }, { stream, mode: 'lines', interval: 1000, scheduler });
      const at = (t: number, s: WorkflowState): void => void scheduler.schedule(() => states.next(s), t);
      at(0, counts({})); // no task yet: nothing
      at(10, counts({ submitted: 100 }));
      at(100, counts({ submitted: 92, running: 3, succeeded: 5 })); // same 10%, within the interval: later
      at(200, counts({ submitted: 90, running: 3, succeeded: 7 }));
      at(1100, counts({ submitted: 71, running: 4, succeeded: 25 })); // 20%: at once
      at(1200, counts({ submitted: 70, running: 3, succeeded: 25, failed: 1, cancelled: 1 }));
      scheduler.schedule(() => states.complete(), 1300);
    });
    expect(lines).toEqual([
      [10, '[scalems] 0/100 done (0 failed, 0 running)'],
      [1010, '[scalems] 7/100 done (0 failed, 3 running)'],
      [1100, '[scalems] 25/100 done (0 failed, 4 running)'],
      [1300, '[scalems] 27/100 done (1 failed, 1 cancelled, 3 running)'],
    ]);
  });

  it('stop() draws the last state once, cancels the pending line and is idempotent; the prefix is configurable', () => {
    const scheduler = new TestScheduler((a, b) => expect(a).toEqual(b));
    const stream = capture();
    const states = new Subject<WorkflowState>();
    scheduler.run(() => {
      const shown = progress({ state$: states }, { stream, mode: 'lines', scheduler, prefix: '[md]' });
      states.next(counts({ running: 2 }));
      states.next(counts({ running: 1, succeeded: 1 }));
      shown.stop();
      shown[Symbol.dispose]();
      states.next(counts({ succeeded: 2 }));
    });
    expect(stream.text()).toBe('[md] 0/2 done (0 failed, 2 running)\n[md] 1/2 done (0 failed, 1 running)\n');
    expect(states.observed).toBe(false);
  });

  it('follows a real workflow and stops by itself when the workflow closes', async () => {
    const stream = capture();
    const wf = await openWorkflow({ store: memoryStore() });
    const shown = progress(wf, { stream, interval: 60_000 }); // not a TTY: lines
    const rt = launch(wf, inProcess());
    const ex = executor(rt);
    const ok = async (n: number): Promise<number> => n;
    const bad = async (): Promise<number> => {
      throw new Error('no');
    };
    await Promise.allSettled([ex.submit(ok, 1), ex.submit(ok, 2), ex.submit(bad)]);
    await rt.shutdown();
    await wf.close();
    const lines = stream.text().trimEnd().split('\n');
    expect(lines[0]).toMatch(/^\[scalems\] 0\/\d done \(0 failed, 0 running\)$/);
    expect(lines.at(-1)).toBe('[scalems] 3/3 done (1 failed, 0 running)');
    const written = stream.text();
    shown.stop(); // already stopped: nothing more
    expect(stream.text()).toBe(written);
  });

  it('on a workflow that is already closed, stops at once (no error, nothing drawn)', async () => {
    const stream = capture();
    const wf = await openWorkflow({ store: memoryStore() });
    await wf.close();
    const shown = progress(wf, { stream });
    shown.stop();
    expect(stream.text()).toBe('');
  });
});

describe('progress() with bad input', () => {
  // before: taken, and a bad stream ended the program with an uncaught TypeError at the first line drawn
  it.each([
    ['{ stream: 5 }', { stream: 5 }, /progress\(\{ stream \}\): expected a writable stream .*got 5/],
    ['{ mode: "fancy" }', { mode: 'fancy' }, /mode \}\): expected 'auto' or 'bar' or 'lines'/],
    ['{ interval: NaN }', { interval: NaN }, /interval \}\): expected a number of milliseconds/],
    ['{ prefix: {} }', { prefix: {} }, /prefix \}\): expected a string/],
    ['{ intervall: 5 }', { intervall: 5 }, /unknown option \(did you mean "interval"\?/],
    ['null', null, /progress\(options\): expected an object, got null/],
  ])('options %s: InvalidOptionsError at the call', async (_, options, why) => {
    const wf = await openWorkflow({ store: memoryStore() });
    expect(() => progress(wf, options as never)).toThrow(InvalidOptionsError);
    expect(() => progress(wf, options as never)).toThrow(why);
    await wf.close();
  });

  it('a workflow that is not one: InvalidOptionsError naming it', () => {
    for (const wf of [null, undefined, {}]) {
      expect(() => progress(wf as never)).toThrow(InvalidOptionsError);
      expect(() => progress(wf as never)).toThrow(/workflow must be a Workflow \(from openWorkflow\)/);
    }
  });
});

describe('progress() in bar mode', () => {
  it('draws a cli-progress bar on a terminal, and its last state when the workflow ends', () => {
    const stream = capture(true);
    const states = new Subject<WorkflowState>();
    progress({ state$: states }, { stream }); // auto: the stream is a TTY
    states.next(counts({}));
    expect(stream.text()).toBe('');
    states.next(counts({ submitted: 3, running: 1 }));
    states.next(counts({ running: 1, succeeded: 2, failed: 1 }));
    states.next(counts({ succeeded: 3, failed: 1 }));
    states.complete();
    const text = stream.text();
    expect(text).toContain('0/4 done | 0 failed | 1 running');
    expect(text).toContain('[scalems] ░░░░░');
    expect(text).toMatch(/\[scalems\] █{30} 4\/4 done \| 1 failed \| 0 running \| \d+s/);
    expect(text.endsWith('\n')).toBe(true);
    expect(states.observed).toBe(false);
  });
});
