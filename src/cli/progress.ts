/** `progress(workflow)`: a progress bar on a terminal, throttled lines elsewhere, from `workflow.state$`. */
import type * as CliProgress from 'cli-progress';
import { Subscription, asyncScheduler, isObservable, type Observable, type SchedulerLike } from 'rxjs';
import { InvalidOptionsError } from '../errors';
import { checkOptions, rules, type RulesOf } from '../task/options';
import { show } from '../task/requirements';
import type { WorkflowState } from '../store/state';
import { optionalDependency } from '../optional-dependency';

export interface ProgressOptions {
  /** Where to draw. Default: `process.stderr`. */
  readonly stream?: NodeJS.WritableStream & { isTTY?: boolean };
  /** `bar` (cli-progress), `lines` (plain throttled lines) or `auto` (default): a bar when the stream is a TTY. */
  readonly mode?: 'auto' | 'bar' | 'lines';
  /** Lines mode: at most one line per `interval` ms (default 1000), plus one per 10% of tasks done. */
  readonly interval?: number;
  /** Lines mode: the clock of the throttle (default `asyncScheduler`; a `TestScheduler` in tests). */
  readonly scheduler?: SchedulerLike;
  /** Text before each line (default `[scalems]`). */
  readonly prefix?: string;
}

const OPTION_RULES = {
  stream: {
    allowed: 'a writable stream (with write(text))',
    ok: (v: unknown) => typeof (v as { write?: unknown } | null)?.write === 'function',
  },
  mode: rules.oneOf('auto', 'bar', 'lines'),
  interval: {
    allowed: 'a number of milliseconds from 0 to 2^31 - 1',
    ok: (v: unknown) => typeof v === 'number' && v >= 0 && v <= 2 ** 31 - 1,
  },
  scheduler: {
    allowed: 'an RxJS scheduler',
    ok: (v: unknown) => typeof (v as { schedule?: unknown } | null)?.schedule === 'function',
  },
  prefix: { allowed: 'a string', ok: (v: unknown) => typeof v === 'string' },
} satisfies RulesOf<ProgressOptions>;

/** A running progress display. It also stops by itself when the workflow closes. */
export interface Progress extends Disposable {
  /** Draws the last state and stops listening. Idempotent. */
  stop(): void;
}

/** What a progress line shows: tasks in the workflow, done (succeeded, failed or cancelled), and some of the states. */
export interface ProgressCounts {
  readonly total: number;
  readonly done: number;
  readonly failed: number;
  readonly cancelled: number;
  readonly running: number;
}

const COUNT_NAMES = ['total', 'done', 'failed', 'cancelled', 'running'] as const;

function snapshot(state: WorkflowState): ProgressCounts {
  const c = state.counts;
  const total = c.new + c.submitted + c.ready + c.running + c.succeeded + c.failed + c.cancelled;
  return {
    total,
    done: c.succeeded + c.failed + c.cancelled,
    failed: c.failed,
    cancelled: c.cancelled,
    running: c.running,
  };
}

const same = (a: ProgressCounts | undefined, b: ProgressCounts): boolean =>
  a !== undefined &&
  a.total === b.total &&
  a.done === b.done &&
  a.failed === b.failed &&
  a.cancelled === b.cancelled &&
  a.running === b.running;

/** `[scalems] 120/400 done (3 failed, 8 running)` */
export function progressLine(s: ProgressCounts, prefix = '[scalems]'): string {
  const counts = s as Partial<Record<keyof ProgressCounts, unknown>> | null | undefined;
  const bad = COUNT_NAMES.filter((name) => !Number.isSafeInteger(counts?.[name]) || (counts![name] as number) < 0);
  if (typeof s !== 'object' || s === null || bad.length > 0)
    throw new InvalidOptionsError(
      `progressLine(counts, prefix?): counts must be an object of counts (${COUNT_NAMES.join(', ')}: whole ` +
        `numbers ≥ 0), got ${show(s)}${typeof s === 'object' && s !== null ? ` (${bad.join(', ')} wrong)` : ''}`,
    );
  if (typeof prefix !== 'string')
    throw new InvalidOptionsError(`progressLine(counts, prefix?): prefix must be a string, got ${show(prefix)}`);
  const cancelled = s.cancelled > 0 ? `, ${s.cancelled} cancelled` : '';
  return `${prefix} ${s.done}/${s.total} done (${s.failed} failed${cancelled}, ${s.running} running)`;
}

/** The decile of tasks done: a new one is always shown at once. */
const decile = (s: ProgressCounts): number => (s.total === 0 ? 0 : Math.floor((s.done * 10) / s.total));

