/**
 * Ambient scope: the workflow, executor and running task that `submit()` and `currentTask()` see.
 * The core stays free of Node imports: by default the scope is carried only synchronously; the Node
 * entry point installs an AsyncLocalStorage-based carrier (`scalems/node`, and `scalems` on Node).
 */
export interface Ambient {
  readonly workflow?: unknown;
  readonly executor?: unknown;
  readonly task?: unknown;
}

/** Runs a function inside a captured context (AsyncLocalStorage.snapshot() on Node). */
export type ContextSnapshot = <R>(fn: () => R) => R;

export interface ContextCarrier {
  /**
   * Whether the scope survives an `await` (AsyncLocalStorage) or is seen only during the synchronous part of
   * `run` (browsers): then a task's context is gone after its first await, and what needs it there is given
   * it directly (a child handle knows the task that submitted it).
   */
  readonly acrossAwaits: boolean;
  run<R>(scope: Ambient, fn: () => R): R;
  get(): Ambient | undefined;
  /** Captures the whole current async context (all AsyncLocalStorage instances, not only ours). */
  snapshot(): ContextSnapshot;
  /** Runs `fn` outside every async context: for engine work that must not keep a user's context alive. */
  detached<R>(fn: () => R): R;
}

/**
 * The synchronous carrier: scope is visible during the synchronous part of `run` only. Browsers have no
 * AsyncLocalStorage (the TC39 AsyncContext proposal would be its successor); patching `Promise` to carry it,
 * as zone.js does, would not see native `await`s anyway. So after the first `await` there is no scope, never a
 * wrong one: microtasks run on an empty stack, outside every `run`.
 */
function synchronousCarrier(): ContextCarrier {
  let current: Ambient | undefined;
  return {
    acrossAwaits: false,
    run(scope, fn) {
      const previous = current;
      current = scope;
      try {
        return fn();
      } finally {
        current = previous;
      }
    },
    get: () => current,
    snapshot() {
      const captured = current;
      return (fn) => this.run(captured ?? {}, fn);
    },
    detached(fn) {
      return this.run({}, fn);
    },
  };
}

let carrier: ContextCarrier = synchronousCarrier();

/** @internal Installed by the Node entry point. */
export function setContextCarrier(c: ContextCarrier): void {
  carrier = c;
}

export const ambient = (): Ambient => carrier.get() ?? {};
export const runInScope = <R>(patch: Ambient, fn: () => R): R => {
  const base = ambient();
  // field by field, not by spread: this runs once per task
  const scope: Ambient = {
    workflow: patch.workflow !== undefined ? patch.workflow : base.workflow,
    executor: patch.executor !== undefined ? patch.executor : base.executor,
    task: patch.task !== undefined ? patch.task : base.task,
  };
  return carrier.run(scope, fn);
};
/** False where the scope is gone after the first `await` (browsers: the synchronous carrier). */
export const carriesAcrossAwaits = (): boolean => carrier.acrossAwaits;
export const captureContext = (): ContextSnapshot => carrier.snapshot();
export const detached = <R>(fn: () => R): R => carrier.detached(fn);
