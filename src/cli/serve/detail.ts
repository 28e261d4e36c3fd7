/**
 * A task's page on `scalems serve`: its record read now, the tail of its last attempt's stdout and stderr (as
 * `scalems logs --tail` reads them) and the tasks on either side of it.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { attemptsIn, tailOf } from '../logs';
import type { OutputTail, TaskDetail } from './protocol';
import { rowOf, type StoreSource } from './source';

const TAIL_LINES = 60;
const TAIL_BYTES = 32 * 1024;
const RESULT_CHARS = 4096;

/** The detail of task `id`, or undefined when the store holds no such task. */
export function taskDetail(source: StoreSource, id: string): TaskDetail | undefined {
  const record = source.record(id);
  if (record === undefined) return undefined;
  const row = source.row(id) ?? rowOf(record);
  let result: string | undefined;
  let resultCut: boolean | undefined;
  if (record.result !== undefined) {
    result = JSON.stringify(record.result, null, 2) ?? String(record.result);
    if (result.length > RESULT_CHARS) [result, resultCut] = [`${result.slice(0, RESULT_CHARS)}…`, true];
  }
  const output: OutputTail[] = [];
  let outputAttempt: number | undefined;
  if (record.kind === 'executable') {
    const taskDir = path.join(path.dirname(source.file), 'tasks', record.id);
    outputAttempt = attemptsIn(taskDir).at(-1);
    if (outputAttempt !== undefined) {
      for (const stream of ['stdout', 'stderr'] as const) {
        const file = path.join(taskDir, `attempt-${outputAttempt}`, stream);
        const size = fs.statSync(file, { throwIfNoEntry: false })?.size;
        if (size !== undefined) output.push({ stream, file, size, text: tailOf(file, TAIL_LINES, TAIL_BYTES) });
      }
    }
  }
  return {
    row,
    args: record.args,
    requirements: record.requirements,
    ...(record.key === undefined ? {} : { key: record.key }),
    ...(record.parent === undefined ? {} : { parent: record.parent }),
    ...(record.error === undefined ? {} : { error: record.error }),
    ...(record.artifacts === undefined ? {} : { artifacts: record.artifacts }),
    ...(result === undefined ? {} : { result }),
    ...(resultCut ? { resultCut } : {}),
    ...(outputAttempt === undefined ? {} : { outputAttempt }),
    output,
    downstream: source.dependentsOf(id),
  };
}
