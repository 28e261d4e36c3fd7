/**
 * Kits for the backend conformance suite (test/backend-conformance.ts): how each kind of work is
 * expressed, and how the test reads what the work did.
 *
 * - `functionKit`: `defineTask` functions of test/fixtures/conformance/tasks.ts, running while their
 *   task runs (inProcess(), threads(), slurm() through `scalems-task`).
 * - `virtualKit`: the same functions on virtual(), which runs a (synchronous) function when its task's
 *   duration is over: work that takes time is timed by the backend, and cannot see itself start.
 * - `executableKit`: programs of test/fixtures/conformance/programs.ts (processes(), slurm() job steps).
 */
import { ExecutableFailedError, call, executable, outputOf, type ExecutableResult, type Task } from 'scalems';
import { readText } from 'scalems/node';
import type { ExpectedFailure, Kit } from '../backend-conformance';
import { program } from '../fixtures/conformance/programs';
import * as tasks from '../fixtures/conformance/tasks';
import { fileText, isAlive, marker, readSpans, until, waitFor, type Interval } from './work';

const escape = (text: string): string => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

/**
 * `[start, end]` of each item of a log of `s <i> <time>` / `e <i> <time>` lines; an item that ran as several ranks
 * spans them all.
 */
function intervals(log: string): Map<number, Interval> {
  const result = new Map<number, Interval>();
  for (const [i, { starts, ends }] of readSpans(log)) {
    if (starts.length === 0 || ends.length !== starts.length)
      throw new Error(`${log}: item ${i} logged ${starts.length} starts and ${ends.length} ends`);
    const min = starts.reduce((a, b) => (b < a ? b : a));
    const max = ends.reduce((a, b) => (b > a ? b : a));
    result.set(i, [min, max]);
  }
  return result;
}

/** Waits for `untilStopped` work to note that it started; resolves with what it wrote there (its pid). */
const started = (dir: string, what: string): Promise<string> =>
  waitFor(() => marker(dir, 'started'), `${what} to start (${dir}/started)`);

/** How far `untilStopped(dir)` work has got, for messages. */
function progress(dir: string): string {
  if (marker(dir, 'started') === undefined) return 'it never started';
  if (marker(dir, 'aborted') === undefined) return 'it started but was never told to stop';
  if (marker(dir, 'stopped') === undefined)
    return (
      `it was told to stop (${marker(dir, 'aborted')}) but did not finish its cleanup ` +
      `(${tasks.CLEANUP_MS} ms): it was cut short`
    );
  return `it stopped (${marker(dir, 'stopped')})`;
}

/**
 * Waits until `untilStopped(dir)` work has been told to stop, has cleaned up, and (when it is a process of its own) has
 * ended.
 */
async function stoppedCleanly(dir: string, what: string, within: number, ownProcess: boolean): Promise<void> {
  const pid = Number(marker(dir, 'started'));
  const gone = (): boolean => !ownProcess || !isAlive(pid);
  await waitFor(
    () => (marker(dir, 'stopped') !== undefined && gone() ? true : undefined),
    () => `${what} to stop cleanly: ${progress(dir)}${ownProcess && !gone() ? `; pid ${pid} is still running` : ''}`,
    within,
  );
}

const neverStarted = async (_task: Task<unknown>, dir: string): Promise<void> => {
  expect(marker(dir, 'started')).toBeUndefined();
};

/** What every function kit submits for the plain results and failures. */
const functions: Pick<Kit, 'echo' | 'square' | 'plus' | 'fail' | 'flaky' | 'whoAmI' | 'raise' | 'value' | 'failure'> = {
  echo: (value) => call(tasks.echo, value),
  square: (n) => call(tasks.square, n),
  plus: (upstream, k) => call(tasks.add, upstream as Task<number>, k),
  fail: (message) => call(tasks.fail, message),
  flaky: (dir, failures) => call(tasks.flaky, dir, failures),
  whoAmI: () => call(tasks.whoAmI),
  raise: (which) => call(tasks.raise, which),
  value: async (result) => result,
  failure: (message): ExpectedFailure => ({
    type: Error,
    name: 'ConformanceError',
    message: new RegExp(`^${escape(message)}$`),
    fields: { code: 'E_CONFORMANCE', detail: 42 },
    recorded: { name: 'ConformanceError', message, code: 'E_CONFORMANCE', details: { detail: 42 } },
  }),
};

