/** `virtual()`: a backend on virtual time, for marble tests of whole workflows. */
import { asapScheduler, asyncScheduler, map, throwError, timer, type SchedulerLike } from 'rxjs';
import { refuseExecutables, type Backend, type BackendExecutor, type Job } from '../runtime/backend';
import { InvalidOptionsError, InvalidTaskDescriptionError } from '../errors';
import { checkOptions, rules, type RulesOf } from '../task/options';
import { isPlainObject, show } from '../task/requirements';
import { isThenable } from '../util';

export interface VirtualOptions {
  /**
   * How long each task takes, in virtual milliseconds (one marble frame is 1 ms): per task name or
   * label, or a function of the job. Tasks not listed take `defaultDuration` (1).
   */
  readonly durations?: Readonly<Record<string, number>> | ((job: Job) => number);
  readonly defaultDuration?: number;
  /** cores per executor (default 1), unless the worker requirements say otherwise */
  readonly cores?: number;
  readonly gpus?: number;
  /** Scheduler for the durations. Default: `asyncScheduler`, which `TestScheduler.run()` makes virtual. */
  readonly scheduler?: SchedulerLike;
}

const duration = (v: unknown): boolean => typeof v === 'number' && Number.isFinite(v) && v >= 0;

const OPTION_RULES = {
  durations: {
    allowed: 'durations in virtual ms by task name or label ({ name: ms }), or a function of the job',
    ok: (v: unknown) => typeof v === 'function' || (isPlainObject(v) && Object.values(v).every(duration)),
  },
  defaultDuration: { allowed: 'a non-negative number of virtual ms', ok: duration },
  cores: rules.positiveInteger,
  gpus: { allowed: 'a non-negative integer', ok: (v: unknown) => Number.isSafeInteger(v) && (v as number) >= 0 },
  scheduler: {
    allowed: 'an RxJS scheduler',
    ok: (v: unknown) => typeof (v as { schedule?: unknown } | null)?.schedule === 'function',
  },
} satisfies RulesOf<VirtualOptions>;

/**
 * A backend on virtual time, for marble tests of whole workflows: each task's synchronous function
 * runs when its duration has elapsed on the (test) scheduler. Concurrency limits, ordering, retries,
 * walltimes and failure handling behave exactly as with the real backends.
 */
export function virtual(options: VirtualOptions = {}): Backend {
  // cores: NaN was taken, and no task ever started
  checkOptions('virtual', options, OPTION_RULES);
  const scheduler = options.scheduler ?? asyncScheduler;
  const durationOf = (job: Job): number => {
    const d = options.durations;
    if (typeof d !== 'function')
      return (job.label !== undefined ? d?.[job.label] : undefined) ?? d?.[job.name] ?? options.defaultDuration ?? 1;
    // what the function gives is checked as the object form is: NaN or '3' left the task running for good, and a throw
    // escaped the scheduler from inside a commit, breaking the marble tests after it
    let ms: unknown;
    try {
      ms = d(job);
    } catch (err) {
      throw new InvalidOptionsError(
        `virtual({ durations }): the function threw for task ${job.label ?? job.name}: ${String(err)}`,
        [],
        { cause: err },
      );
    }
    if (!duration(ms))
      throw new InvalidOptionsError(
        `virtual({ durations }): the function gave ${show(ms)} for task ${job.label ?? job.name}; it must give a ` +
          'non-negative number of virtual ms',
      );
    return ms as number;
  };
  return {
    kind: 'virtual',
    commitScheduler: asapScheduler,
    open(worker): BackendExecutor {
      return {
        capacity: {
          cores: worker.cores ?? options.cores ?? 1,
          gpus: worker.gpus ?? options.gpus ?? 0,
          memoryMB: worker.memoryMB ?? Infinity,
        },
        accept: refuseExecutables('virtual'),
        run: (job) => {
          let ms: number;
          try {
            ms = durationOf(job);
          } catch (err) {
            return throwError(() => err); // the task fails with it
          }
          return timer(ms, scheduler).pipe(
            map(() => {
              const value = job.invoke();
              if (isThenable(value)) {
                throw new InvalidTaskDescriptionError(
                  `virtual(): task ${job.name} returned a Promise; functions on the virtual backend must be ` +
                    `synchronous so that they run in virtual time`,
                );
              }
              return value;
            }),
          );
        },
        close: async () => undefined,
      };
    },
  };
}