/**
 * Shows how far a workflow is: a progress bar (cli-progress) on a terminal, otherwise plain lines such as
 * `[scalems] 120/400 done (3 failed, 8 running)` — at most one per `interval`, one at once when another
 * 10% of the tasks is done, and a last one when it stops. Follows `workflow.state$` (its per-state
 * counts, O(1) per change) and stops when that completes (`workflow.close()`) or on `stop()`.
 * Nothing is drawn while the workflow has no task. The bar never keeps the process alive; in lines
 * mode a pending line may delay exit by up to `interval` unless the display is stopped.
 */
export function progress(
  workflow: { readonly state$: Observable<WorkflowState> },
  options: ProgressOptions = {},
): Progress {
  const state$ = (workflow as { state$?: unknown } | null | undefined)?.state$;
  if (!isObservable(state$))
    throw new InvalidOptionsError(
      `progress(workflow, options?): workflow must be a Workflow (from openWorkflow), got ${show(workflow)}`,
    );
  // a bad stream or mode was found only at the first line drawn, by an uncaught TypeError that ended the program
  checkOptions('progress', options, OPTION_RULES);
  const stream = options.stream ?? process.stderr;
  const mode =
    options.mode === undefined || options.mode === 'auto' ? (stream.isTTY === true ? 'bar' : 'lines') : options.mode;
  const view = mode === 'bar' ? barView(stream, options.prefix ?? '[scalems]') : linesView(stream, options);
  const subscription = new Subscription();
  let stopped = false;
  const stop = (): void => {
    if (stopped) return;
    stopped = true;
    subscription.unsubscribe();
    view.end();
  };
  // (if state$ completes at once, stop() has closed `subscription` and adding to it unsubscribes)
  subscription.add(
    workflow.state$.subscribe({ next: (state) => view.show(snapshot(state)), complete: stop, error: stop }),
  );
  return { stop, [Symbol.dispose]: stop };
}

interface View {
  show(s: ProgressCounts): void;
  end(): void;
}

function linesView(stream: NodeJS.WritableStream, options: ProgressOptions): View {
  const interval = options.interval ?? 1000;
  const scheduler = options.scheduler ?? asyncScheduler;
  const prefix = options.prefix ?? '[scalems]';
  let latest: ProgressCounts | undefined;
  let printed: ProgressCounts | undefined;
  let printedAt = -Infinity;
  let trailing: Subscription | undefined;

  const print = (): void => {
    trailing?.unsubscribe();
    trailing = undefined;
    if (latest === undefined || latest.total === 0 || same(printed, latest)) return;
    stream.write(progressLine(latest, prefix) + '\n');
    printed = latest;
    printedAt = scheduler.now();
  };
  return {
    show(s) {
      latest = s;
      if (s.total === 0 || same(printed, s)) return;
      const wait = printedAt + interval - scheduler.now();
      if (printed === undefined || wait <= 0 || decile(s) > decile(printed)) print();
      else trailing ??= scheduler.schedule(print, wait);
    },
    end: print,
  };
}

/** cli-progress (an optional peer dependency), loaded when a bar is first drawn. */
function cliProgress(): typeof CliProgress {
  return optionalDependency(
    'cli-progress',
    '3',
    'progress() on a terminal',
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    () => require('cli-progress') as typeof CliProgress,
  );
}

/** cli-progress's bar, whose redraw timer does not keep the process alive (the class is made when first used). */
function unrefBar(): typeof CliProgress.SingleBar {
  return (UnrefBar ??= class extends cliProgress().SingleBar {
    override render(): void {
      super.render();
      (this as unknown as { timer?: { unref?: () => void } | null }).timer?.unref?.();
    }
  });
}
let UnrefBar: typeof CliProgress.SingleBar | undefined;

function barView(stream: NodeJS.WritableStream, prefix: string): View {
  const { Presets } = cliProgress();
  const Bar = unrefBar();
  const bar = new Bar(
    {
      stream,
      format: `${prefix} {bar} {value}/{total} done | {failed} failed | {running} running | {duration_formatted}`,
      barsize: 30,
      fps: 5,
    },
    Presets.shades_classic,
  );
  let started = false;
  let latest: ProgressCounts | undefined;
  const payload = (s: ProgressCounts): object => ({ failed: s.failed, running: s.running });
  return {
    show(s) {
      latest = s;
      if (!started) {
        if (s.total === 0) return;
        started = true;
        bar.start(s.total, s.done, payload(s));
        return;
      }
      bar.setTotal(s.total);
      bar.update(s.done, payload(s));
    },
    end() {
      if (!started || latest === undefined) return;
      bar.setTotal(latest.total);
      bar.update(latest.done, payload(latest));
      bar.stop();
    },
  };
}
