/** The one check that a value read from a store is a task record, shared by the CLI and a reopened workflow. */
import { StoreCorruptError } from '../errors';
import { TASK_STATES, type TaskRecord, type TaskStateName } from './state';

const KNOWN_STATES: ReadonlySet<string> = new Set<TaskStateName>(TASK_STATES);
const count = (v: unknown): boolean => Number.isInteger(v) && (v as number) >= 0;

/** Why `value` is not a task record, or undefined if it is one. */
export function taskRecordProblem(value: unknown): string | undefined {
  if (typeof value !== 'object' || value === null || Array.isArray(value))
    return `it is ${value === null ? 'null' : Array.isArray(value) ? 'an array' : typeof value}, not an object`;
  const r = value as Partial<Record<keyof TaskRecord, unknown>>;
  if (typeof r.id !== 'string' || r.id === '') return 'it has no id';
  if (typeof r.name !== 'string') return 'it has no task name';
  if (r.kind !== 'function' && r.kind !== 'executable') return `its kind ${JSON.stringify(r.kind)} is unknown`;
  if (typeof r.state !== 'string' || !KNOWN_STATES.has(r.state))
    return `its state ${JSON.stringify(r.state)} is not one of ${TASK_STATES.join(', ')}`;
  if (!Array.isArray(r.inputs) || !r.inputs.every((i) => typeof i === 'string'))
    return 'its inputs are not a list of task ids';
  if (!count(r.attempts) || !count(r.pending)) return 'its attempts or pending count is not a whole number';
  return undefined;
}

/**
 * Throws `StoreCorruptError` unless `value`, stored under `key` (if known) in the store `where` (a path or a store's
 * description), is a task record. The message says what is wrong and what to do; the store is not changed.
 */
export function checkTaskRecord(where: string, key: string | undefined, value: unknown): asserts value is TaskRecord {
  const problem = taskRecordProblem(value);
  if (problem === undefined) return;
  const shown = JSON.stringify(value) ?? String(value);
  throw new StoreCorruptError(
    `${where}: ${key === undefined ? 'a value stored as a task' : `the value stored under "${key}"`} is not a ` +
      `task record (${problem}: ` +
      `${shown.length > 80 ? `${shown.slice(0, 80)}...` : shown}). No record of the store was changed: restore ` +
      'it from a backup, or move it away to start a new store (the recorded workflow state is then lost).',
  );
}
