/** `submitOn(executor)`: the operator that submits each spec of a pipeline and emits the results. */
import { Observable, Subject, takeUntil, type OperatorFunction } from 'rxjs';
import { InvalidOptionsError, InvalidTaskDescriptionError } from '../errors';
import { Executor } from '../runtime/executor';
import { checkOptions, rules, type RulesOf } from '../task/options';
import { show } from '../task/requirements';
import { SettledWatcher, Task, followedBy, type Settled } from '../runtime/task';
import { isTaskHandle } from '../task/hash';
import { call, invocable, isTaskSpec, type AnyFunction, type TaskSpec } from '../task/spec';
import { captureCallerContext as captureContext } from '../runtime/scope';

export interface SubmitOnOptions {
  /**
   * Emit results in input order, holding each until those before it have come; otherwise as they finish.
   * @default false
   */
  readonly ordered?: boolean;
  /**
   * Emit `Settled` outcomes instead of values, so that a failed member does not end the stream.
   * @default false
   */
  readonly settle?: boolean;
}

const RULES = { ordered: rules.flag, settle: rules.flag } satisfies RulesOf<SubmitOnOptions>;

/** What `submitOn(executor)` takes: task specs, or tasks. */
export type SubmitInput<R = unknown> = TaskSpec<R> | Task<R>;
/** What `submitOn(executor, fn)` takes: values of its parameter, tasks that give them, or their `Settled` outcomes. */
type FnInput<F extends (value: never) => unknown> =
  Parameters<F>[0] | Task<Parameters<F>[0]> | Settled<Parameters<F>[0]>;
/** The result type of a spec or task (of each member of a union). */
export type SubmitResult<T> = T extends Task<infer R> ? R : T extends TaskSpec<infer R> ? R : never;
/**
 * What `submitOn` emits for results of type `R` with options `S`: `Settled<R>` with `settle: true`, `R` without (or
 * with `false`), either where `settle` is a `boolean` not known until run time.
 */
export type SubmitOutput<R, S extends SubmitOnOptions | undefined> = S extends undefined
  ? R
  : 'settle' extends keyof S
    ? S extends { settle: true }
      ? Settled<R>
      : [NonNullable<S['settle' & keyof S]>] extends [false]
        ? R
        : R | Settled<R>
    : R;

/**
 * Submits each spec to `executor` and emits the results. With a function, `submitOn(ex, fn)` takes
 * plain values (or tasks, or `Settled` outcomes, keeping the edge) and submits `fn(value)`.
 * Tasks are submitted as inputs arrive, up to a window of unsettled tasks a few times the executor's
 * cores (at least 256); inputs beyond it wait as they came, and are submitted as tasks settle. So a
 * source of a million inputs holds a million small values, not a million tasks in flight; concurrency is
 * the executor's. Unsubscribing cancels the in-flight tasks that nobody else awaits. Without `settle`,
 * the first failure errors the stream (with `ordered`, once the results before it are emitted): from
 * that failure on, the source is not pulled any further, and the inputs still waiting are never submitted.
 *
 * ## Example
 * ```ts
 * const md = executor(rt, { worker: { cores: 8 }, task: { coresPerRank: 2 } });
 * const an = executor(rt, { worker: { cores: 1 } });
 * const report = from(members).pipe(
 *   map((m) => call(simulate, m)),
 *   labelled((_spec, i) => `member-${i}`),
 *   submitOn(md),              // four members at a time
 *   submitOn(an, analyse),     // each analysed as its simulation ends
 *   toArray(),
 * );
 * console.log(await lastValueFrom(report));
 * ```
 */
