/**
 * Every error scalems raises on purpose is a `ScalemsError` with a stable `code`, so that callers can
 * branch on `instanceof` or on `code` (which survives serialisation across threads and processes).
 */
import * as self from './errors'; // its own exports' names: see `exportedName`

export class ScalemsError extends Error {
  readonly code: string = 'SCALEMS_ERROR';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = exportedName(new.target);
  }
}

let names: Map<unknown, string> | undefined;
/**
 * A class's name as this module exports it: in an app's minified bundle its own name is another (esbuild's `_e`,
 * vite's `Sa`), while the names of a module's exports, read through its namespace object, stay.
 */
function exportedName(cls: { readonly name: string }): string {
  names ??= new Map(Object.entries(self).map(([name, value]) => [value, name]));
  return names.get(cls) ?? cls.name;
}

/** Requirements (task or worker) that fail validation: the message names the path and expected type. */
export class InvalidRequirementsError extends ScalemsError {
  override readonly code = 'INVALID_REQUIREMENTS';
  constructor(
    message: string,
    readonly problems: readonly string[] = [],
  ) {
    super(message);
  }
}

/** A task asks for more than its executor can ever provide. It fails at once instead of waiting forever. */
export class UnsatisfiableRequirementsError extends ScalemsError {
  override readonly code = 'UNSATISFIABLE_REQUIREMENTS';
}

/**
 * A task description that is not valid (`executable()`, `call()`, `workflow.submitDescription`, submit), or a closure
 * that a persistent store could not tell apart from other code (its source hidden: a bound function, a Proxy).
 */
export class InvalidTaskDescriptionError extends ScalemsError {
  override readonly code = 'INVALID_TASK_DESCRIPTION';
}

/**
 * Options of a library call (`openWorkflow`, a backend such as `threads()` or `processes()`, a store) that fail
 * validation (an unknown key, a value of the wrong kind): thrown where they are given; the message names the option,
 * what was given and what is allowed.
 */
