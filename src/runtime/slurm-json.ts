// What crosses between the program and a function task in a Slurm job step: JSON files.
import { isTaskHandle } from '../task/hash';
import type { RecordedError } from '../store/state';

/** The result file the `scalems-task` entry point writes. */
export type StepResult = { readonly ok: true; readonly value?: unknown } | { readonly ok: false; readonly error: RecordedError };

/**
 * Why JSON would not carry `value` faithfully (naming where: `argument 1.options.when`), or undefined.
 * Upstream `Task`s are fine among arguments (`tasksAllowed`): their results are substituted.
 */
export function jsonProblem(value: unknown, where: string, tasksAllowed = false, seen: Set<object> = new Set()): string | undefined {
  switch (typeof value) {
    case 'string':
    case 'boolean':
      return undefined;
    case 'number':
      return Number.isFinite(value) ? undefined : `${where} is ${String(value)}, which JSON cannot carry`;
    case 'undefined':
      return undefined;
    case 'function':
      return `${where} is a function`;
    case 'symbol':
      return `${where} is a symbol`;
    case 'bigint':
      return `${where} is a bigint (pass it as a string)`;
  }
  if (value === null) return undefined;
  const obj = value as object;
  if (tasksAllowed && isTaskHandle(obj)) return undefined;
  if (seen.has(obj)) return `${where} refers to itself (a cycle)`;
  const proto: unknown = Object.getPrototypeOf(obj);
  if (Array.isArray(obj)) {
    seen.add(obj);
    for (let i = 0; i < obj.length; i++) {
      if (obj[i] === undefined) return `${where}[${i}] is undefined (JSON makes it null)`;
      const p = jsonProblem(obj[i], `${where}[${i}]`, tasksAllowed, seen);
      if (p !== undefined) return p;
    }
    seen.delete(obj);
    return undefined;
  }
  if (proto !== Object.prototype && proto !== null) {
    const name = (obj.constructor as { name?: string } | undefined)?.name ?? 'object';
    return `${where} is a ${name}, which JSON does not carry faithfully (pass plain objects, arrays, strings, numbers, booleans, null)`;
  }
  seen.add(obj);
  for (const [k, v] of Object.entries(obj)) {
    const p = jsonProblem(v, `${where}.${k}`, tasksAllowed, seen);
    if (p !== undefined) return p;
  }
  seen.delete(obj);
  return undefined;
}
