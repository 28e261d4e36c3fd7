/** `inProcess()`: the backend that runs task functions on this event loop. */
import { Observable } from 'rxjs';
import { refuseExecutables, type Backend, type BackendExecutor, type Job } from './backend';
import { availableCores } from './cores';
import { isThenable } from '../util';
import { checkOptions, rules, type RulesOf } from '../task/options';

export interface InProcessOptions {
  /** cores an executor may use at once (default: the machine's) */
  readonly cores?: number;
}

const IN_PROCESS_OPTIONS = { cores: rules.positiveInteger } satisfies RulesOf<InProcessOptions>;

/**
 * Runs task functions (sync or async) on this event loop. Any function works, closures included;
 * cancellation reaches the function through `currentTask().signal`.
 */
export function inProcess(options: InProcessOptions = {}): Backend {
  checkOptions('inProcess', options, IN_PROCESS_OPTIONS);
  return {
    kind: 'inProcess',
    open(worker): BackendExecutor {
      return {
        capacity: {
          cores: worker.cores ?? options.cores ?? availableCores(),
          gpus: worker.gpus ?? 0,
          memoryMB: worker.memoryMB ?? Infinity,
        },
        accept: refuseExecutables('inProcess'),
        run: (job) => runHere(job),
        close: async () => undefined,
      };
    },
  };
}

/** Invokes the job's function in this process; the observable follows its (possibly async) outcome. */
export function runHere(job: Job): Observable<unknown> {
  return new Observable<unknown>((subscriber) => {
    let result: unknown;
    try {
      result = job.invoke();
    } catch (err) {
      subscriber.error(err);
      return;
    }
    if (!isThenable(result)) {
      subscriber.next(result);
      subscriber.complete();
      return;
    }
    result.then(
      (value) => {
        subscriber.next(value);
        subscriber.complete();
      },
      (err: unknown) => subscriber.error(err),
    );
  });
}
