import * as errors from '../errors';
import type { RecordedError } from '../store/state';

/** What a thrown value becomes in a task record. */
export function recordError(err: unknown): RecordedError {
  if (err instanceof Error) {
    const details: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(err)) {
      if (k !== 'name' && k !== 'message' && k !== 'code' && k !== 'stack' && isPlainData(v)) details[k] = v;
    }
    const code = (err as { code?: unknown }).code;
    return {
      name: err.name,
      message: err.message,
      ...(typeof code === 'string' ? { code } : {}),
      ...(err.stack !== undefined ? { stack: err.stack } : {}),
      ...(Object.keys(details).length > 0 ? { details } : {}),
    };
  }
  return { name: 'Error', message: typeof err === 'string' ? err : safeString(err) };
}

function isPlainData(v: unknown): boolean {
  const t = typeof v;
  return v === null || t === 'string' || t === 'number' || t === 'boolean' || (Array.isArray(v) && v.every(isPlainData));
}

function safeString(v: unknown): string {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Rebuilds a typed error from a record (for results read back from a store, or from another process). */
export function reviveError(recorded: RecordedError): Error {
  const d = recorded.details ?? {};
  let err: Error;
  switch (recorded.code) {
    case 'UPSTREAM_FAILED':
      err = new errors.UpstreamFailedError(recorded.message, String(d.upstreamId ?? ''));
      break;
    case 'TASK_CANCELLED':
      err = new errors.TaskCancelledError(recorded.message);
      break;
    case 'WALLTIME_EXCEEDED':
      err = new errors.WalltimeExceededError(recorded.message);
      break;
    case 'UNSATISFIABLE_REQUIREMENTS':
      err = new errors.UnsatisfiableRequirementsError(recorded.message);
      break;
    case 'WORKER_CRASHED':
      err = new errors.WorkerCrashedError(recorded.message);
      break;
    case 'UNKNOWN_TASK':
      err = new errors.UnknownTaskError(recorded.message);
      break;
    case 'EXECUTABLE_FAILED':
      err = new errors.ExecutableFailedError(
        recorded.message,
        typeof d.exitCode === 'number' ? d.exitCode : null,
        typeof d.signal === 'string' ? d.signal : null,
        typeof d.stderrTail === 'string' ? d.stderrTail : '',
      );
      break;
    case 'SLURM_STEP':
      err = new errors.SlurmStepError(recorded.message, String(d.state ?? ''), typeof d.exitCode === 'number' ? d.exitCode : null, typeof d.step === 'string' ? d.step : null);
      break;
    case 'SLURM_ALLOCATION':
      err = new errors.SlurmAllocationError(recorded.message, typeof d.jobId === 'string' ? d.jobId : null, typeof d.state === 'string' ? d.state : null);
      break;
    case 'PATH_ESCAPE':
      err = new errors.PathEscapeError(recorded.message);
      break;
    case 'UNSTORABLE_VALUE':
      err = new errors.UnstorableValueError(recorded.message);
      break;
    default:
      err = new errors.TaskFailedError(`${recorded.name}: ${recorded.message}`);
      Object.defineProperty(err, 'remote', { value: recorded, enumerable: false });
  }
  if (recorded.stack !== undefined) err.stack = recorded.stack;
  return err;
}
