/** `launch(workflow, backend)` → `Runtime`, and `executor(runtime, options)`. */
import { Workflow } from './workflow';
import { ExecutorShutdownError, InvalidOptionsError } from '../errors';
import { isPlainObject, show } from '../task/requirements';
import type { Backend } from './backend';
import { Executor, type ExecutorOptions } from './executor';
import { checkOptions, type RulesOf } from '../task/options';

const EXECUTOR_OPTIONS = {
  // a name is how messages and submitDescription({ executor }) name it: printable text
  name: {
    allowed: 'a name (a non-empty string of printable characters)',
    ok: (v) => typeof v === 'string' && /^[^\p{Cc}]+$/u.test(v),
  },
  // validated with what they mean, in the executor (each field named)
  worker: { allowed: 'worker requirements', ok: () => true },
  task: { allowed: 'task requirements', ok: () => true },
} satisfies RulesOf<ExecutorOptions>;

/**
 * A workflow bound to a backend, like a multiprocessing context: executors are opened on it.
 * Made by `launch(workflow, backend)`.
 */
export class Runtime implements AsyncDisposable {
  private readonly executors = new Set<Executor>();
  private stopped: Promise<void> | undefined;

  /** @internal use `launch()` */
  constructor(
    readonly workflow: Workflow,
    readonly backend: Backend,
  ) {
    if (backend.commitScheduler !== undefined) workflow.commitOn(backend.commitScheduler);
    workflow.runtimes.add(this);
  }

  /** @internal */
  open(options: ExecutorOptions): Executor {
    this.workflow.assertOpen();
    if (this.stopped !== undefined) {
      throw new ExecutorShutdownError(
        `this ${this.backend.kind}() runtime of workflow "${this.workflow.name}" has been shut down and opens no ` +
          `new executors: launch(workflow, backend) a new one`,
      );
    }
    const ex = new Executor(this, options);
    this.executors.add(ex);
    return ex;
  }

  /** @internal An executor of it has shut down and closed: it is not kept (a long driver opens one per batch). */
  closed(ex: Executor): void {
    this.executors.delete(ex);
  }

  /** Shuts every executor down, waits for their tasks to settle, then releases the backend. */
  shutdown(): Promise<void> {
    this.stopped ??= (async () => {
      await Promise.all([...this.executors].map((ex) => ex.shutdown({ wait: true })));
      try {
        await this.backend.shutdown?.();
      } finally {
        this.workflow.runtimes.delete(this);
      }
    })();
    return this.stopped;
  }

  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

/**
 * Binds a workflow to a backend: `inProcess()`, `threads(...)`, `processes()`, `slurm(...)`, `bullmq(...)`,
 * `virtual(...)`.
 */
export function launch(workflow: Workflow, backend: Backend): Runtime {
  if (!(workflow instanceof Workflow))
    throw new InvalidOptionsError(
      `launch(workflow, backend): workflow must be a Workflow (from await openWorkflow(...)), got ${show(workflow)}`,
    );
  const b = backend as Partial<Backend> | null | undefined;
  if (typeof b !== 'object' || b === null || typeof b.kind !== 'string' || typeof b.open !== 'function')
    throw new InvalidOptionsError(
      `launch(workflow, backend): backend must be a backend (inProcess(), threads(...), processes(...), slurm(...), ` +
        `bullmq(...)), got ${show(backend)}`,
    );
  workflow.assertOpen();
  return new Runtime(workflow, backend);
}

/**
 * Opens an executor scope on a runtime. `worker` says what to provision (cores, gpus, memory...), or is a list
 * of worker groups, each provisioned on its own (see `ExecutorOptions.worker`); `task` gives defaults for its
 * tasks. Both are validated here, and task defaults that the worker can never satisfy are refused here, naming
 * both figures. Disposing it (`await using`) is `shutdown({ wait: false })`: it takes no new work, and releases
 * its resources once its tasks settle.
 *
 * ## Example
 * ```ts
 * const rt = launch(await openWorkflow({ name: 'ensemble' }), processes());
 * {
 *   await using md = executor(rt, { worker: { cores: 8 }, task: { ranks: 2, coresPerRank: 2, retries: 1 } });
 *   const runs = await Promise.all(inputs.map((i) => md.submit(executable(['./md', i]))));
 *   console.log(runs.map((r) => r.outputs));
 * } // md shut down here; the runtime stays for the next executor
 *
 * // worker groups: an allocation each on slurm(); a task runs on the group it names, else on one it fits
 * const ex = executor(rt, { worker: [{ name: 'members', nodes: 2, cores: 8 }, { name: 'analysis', cores: 4 }] });
 * ex.submit({ ...call(score, run), requirements: { group: 'analysis' } });
 * ```
 */
export function executor(runtime: Runtime, options: ExecutorOptions = {}): Executor {
  if (!(runtime instanceof Runtime))
    throw new InvalidOptionsError(
      `executor(runtime, options): runtime must be a Runtime (from launch(workflow, backend)), got ${show(runtime)}`,
    );
  if (!isPlainObject(options))
    throw new InvalidOptionsError(`executor(runtime, options): options must be an object, got ${show(options)}`);
  checkOptions('executor', options, EXECUTOR_OPTIONS);
  return runtime.open(options);
}
