/** BullMQ (and so ioredis), an optional peer dependency: loaded when a `bullmq()` backend or a worker is made. */
import type * as BullMQ from 'bullmq';
import { optionalDependency } from '../../optional-dependency';

/** The bullmq module (loaded once); `MissingDependencyError` naming `feature` when it is not installed. */
export function bullmqDriver(feature: string): typeof BullMQ {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return optionalDependency('bullmq', '5', feature, () => require('bullmq') as typeof BullMQ);
}
