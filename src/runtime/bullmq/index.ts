/**
 * `bullmq()`: task attempts as BullMQ jobs on Redis, run by `scalems worker` processes on any machine
 * (the worker is `worker.ts`; what both sides agree on is `protocol.ts`; the driver's side in Redis is
 * `client.ts`).
 */
import { randomBytes } from 'node:crypto';
import { join, resolve } from 'node:path';
import { TaskCancelledError } from '../../errors';
import { checkOptions, rules, type RulesOf } from '../../task/options';
import { recordError } from '../../recorded-error';
import type { TaskSpec } from '../../task/spec';
import { attemptOf, type Backend, type BackendExecutor, type Job } from '../backend';
import { acceptExecutable } from '../executable/inputs';
import { changedReads, inputsIdentity, missingFiles, upstreamReads } from '../executable/digest';
import { DEFAULT_GRACE_SECONDS } from '../executable/process-tree';
import { workflowDirectory, type StagingMode } from '../executable/workdir';
import { acceptFunction, type RemoteFunctions } from '../remote/accept';
import { probeModules, resolveModules } from '../remote/modules';
import { jsonWire } from '../remote/wire';
import type { Workflow } from '../workflow';
import { BullmqClient, type Tracked } from './client';
import { bullmqDriver } from './driver';
import {
  DEFAULT_PREFIX,
  DEFAULT_QUEUE,
  MEETING_OPTIONS,
  connectionFromUrl,
  jobIdOf,
  meetingName,
  shapeOf,
  shapeQueue,
  type JobData,
  type RedisConnection,
} from './protocol';

export interface BullmqOptions {
  /**
   * The Redis the workers serve: ioredis options (`host`, `port`, `username`, `password`, `tls`, `db`, ...), passed
   * through as they are, or a `redis://[user:password@]host[:port][/db]` URL (`rediss://` for TLS).
   * @default { host: '127.0.0.1', port: 6379 } (also when undefined: `connection: process.env.SCALEMS_REDIS_URL` is
   * fine under `exactOptionalPropertyTypes`)
   */
  readonly connection?: RedisConnection | string | undefined;
  /** BullMQ's key prefix: workers must be started with the same `--prefix`. @default 'scalems' */
  readonly prefix?: string;
  /** The name the task queues start with: workers must be started with the same `--queue`. @default 'tasks' */
  readonly queue?: string;
  /**
   * The modules that define the function tasks (the workers' `--modules`), if this program can load them: a task name
   * they do not define is then refused at submit, not when a worker takes it.
   */
  readonly modules?: readonly string[];
  /**
   * Where executables run: `<root>/<workflow>/tasks/<id>/attempt-<n>/`, a path the workers must see too (a shared
   * filesystem). @default `<cwd>/.scalems`
   */
  readonly root?: string;
  /** How inputs are put into working directories. @default 'copy' */
  readonly staging?: StagingMode;
  /** Seconds between SIGTERM and SIGKILL when a program is stopped. @default 3 */
  readonly gracePeriod?: number;
  /** Seconds finished jobs stay in Redis, for a restarted driver to find their outcomes. @default 86400 */
  readonly keepFor?: number;
  /**
   * Seconds Redis may stay unreachable before the attempts waiting on it fail with `BackendUnavailableError`. It is
   * looked at every 5 s (with 2 s for an answer), so they fail up to 7 s after that.
   * @default 60
   */
  readonly unavailableAfter?: number;
}

/** The store key of a workflow's bullmq() instance: job ids start with it (see `instanceOf`). */
const INSTANCE_KEY = 'backend:bullmq:instance';

const BULLMQ_OPTIONS = {
  ...MEETING_OPTIONS,
  root: rules.path('a directory path'),
  staging: rules.oneOf('copy', 'symlink'),
  gracePeriod: rules.seconds(),
  keepFor: rules.seconds(),
  unavailableAfter: rules.seconds(),
} satisfies RulesOf<BullmqOptions>;

/**
 * Runs task attempts as BullMQ jobs on Redis, taken by `scalems worker` processes that serve the same prefix and
 * queue. Workers run functions by their `defineTask` name from the modules they were started with (never code from
 * the queue) and programs in `<root>/<workflow>/...` (a shared filesystem). Tasks go to the queue of their shape
 * (cores, GPUs and memory of the whole task); a worker takes only from the queues whose tasks fit the capacity it
 * declared, and a task no live worker fits waits. Each attempt is one job, `<workflow instance>.<task id>.<attempt>`:
 * a driver that restarts follows the jobs its previous run left in Redis instead of adding them again. Results and
 * errors travel as JSON. By default an executor puts every ready task in the queue (its capacity is unbounded):
 * give it `worker: { cores }` to cap what it has in flight.
 *
 * ## Example
 * ```ts
 * // on each machine: scalems worker --redis redis://10.0.0.5:6379 --modules dist/tasks.js --cores 8
 * const rt = launch(await openWorkflow({ name: 'md' }), bullmq({ connection: 'redis://10.0.0.5:6379' }));
 * await using md = executor(rt, { task: { coresPerRank: 2 } });
 * const results = await lastValueFrom(from(members).pipe(map((m) => call(simulate, m)), submitOn(md), toArray()));
 * ```
 */