export class InvalidOptionsError extends ScalemsError {
  override readonly code = 'INVALID_OPTIONS';
  constructor(
    message: string,
    /** each problem found, with what is allowed (the message holds them all) */
    readonly problems: readonly string[] = [],
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A label that is already used by another task of the workflow, or a second attempt to label a task. */
export class DuplicateLabelError extends ScalemsError {
  override readonly code = 'DUPLICATE_LABEL';
}

/**
 * Two submissions that would be the same task, but whose functions may differ: two function objects with the
 * same source (closures that may hold different values), in a workflow whose store outlives the process.
 */
export class AmbiguousTaskError extends ScalemsError {
  override readonly code = 'AMBIGUOUS_TASK';
}

/** A task asked to run again (`task.retry()`) that no executor of this process has run: it must be submitted again. */
export class NoExecutorError extends ScalemsError {
  override readonly code = 'NO_EXECUTOR';
}

/** A downstream task cannot run because one of its inputs failed or was cancelled. */
export class UpstreamFailedError extends ScalemsError {
  override readonly code = 'UPSTREAM_FAILED';
  constructor(
    message: string,
    readonly upstreamId: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** The task was cancelled (by `task.cancel()`, by unsubscribing, or by shutting its scope down). */
export class TaskCancelledError extends ScalemsError {
  override readonly code = 'TASK_CANCELLED';
}

/** The task ran longer than its `walltime` requirement. */
export class WalltimeExceededError extends ScalemsError {
  override readonly code = 'WALLTIME_EXCEEDED';
}

/** The task's function threw (or its program failed); `cause` holds the original error. */
export class TaskFailedError extends ScalemsError {
  override readonly code = 'TASK_FAILED';
}

/** `submit()` / `withExecutor` misuse: no ambient executor or workflow in scope. */
export class NoAmbientScopeError extends ScalemsError {
  override readonly code = 'NO_AMBIENT_SCOPE';
}

/** Work submitted to an executor, or an executor opened on a runtime, that has been shut down. */
export class ExecutorShutdownError extends ScalemsError {
  override readonly code = 'EXECUTOR_SHUT_DOWN';
}

/** A value (argument or result) that cannot be serialised where it has to be. */
export class UnserializableValueError extends ScalemsError {
  override readonly code = 'UNSERIALIZABLE_VALUE';
}

/** A value a persistent store cannot store; nothing of the batch was written. */
export class UnstorableValueError extends ScalemsError {
  override readonly code = 'UNSTORABLE_VALUE';
}

/** Another live process holds the store. */
export class StoreLockedError extends ScalemsError {
  override readonly code = 'STORE_LOCKED';
  constructor(
    message: string,
    readonly holder: { pid: number; host: string; since?: string },
  ) {
    super(message);
  }
}

/** A store (or the workflow on it) used after `close()`: open it again to go on. */
export class StoreClosedError extends ScalemsError {
  override readonly code = 'STORE_CLOSED';
}

/** The store file is damaged or not a scalems store; it is left untouched. */
export class StoreCorruptError extends ScalemsError {
  override readonly code = 'STORE_CORRUPT';
}

/** The store was written by another (incompatible) schema version; it is left untouched. */
export class StoreVersionError extends ScalemsError {
  override readonly code = 'STORE_VERSION';
  constructor(
    message: string,
    readonly found: number,
    readonly expected: number,
  ) {
    super(message);
  }
}

/**
 * `defineTask` misused: a name that is not a non-empty string, something that is not a function, a bad version, a
 * name already registered to another function in this process (task names must be unique), or a function whose
 * source the engine hides (a bound function, a Proxy) without a version.
 */
export class TaskDefinitionError extends ScalemsError {
  override readonly code = 'TASK_DEFINITION';
}

/** A function that cannot be sent to another thread/process/host (a closure, or not registered by name). */
export class UnregisteredFunctionError extends ScalemsError {
  override readonly code = 'UNREGISTERED_FUNCTION';
}

/** A task module (given to a backend's `modules`) that failed to load where the task runs. */
export class TaskModuleError extends ScalemsError {
  override readonly code = 'TASK_MODULE';
}

/**
 * The function a remote side (a worker thread, a job step, a `scalems worker`) has under a task's name is another
 * version than the one the task was submitted with (its code differs, or it was loaded another way): its result
 * would be stored under the other version's identity, so it is not run.
 */
export class FunctionVersionError extends ScalemsError {
  override readonly code = 'FUNCTION_VERSION';
}

/** A worker was asked for a task name it does not know (never `eval`ed). */
export class UnknownTaskError extends ScalemsError {
  override readonly code = 'UNKNOWN_TASK';
}

/** The thread or process running the task died; the pool goes on. */
export class WorkerCrashedError extends ScalemsError {
  override readonly code = 'WORKER_CRASHED';
}

/**
 * The service a backend runs its tasks through (Redis, for bullmq()) stayed unreachable for longer than the backend
 * waits: the tasks that were waiting on it fail with this, and what had succeeded is kept.
 */
export class BackendUnavailableError extends ScalemsError {
  override readonly code = 'BACKEND_UNAVAILABLE';
}

/** An executable exited non-zero or could not be started. */
export class ExecutableFailedError extends ScalemsError {
  override readonly code = 'EXECUTABLE_FAILED';
  constructor(
    message: string,
    readonly exitCode: number | null,
    readonly signal: string | null,
    readonly stderrTail: string,
  ) {
    super(message);
  }
}

/** A path that would escape the task's working directory. */
export class PathEscapeError extends ScalemsError {
  override readonly code = 'PATH_ESCAPE';
}

/**
 * A Slurm job step ended in a state other than COMPLETED for a reason of Slurm's, not of the program:
 * `state` is Slurm's (`CANCELLED` by someone else, `TIMEOUT`, `OUT_OF_MEMORY`, `NODE_FAIL`, `FAILED`
 * when the step could not be created or its launcher died), `exitCode` the step's exit code if any.
 */
export class SlurmStepError extends ScalemsError {
  override readonly code = 'SLURM_STEP';
  constructor(
    message: string,
    readonly state: string,
    readonly exitCode: number | null,
    /** `<jobid>.<stepid>`, when the step was created */
    readonly step: string | null = null,
  ) {
    super(message);
  }
}

/**
 * The executor's Slurm allocation could not be obtained, or it ended (`state`: TIMEOUT, CANCELLED, NODE_FAIL...) while
 * tasks needed it.
 */
export class SlurmAllocationError extends ScalemsError {
  override readonly code = 'SLURM_ALLOCATION';
  constructor(
    message: string,
    readonly jobId: string | null,
    readonly state: string | null,
  ) {
    super(message);
  }
}

/**
 * A node of a Slurm allocation failed while a task ran on it: its agent died or stopped answering, or its slurmd did.
 * The attempt is tried again on another node of the allocation when the task's `retries` allow. `node` is Slurm's
 * name of the node.
 */
export class NodeFailureError extends ScalemsError {
  override readonly code = 'NODE_FAILURE';
  constructor(
    message: string,
    readonly node: string,
  ) {
    super(message);
  }
}

/**
 * A peer on a Slurm agent connection said something that is not the agent protocol of this version: a wrong token, a
 * line that is not JSON, an unknown message. The connection is closed; nothing it sent is run.
 */
export class AgentProtocolError extends ScalemsError {
  override readonly code = 'AGENT_PROTOCOL';
}

/**
 * A write to the store failed for a reason of the file system (`reason`: `disk full`, `read-only`, `i/o error`):
 * nothing of the failed batch was written, and a workflow keeps those records and writes them again on its next
 * write, `flushed()` or `close()`, so that they land once the cause is fixed.
 */
export class StoreWriteError extends ScalemsError {
  override readonly code = 'STORE_WRITE';
  constructor(
    message: string,
    /** the store file (or lock file) that could not be written */
    readonly path: string,
    readonly reason: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * The store cannot be opened at its path: a parent is not a directory, a permission is missing, or the file
 * system is read-only where the store must be written. Nothing was changed.
 */
export class StoreAccessError extends ScalemsError {
  override readonly code = 'STORE_ACCESS';
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/**
 * A part of scalems needs a package that is not installed. The Node-only heavy packages (better-sqlite3 for the
 * SQLite store, piscina for `threads()`, bullmq for `bullmq()` and `scalems worker`, cli-progress for the progress
 * bar) are optional peer dependencies, so that a browser user's install does not build or pull them: the part that
 * needs one says so when it is used, with the command that installs it.
 */
export class MissingDependencyError extends ScalemsError {
  override readonly code = 'MISSING_DEPENDENCY';
  constructor(
    message: string,
    /** the package to install */
    readonly packageName: string,
    /** the command that installs it, e.g. `npm install better-sqlite3@12` */
    readonly install: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}
