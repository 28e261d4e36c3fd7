// The baseline worker of bench/bullmq.ts: a plain BullMQ Worker with a no-op processor, in a process of
// its own as `scalems worker` is. Prints "ready" once it takes jobs; SIGTERM closes it.
// Usage: node bullmq-raw-worker.js <redis port> <prefix> <queue> <concurrency>
import { Worker } from 'bullmq';

const [port, prefix, queue, concurrency] = process.argv.slice(2);
if (port === undefined || prefix === undefined || queue === undefined || concurrency === undefined) {
  console.error('usage: bullmq-raw-worker <redis port> <prefix> <queue> <concurrency>');
  process.exit(2);
}

const worker = new Worker<{ n: number }, number>(queue, async (job) => job.data.n + 1, {
  connection: { host: '127.0.0.1', port: Number(port) },
  prefix,
  concurrency: Number(concurrency),
});
worker.on('error', (err) => console.error(`raw worker: ${err.message}`));
process.once('SIGTERM', () => {
  void worker.close().then(() => process.exit(0));
});
void worker.waitUntilReady().then(() => console.log(`raw worker ${process.pid}: ready`));