export function bullmq(options: BullmqOptions = {}): Backend {
  checkOptions('bullmq', options, BULLMQ_OPTIONS);
  bullmqDriver('bullmq()'); // a missing bullmq is told here, not at the first task
  const connection =
    typeof options.connection === 'string'
      ? connectionFromUrl(options.connection, 'bullmq({ connection })')
      : (options.connection ?? { host: '127.0.0.1', port: 6379 });
  const meeting = {
    prefix: meetingName(options.prefix, 'bullmq({ prefix })', DEFAULT_PREFIX),
    queue: meetingName(options.queue, 'bullmq({ queue })', DEFAULT_QUEUE),
  };
  const grace = options.gracePeriod ?? DEFAULT_GRACE_SECONDS;
  const keepFor = options.keepFor ?? 86_400;
  const unavailableAfter = options.unavailableAfter ?? 60;
  const root = resolve(options.root ?? join(process.cwd(), '.scalems'));
  const staging = options.staging ?? 'copy';
  const modules = resolveModules(options.modules ?? [], 'bullmq', { allowEmpty: true });
  const remote: RemoteFunctions = {
    backend: 'bullmq',
    where: 'a scalems worker',
    modules,
    defined: modules.length > 0 ? probeModules(modules, 'bullmq') : undefined,
    wire: jsonWire,
    ownModules: true,
  };
  const hostCwd = process.cwd();
  let client: BullmqClient | undefined;
  const clientOf = (): BullmqClient =>
    (client ??= new BullmqClient({ connection, meeting, keepFor, unavailableAfter }));
  const instances = new WeakMap<Workflow, Promise<string>>();
  const instanceOf = (workflow: Workflow): Promise<string> => {
    let instance = instances.get(workflow);
    if (instance === undefined) {
      instance = workflowInstance(workflow);
      instances.set(workflow, instance);
    }
    return instance;
  };

  return {
    kind: 'bullmq',
    open(worker, { workflow }): BackendExecutor {
      const workflowDir = workflowDirectory(root, workflow.name);
      return {
        capacity: {
          cores: worker.cores ?? Infinity,
          gpus: worker.gpus ?? Infinity,
          memoryMB: worker.memoryMB ?? Infinity,
        },
        invokes: false,
        enforcesWalltime: true,
        accept: (spec: TaskSpec) =>
          spec.kind === 'executable' ? acceptExecutable(spec, workflow, staging) : acceptFunction(spec, remote),
        identity: (spec: TaskSpec) => inputsIdentity(spec, hostCwd),
        missing: missingFiles,
        reads: (args, resolved) => upstreamReads(args, resolved, hostCwd, workflowDir),
        changed: changedReads,
        run: (job: Job) => {
          let tracked: Tracked | undefined;
          return attemptOf(
            async (stopped) => {
              const instance = await instanceOf(job.workflow);
              if (stopped()) return undefined;
              const data: JobData = {
                scalems: 1,
                kind: job.kind,
                name: job.name,
                args: [...job.args],
                id: job.id,
                attempt: job.attempt,
                requirements: job.requirements,
                ...(job.label !== undefined ? { label: job.label } : {}),
                ...(job.version !== undefined ? { version: job.version } : {}),
                ...(job.kind === 'executable' ? { place: { workflowDir, hostCwd, staging, grace } } : {}),
              };
              const queue = shapeQueue(meeting, shapeOf(job.requirements));
              const previous = job.attempt > 1 ? jobIdOf(instance, job.id, job.attempt - 1) : undefined;
              return new Promise<unknown>((resolveOutcome, reject) => {
                tracked = clientOf().track(queue, jobIdOf(instance, job.id, job.attempt), previous, data, (o) =>
                  o.ok ? resolveOutcome(o.value) : reject(o.error),
                );
              });
            },
            () => {
              // (also called once the attempt has ended: then there is nothing to stop)
              if (tracked === undefined || tracked.done) return;
              const reason: unknown = job.signal.aborted ? job.signal.reason : undefined;
              clientOf().cancel(tracked, recordError(reason ?? new TaskCancelledError(`task ${job.id} was stopped`)));
            },
          );
        },
        close: async () => undefined,
      };
    },
    shutdown: async () => {
      await client?.close();
      client = undefined;
    },
  };
}

/**
 * The instance of a workflow's store that job ids start with: made once and kept in the store, so that a driver that
 * reopens the workflow finds the jobs its previous run added, while a new store (the old one deleted) never meets a
 * job of the old one left in Redis, nor another workflow's.
 */
async function workflowInstance(workflow: Workflow): Promise<string> {
  const kept = await workflow.store.get<string>(INSTANCE_KEY);
  if (typeof kept === 'string') return kept;
  const made = `${workflow.name.replace(/[^A-Za-z0-9_-]/g, '_')}-${randomBytes(6).toString('hex')}`;
  await workflow.store.set(INSTANCE_KEY, made);
  return made;
}