export function submitOn<T extends SubmitInput>(executor: Executor): OperatorFunction<T, SubmitResult<T>>;
/** `submitOn(executor, options)`: with `{ settle: true }` it emits `Settled` outcomes. */
export function submitOn<T extends SubmitInput, S extends SubmitOnOptions | undefined>(
  executor: Executor,
  options: S,
): OperatorFunction<T, SubmitOutput<SubmitResult<T>, S>>;
/** `submitOn(executor, undefined, options)`: as `submitOn(executor, options)` (specs in, no function). */
export function submitOn<T extends SubmitInput, S extends SubmitOnOptions | undefined>(
  executor: Executor,
  fn: undefined,
  options: S,
): OperatorFunction<T, SubmitOutput<SubmitResult<T>, S>>;
/** `submitOn(executor, fn)`: `fn` is called with one argument, each value (a function that needs more is refused). */
export function submitOn<F extends (value: never) => unknown>(
  executor: Executor,
  fn: F,
): OperatorFunction<FnInput<F>, Awaited<ReturnType<F>>>;
export function submitOn<F extends (value: never) => unknown, S extends SubmitOnOptions | undefined>(
  executor: Executor,
  fn: F,
  options: S,
): OperatorFunction<FnInput<F>, SubmitOutput<Awaited<ReturnType<F>>, S>>;
export function submitOn(
  executor: Executor,
  fnOrOptions?: AnyFunction | SubmitOnOptions,
  maybeOptions?: SubmitOnOptions,
): OperatorFunction<unknown, unknown> {
  if (!(executor instanceof Executor))
    throw new InvalidOptionsError(
      `submitOn(executor, ...): executor must be an Executor (from executor(runtime, options)), got ${show(executor)}`,
    );
  if (
    fnOrOptions === null ||
    (fnOrOptions !== undefined && typeof fnOrOptions !== 'function' && typeof fnOrOptions !== 'object')
  )
    throw new InvalidOptionsError(
      `submitOn(executor, fn?, options?): expected a function or an options object after the executor, got ` +
        show(fnOrOptions),
    );
  const fn = typeof fnOrOptions === 'function' ? fnOrOptions : undefined;
  if (fn === undefined && fnOrOptions !== undefined && maybeOptions !== undefined)
    throw new InvalidOptionsError(
      'submitOn(executor, options, options): one options object, after the function if there is one ' +
        '(submitOn(executor, fn, options), or submitOn(executor, options))',
    );
  // submitOn(executor, undefined, options) too: before, those options were dropped
  const given = fn !== undefined || fnOrOptions === undefined ? maybeOptions : (fnOrOptions as SubmitOnOptions);
  const options = given === undefined ? {} : given;
  // a misspelt option silently changed the order of the results
  checkOptions('submitOn', options, RULES);
  const toSpec = (input: unknown): TaskSpec | Task<unknown> => {
    if (fn !== undefined) {
      const arg = isSettled(input) ? input.task : input;
      return call(invocable(fn), arg);
    }
    if (isTaskSpec(input) || input instanceof Task) return input;
    throw new InvalidTaskDescriptionError(
      `submitOn(executor) expects TaskSpecs (from call(fn, ...args) or task(...)) or Tasks; ` +
        `got ${describe(input)}. To map plain values through a function, use submitOn(executor, fn).`,
    );
  };

  const cores = executor.capacity.cores;
  const window = Number.isFinite(cores) ? Math.max(MIN_WINDOW, WINDOW_PER_CORE * cores) : Infinity;
  return (source) => followedBy(members(source));

  /** The members' results: the operator itself. */
  function members(source: Observable<unknown>): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      // The context the pipeline is subscribed in. The members submitted as others settle (in the workflow's commit,
      // outside every context) are submitted in it, and the results are emitted in it: what reacts to them (retry()
      // subscribing again, switchMap's inner pipelines, the subscriber's own callbacks) runs there, as the code after
      // an `await task` runs in the awaiter's context.
      const context = captureContext();
      /** tasks submitted and not yet settled */
      const inflight = new Set<Member>();
      /** with `ordered`: submitted tasks in input order, until emitted */
      const queue: Member[] = [];
      /** inputs that came while the window was full, from `waitingHead` on */
      let waiting: unknown[] = [];
      let waitingHead = 0;
      let sourceComplete = false;
      /** a member failed as it was submitted (see `take`): nothing more is pulled or submitted */
      let failing = false;
      /** with `ordered`: an input refused (not a spec...), its error due once the members before it are emitted */
      let refused: { err: unknown } | undefined;

      /** Emits the member's outcome, as it settled; false if the stream errored. */
      const emit = (member: Member): boolean => {
        const { task, record, reason } = member;
        if (record!.state === 'succeeded') {
          subscriber.next(
            options.settle === true
              ? ({ status: 'fulfilled', value: record!.result, task } satisfies Settled<unknown>)
              : record!.result,
          );
          return true;
        }
        if (options.settle === true) {
          subscriber.next({ status: 'rejected', reason, task } satisfies Settled<unknown>);
          return true;
        }
        subscriber.error(reason);
        return false;
      };
      const maybeComplete = (): void => {
        if (sourceComplete && inflight.size === 0 && queue.length === 0 && waitingHead === waiting.length)
          subscriber.complete();
      };
      /** Submits the input (or takes its task); false if the stream errored. */
      const take = (input: unknown): boolean => {
        let task: Task<unknown>;
        try {
          const specOrTask = toSpec(input);
          task = specOrTask instanceof Task ? specOrTask : executor.submitSpec(specOrTask, { pinned: false });
        } catch (err) {
          // with `ordered`, after the results of the inputs before it, as a failed member's error (nothing more is
          // taken meanwhile)
          if (options.ordered === true && queue.length > 0) {
            failing = true;
            refused = { err };
            ended.next();
          } else subscriber.error(err);
          return false;
        }
        task.retain();
        const member = new Member(task, settleInContext);
        if (options.ordered === true) queue.push(member);
        inflight.add(member);
        // A task that fails as it is submitted (requirements it can never meet, an input that failed) is known to
        // have failed now, but reaches this stream with the commit, in the next turn: by then a synchronous source
        // would have been pulled to its end, and the rest submitted, only to be cancelled. It ends the stream: the
        // source is pulled no further now, and the error comes with the commit.
        if (options.settle !== true && (task.state === 'failed' || task.state === 'cancelled')) {
          failing = true;
          ended.next();
        }
        member.watch();
        return !failing;
      };
      /** in `refill`: a task taken there that has settled already settles at once, and its refill is this loop */
      let refilling = false;
      /** Submits waiting inputs while the window has room. */
      const refill = (): void => {
        // Not again from within: a run of waiting inputs whose tasks are done (the same input many times, work the
        // store holds) would nest one call per input, and overflow the stack at a few thousand.
        if (refilling) return;
        refilling = true;
        try {
          while (waitingHead < waiting.length && inflight.size < window && !subscriber.closed && !failing) {
            const input = waiting[waitingHead];
            waiting[waitingHead++] = undefined;
            if (waitingHead === waiting.length) {
              waiting = [];
              waitingHead = 0;
            }
            if (!(input instanceof LateInput ? input.context(() => take(input.input)) : take(input))) return;
          }
        } finally {
          refilling = false;
        }
      };
      const settle = (member: Member): void => {
        member.stopWatching();
        inflight.delete(member);
        const { task } = member;
        task.release();
        // its outcome as it settled, not as its record reads when its turn to be emitted comes: by then the same work
        // may be running again (submitted again elsewhere, retried by its holder), and would be emitted as cancelled,
        // or as that run's result, with this one's failure lost
        member.record = task.record;
        if (member.record!.state !== 'succeeded') member.reason = task.failure();
        if (options.ordered === true) {
          member.done = true;
          // failed behind members still running: its error comes in its turn, but nothing more is pulled or submitted
          // meanwhile (before, the source was pulled, and members started, until the error's turn)
          if (options.settle !== true && !failing && member.record!.state !== 'succeeded') {
            failing = true;
            ended.next();
          }
          while (queue.length > 0 && queue[0]!.done) {
            if (!emit(queue.shift()!)) return;
          }
          if (refused !== undefined && queue.length === 0) return subscriber.error(refused.err);
        } else if (!emit(member)) return;
        refill();
        maybeComplete();
      };

      const settleInContext = (member: Member): void => context(() => settle(member));

      // The source subscription ends with this one, even while the source is still emitting
      // synchronously (an error in `next` while `from(array)` runs): it is not pulled any further.
      const ended = new Subject<void>();
      subscriber.add(() => ended.next());
      let subscribing = true;
      const sourceSub = source.pipe(takeUntil(ended)).subscribe({
        next: (input) => {
          if (failing) return;
          if (inflight.size < window && waitingHead === waiting.length) take(input);
          // an input that comes later (a Subject fed from requests, each in its own context) is submitted in the
          // context it came in, as one taken at once is
          else waiting.push(subscribing ? input : new LateInput(input, captureContext()));
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          sourceComplete = true;
          maybeComplete();
        },
      });
      subscribing = false;

      return () => {
        sourceSub.unsubscribe();
        waiting = [];
        waitingHead = 0;
        const left = [...inflight];
        inflight.clear();
        for (const member of left) {
          member.stopWatching();
          member.task.release();
        }
      };
    });
  }
}

