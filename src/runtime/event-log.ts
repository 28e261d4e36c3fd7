/**
 * What the logger says of each task event: failures at `warn`, retries and cancellations at `info`, the rest at
 * `debug`.
 */
import type { Observable, Subscription } from 'rxjs';
import type { RecordedError } from '../recorded-error';
import type { TaskEvent } from './events';
import type { Logger } from './log';

const who = (e: TaskEvent): string => `task ${e.label === undefined ? '' : `"${e.label}" `}(${e.name}, ${e.id})`;
const firstLine = (error: RecordedError): string => `${error.name}: ${error.message.split('\n')[0]}`;
const ms = (duration: number | undefined): string => (duration === undefined ? '' : ` after ${duration} ms`);

/** The log line of an event, and its level. */
export function describeEvent(e: TaskEvent): ['debug' | 'info' | 'warn', string] {
  const on = e.executor === undefined ? '' : ` on ${e.executor}`;
  switch (e.type) {
    case 'submitted':
      return ['debug', `${who(e)} submitted${on}`];
    case 'started':
      return ['debug', `${who(e)} started, attempt ${e.attempt}${on}`];
    case 'succeeded':
      return ['debug', `${who(e)} succeeded${ms(e.duration)}, attempt ${e.attempt}`];
    case 'retrying':
      return ['info', `${who(e)} attempt ${e.attempt} failed${ms(e.duration)}, retrying: ${firstLine(e.error)}`];
    case 'cancelled':
      return ['info', `${who(e)} cancelled${ms(e.duration)}: ${firstLine(e.error)}`];
    case 'failed':
      // the failures an input's failure caused: one warning (the root's) is enough
      return [
        e.error.code === 'UPSTREAM_FAILED' ? 'info' : 'warn',
        `${who(e)} failed after ${e.attempt} attempt${e.attempt === 1 ? '' : 's'}` +
          `${e.duration === undefined ? '' : ` (the last ran ${e.duration} ms)`}: ${firstLine(e.error)}`,
      ];
  }
}

/** Logs the events of `events$` at their levels (see `describeEvent`). */
export function logEvents(events$: Observable<TaskEvent>, log: Logger): Subscription {
  return events$.subscribe((e) => {
    const [level, line] = describeEvent(e);
    log[level](line);
  });
}