export interface FunctionKitOptions {
  /** seconds of walltime in which an `untilStopped` function surely starts */
  readonly walltime: number;
  /** each task runs in a process of its own (slurm()): once stopped, that process must be gone too */
  readonly processPerTask?: boolean;
}

export function functionKit(options: FunctionKitOptions): Kit {
  return {
    ...functions,
    walltime: options.walltime,
    untilStopped: (dir) => call(tasks.untilStopped, dir),
    span: (log, i, ms) => call(tasks.span, log, i, ms),
    started: async (_task, dir) => {
      await started(dir, 'the function');
    },
    stopped: async (_task, dir, within = 10_000) => {
      await stoppedCleanly(dir, 'the function', within, options.processPerTask === true);
      expect(marker(dir, 'stopped')).not.toBe('never stopped');
    },
    neverStarted,
    intervals,
  };
}

/** ms an `untilStopped` task takes on virtual(): it "stops" by never reaching its end */
const VIRTUAL_UNTIL_STOPPED_MS = 400;

export function virtualKit(): Kit {
  return {
    ...functions,
    walltime: 0.3,
    untilStopped: (dir) => call(tasks.syncRan, dir, VIRTUAL_UNTIL_STOPPED_MS),
    span: (log, i, ms) => call(tasks.syncSpan, log, i, ms),
    // the function runs at the end of its duration: until then, the running task is all there is to see
    started: async (task) => {
      await waitFor(() => (task.state === 'running' ? true : undefined), `task ${task.id} to be running`);
    },
    // stopped work never reaches its end: nothing ran once its duration (and a margin) is over
    stopped: async (task, dir) => {
      const began = task.record?.startedAt;
      expect(began).toBeDefined();
      await until(began! + VIRTUAL_UNTIL_STOPPED_MS + 300);
      expect(marker(dir, 'ran')).toBeUndefined();
    },
    neverStarted: async (task, dir) => {
      expect(task.record?.startedAt).toBeUndefined();
      expect(marker(dir, 'ran')).toBeUndefined();
    },
    // A function that runs at the end of its duration logs only that end (`e <i> <time> <ms>`). The
    // interval it stands for is taken as the second half of its duration: half, so that timers firing
    // a little early or late on a busy machine do not make back-to-back tasks seem to overlap, while
    // tasks that really ran together (ending within the same few ms) still do.
    intervals: (log) => {
      const result = new Map<number, Interval>();
      for (const line of fileText(log).split('\n')) {
        const [what, i, time, ms] = line.split(' ');
        if (what !== 'e' || ms === undefined) continue;
        const end = BigInt(time!);
        result.set(Number(i), [end - (BigInt(ms) * 1_000_000n) / 2n, end]);
      }
      return result;
    },
  };
}

export interface ExecutableKitOptions {
  /** seconds of walltime in which an `untilStopped` program surely starts */
  readonly walltime: number;
}

export function executableKit(options: ExecutableKitOptions): Kit {
  return {
    walltime: options.walltime,
    echo: (value) => executable(program('echo', JSON.stringify(value))),
    square: (n) => executable(program('square', n)),
    plus: (upstream, k) =>
      executable(program('plus', 'upstream.json', k), {
        inputs: { 'upstream.json': outputOf(upstream as Task<ExecutableResult>, 'stdout') },
      }),
    fail: (message) => executable(program('fail', message)),
    flaky: (dir, failures) => executable(program('flaky', dir, failures)),
    untilStopped: (dir) => executable(program('untilStopped', dir, tasks.CLEANUP_MS)),
    span: (log, i, ms) => executable(program('span', log, i, ms)),
    value: async (result) => JSON.parse(await readText((result as ExecutableResult).stdout)) as unknown,
    failure: (message): ExpectedFailure => ({
      type: ExecutableFailedError,
      name: 'ExecutableFailedError',
      message: new RegExp(`exited with code 3\\b[\\s\\S]*${escape(message)}`),
      fields: { code: 'EXECUTABLE_FAILED', exitCode: 3, stderrTail: message },
      recorded: {
        name: 'ExecutableFailedError',
        code: 'EXECUTABLE_FAILED',
        details: { exitCode: 3, stderrTail: message },
      },
    }),
    started: async (_task, dir) => {
      await started(dir, 'the program');
    },
    // asked to stop (SIGTERM), given the time to clean up, and gone
    stopped: async (_task, dir, within = 10_000) => {
      await stoppedCleanly(dir, 'the program', within, true);
      expect(marker(dir, 'stopped')).toBe('SIGTERM');
    },
    neverStarted,
    intervals,
  };
}