/** Unsettled tasks one subscription keeps submitted, per core of the executor... */
const WINDOW_PER_CORE = 8;
/** ...and at least: enough that admission never waits for the pipeline to submit the next one. */
const MIN_WINDOW = 256;

/** A task submitted by one subscription of `submitOn`: it watches the task itself (no closure per task). */
class Member extends SettledWatcher {
  /** with `ordered`: its outcome has come, and waits for its turn to be emitted */
  done = false;
  /** the task's record when it settled */
  record: Task<unknown>['record'] = undefined;
  /** the error it settled with, if it did not succeed */
  reason: unknown = undefined;

  constructor(
    readonly task: Task<unknown>,
    /** the subscription's `settle`, in the subscription's context */
    private readonly onSettle: (member: Member) => void,
  ) {
    super();
  }

  /** Starts watching the task: `onSettle` is called once it settles (now, if it has). */
  watch(): void {
    this.watchSettled(this.task);
  }

  protected settled(): void {
    this.onSettle(this);
  }
}

/** An input that came after the subscription, waiting to be submitted, with the context it came in. */
class LateInput {
  constructor(
    readonly input: unknown,
    readonly context: ReturnType<typeof captureContext>,
  ) {}
}

function isSettled(v: unknown): v is Settled<unknown> {
  return (
    typeof v === 'object' && v !== null && 'status' in v && 'task' in v && isTaskHandle((v as { task: unknown }).task)
  );
}

function describe(v: unknown): string {
  if (v === null || typeof v !== 'object') return show(v); // JSON shows NaN as null, and cannot show a BigInt
  return v.constructor?.name ?? 'object';
}
