/**
 * The part of `scalems status --redis <url>` that looks at bullmq() queues: the live workers (what each
 * offers, what it runs) and, for each task shape, its jobs waiting and running, and why waiting ones
 * wait when no live worker can take them.
 */
import type { Queue } from 'bullmq';
import { closeSoon } from '../runtime/bullmq/close';
import { bullmqDriver } from '../runtime/bullmq/driver';
import {
  describeConnection,
  fits,
  parseShapeQueue,
  shapesKey,
  workerKey,
  type Meeting,
  type RedisConnection,
  type WorkerInfo,
} from '../runtime/bullmq/protocol';
import type { Footprint } from '../task/requirements';

export interface ShapeReport {
  readonly queue: string;
  readonly shape: Footprint;
  readonly waiting: number;
  readonly running: number;
  /** live workers that may take its tasks */
  readonly fittingWorkers: number;
}

export interface BullmqReport {
  readonly redis: string;
  readonly prefix: string;
  readonly queue: string;
  readonly workers: readonly WorkerInfo[];
  readonly shapes: readonly ShapeReport[];
}

/** Reads the queues and live workers of a prefix. */
export async function bullmqReport(connection: RedisConnection, meeting: Meeting): Promise<BullmqReport> {
  const opened: Queue[] = [];
  const queue = (name: string): Queue => {
    const q = new (bullmqDriver('scalems status --redis').Queue)(name, {
      connection: { ...connection, maxRetriesPerRequest: 1 },
      prefix: meeting.prefix,
    });
    q.on('error', () => undefined);
    opened.push(q);
    return q;
  };
  try {
    const client = await queue(meeting.queue).client;
    const workers: WorkerInfo[] = [];
    let cursor = '0';
    do {
      const [next, keys] = await client.scan(cursor, { MATCH: workerKey(meeting, '*'), COUNT: 1000 });
      cursor = next;
      for (const key of keys) {
        const text = await client.get(key);
        if (text !== null) workers.push(JSON.parse(text) as WorkerInfo);
      }
    } while (cursor !== '0');
    workers.sort((a, b) => a.name.localeCompare(b.name));
    const shapes: ShapeReport[] = [];
    for (const name of Object.keys(await client.hgetall(shapesKey(meeting))).sort()) {
      const shape = parseShapeQueue(meeting, name);
      if (shape === undefined) continue;
      const counts = await queue(name).getJobCounts('waiting', 'prioritized', 'delayed', 'active');
      shapes.push({
        queue: name,
        shape,
        waiting: (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
        running: counts.active ?? 0,
        fittingWorkers: workers.filter((w) => fits(shape, w)).length,
      });
    }
    return { redis: describeConnection(connection), prefix: meeting.prefix, queue: meeting.queue, workers, shapes };
  } finally {
    await Promise.all(opened.map(closeSoon));
  }
}

const needs = (s: Footprint): string => `${s.cores} cores, ${s.gpus} GPUs, ${s.memoryMB} MB`;

export function formatBullmqReport(r: BullmqReport): string {
  const out = [`bullmq queues "${r.queue}" (prefix "${r.prefix}") at ${r.redis}`];
  out.push(`  live workers: ${r.workers.length === 0 ? 'none' : ''}`.trimEnd());
  for (const w of r.workers)
    out.push(
      `    ${w.name}  (${w.host}, pid ${w.pid})  offers ${needs(w)}; runs ${w.running} of at most ${w.concurrency}`,
    );
  if (r.shapes.length === 0) out.push('  no tasks have been sent');
  for (const s of r.shapes) {
    let line = `  ${s.queue}: ${s.waiting} waiting, ${s.running} running`;
    if (s.waiting > 0 && s.fittingWorkers === 0) {
      const largest = r.workers.length > 0 ? `; live workers offer at most ${needs(largestOf(r.workers))}` : '';
      line +=
        ` — they wait: no live worker fits a task of ${needs(s.shape)}${largest}. Start one: scalems worker ` +
        `--cores ${s.shape.cores}${s.shape.gpus > 0 ? ` --gpus ${s.shape.gpus}` : ''}` +
        `${s.shape.memoryMB > 0 ? ` --memory ${s.shape.memoryMB}` : ''} ...`;
    }
    out.push(line);
  }
  return out.join('\n') + '\n';
}

function largestOf(workers: readonly WorkerInfo[]): Footprint {
  return {
    cores: Math.max(...workers.map((w) => w.cores)),
    gpus: Math.max(...workers.map((w) => w.gpus)),
    memoryMB: Math.max(...workers.map((w) => w.memoryMB)),
  };
}
