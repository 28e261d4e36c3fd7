/**
 * `scalems worker`: serves the BullMQ queues of `bullmq()` drivers from this machine until SIGTERM or
 * SIGINT (a first one lets the running tasks finish; a second stops them, and their jobs go back to be
 * run elsewhere).
 */
import { parseArgs } from 'node:util';
import { availableParallelism } from 'node:os';
import { ScalemsWorker, type ScalemsWorkerOptions } from '../runtime/bullmq/worker';
import { connectionFromUrl } from '../runtime/bullmq/protocol';
import { resolveModules } from '../runtime/remote/modules';
import { EXIT_FAILURE, EXIT_OK, UsageError, type CliIo, type Command } from './command';

const USAGE = `usage: scalems worker --redis <url> [--modules <module> ...] [options]

Takes tasks from the queues of bullmq() drivers and runs them here: functions by their defineTask name from
the modules given (never code from the queue), programs as child processes. Takes only tasks that fit the
capacity declared here, and runs no more at once. Stops on SIGTERM or SIGINT once its running tasks end
(a second signal stops them: they run again elsewhere).

options:
  --redis <url>          redis://[user:password@]host[:port][/db], rediss:// for TLS (default redis://127.0.0.1:6379);
                         or set SCALEMS_REDIS_URL (keeps a password off the command line)
  --modules <module>     a module that defines function tasks with defineTask (repeat for several)
  --cores <n>            cores this worker offers (default: this machine's, ${availableParallelism()})
  --gpus <n>             GPUs it offers (default 0)
  --memory <MB>          memory it offers, MB (default: not accounted; tasks that ask for memory are not taken)
  --concurrency <n>      tasks at once at most (default: --cores)
  --name <name>          its name in scalems status (default <host>-<pid>)
  --prefix <prefix>      BullMQ key prefix, as bullmq({ prefix }) (default scalems)
  --queue <name>         queue name, as bullmq({ queue }) (default tasks)
  --inline               run function tasks on this process's event loop, not a thread per core: cheapest for light
                         functions, but one that computes without awaiting delays the job-lock renewals (keep them
                         short or raise --lock-duration) and one that ignores its signal cannot be stopped
  --lock-duration <ms>   how long a job's lock lasts unrenewed: the jobs of a worker that died go to others after
                         about this long (default 30000)
`;

function count(value: string | undefined, option: string, min: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min)
    throw new UsageError(`${option}: expected an integer of at least ${min}, got "${value}"`);
  return n;
}

/** The worker's options from its command line; throws a UsageError naming a mistake. */
export function parseWorkerArgs(args: readonly string[], env: NodeJS.ProcessEnv = process.env): ScalemsWorkerOptions {
  const { values } = parseArgs({
    args: [...args],
    options: {
      redis: { type: 'string' },
      modules: { type: 'string', multiple: true },
      cores: { type: 'string' },
      gpus: { type: 'string' },
      memory: { type: 'string' },
      concurrency: { type: 'string' },
      name: { type: 'string' },
      prefix: { type: 'string' },
      queue: { type: 'string' },
      'lock-duration': { type: 'string' },
      inline: { type: 'boolean' },
    },
    strict: true,
    allowPositionals: false,
  });
  const url = values.redis ?? env.SCALEMS_REDIS_URL ?? 'redis://127.0.0.1:6379';
  let connection;
  let modules: string[];
  try {
    connection = connectionFromUrl(url, '--redis');
    modules = resolveModules(values.modules ?? [], 'worker --modules', { allowEmpty: true });
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  return {
    connection,
    modules,
    cores: count(values.cores, '--cores', 1) ?? availableParallelism(),
    gpus: count(values.gpus, '--gpus', 0),
    memoryMB: count(values.memory, '--memory', 0),
    concurrency: count(values.concurrency, '--concurrency', 1),
    lockDuration: count(values['lock-duration'], '--lock-duration', 100),
    ...(values.inline === true ? { inline: true } : {}),
    ...(values.name !== undefined ? { name: values.name } : {}),
    ...(values.prefix !== undefined ? { prefix: values.prefix } : {}),
    ...(values.queue !== undefined ? { queue: values.queue } : {}),
  };
}

export const workerCommand: Command = {
  summary: 'serve the BullMQ queues of bullmq() drivers from this machine',
  usage: USAGE,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const options = parseWorkerArgs(args);
    const worker = await ScalemsWorker.start({ ...options, log: (line) => io.stdout.write(`${line}\n`) });
    await new Promise<void>((done) => {
      let signals = 0;
      const stop = (signal: NodeJS.Signals): void => {
        signals++;
        const what = signals === 1 ? 'finishing the running tasks' : 'stopping them (they go back to the queue)';
        io.stdout.write(`scalems worker ${worker.name}: ${signal}, ${what}\n`);
        void worker.close(signals > 1).then(done);
        // stopping at once, and Redis does not answer: do not hang on it
        if (signals > 1) setTimeout(() => process.exit(EXIT_FAILURE), 10_000).unref();
      };
      process.on('SIGTERM', stop);
      process.on('SIGINT', stop);
    });
    return EXIT_OK;
  },
};
