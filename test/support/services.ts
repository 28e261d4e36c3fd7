/**
 * Test support for suites that need real services: the Slurm cluster of 2 nodes (n1, n2),
 * Redis on 127.0.0.1:6379, and Open MPI (mpirun + mpicc).
 *
 * Services are started by `bash scripts/start-services.sh` (packages installed by
 * `bash scripts/install-deps.sh`). When a service is missing:
 *   - with CI=true the tests FAIL, with a message naming the script to run;
 *   - otherwise they are SKIPPED, with a loud console.warn banner.
 *
 * Usage:
 *
 *   import { describeWithService, mpiEnv, REDIS } from './support/services';
 *
 *   describeWithService('slurm', 'slurm backend', () => {
 *     it('runs a step', async () => { ... });
 *   });
 *
 *   describeWithService(['slurm', 'mpi'], 'MPI tasks in a Slurm pilot', () => { ... });
 *
 *   // or, inside a test or hook:
 *   if (!(await requireService('redis'))) return;
 *
 *   spawn('mpirun', ['-np', '2', prog], { env: { ...process.env, ...mpiEnv() } });
 *
 * Only node: builtins and the jest globals are used.
 */
import { execFile, spawnSync } from 'node:child_process';
import * as net from 'node:net';

// the nodes of the test cluster, for node-failure tests
export { holdNodes, killSlurmd, nodeState, restartSlurmd, slurmNodes, type SlurmNode } from './slurm-nodes';

export type ServiceName = 'slurm' | 'redis' | 'mpi';

export interface ServiceStatus {
  readonly name: ServiceName;
  readonly available: boolean;
  /** What was found (e.g. the node state), or why the service is unavailable. */
  readonly detail: string;
}

/** The command that starts every service (run as root). */
export const START_SERVICES_COMMAND = 'bash scripts/start-services.sh';
/** The command that installs the packages the services need (run as root). */
export const INSTALL_DEPS_COMMAND = 'bash scripts/install-deps.sh';

/** Where the test Redis listens. */
export const REDIS: { readonly host: string; readonly port: number } = Object.freeze({
  host: '127.0.0.1',
  port: 6379,
});
/** `host:port` of the test Redis, for messages and titles. */
export const REDIS_ADDRESS = `${REDIS.host}:${String(REDIS.port)}`;

/** Slurm node states in which jobs can run (a suffix like `*` = not responding). */
const USABLE_NODE_STATES: ReadonlySet<string> = new Set(['idle', 'mixed', 'allocated', 'completing']);

const PROBE_TIMEOUT_MS = 10_000;

/** True when running under CI (`CI=true`): missing services fail tests there. */
export function isCI(): boolean {
  return process.env.CI === 'true';
}

export interface MpiEnvOptions {
  /**
   * Allow more ranks than slots (cores outside Slurm, tasks inside an allocation).
   * Off by default so that rank/slot mismatches are not hidden.
   */
  readonly oversubscribe?: boolean;
}

/**
 * Environment for running Open MPI's mpirun (as root, in containers). Merge into the
 * child's environment: `{ ...process.env, ...mpiEnv() }`.
 *
 * - OMPI_ALLOW_RUN_AS_ROOT / _CONFIRM: mpirun refuses to run as root without them.
 * - btl_vader_single_copy_mechanism=none: no CMA (process_vm_readv), which fails
 *   under the ptrace restrictions of many containers; only costs performance.
 * Inside a Slurm allocation nothing else is needed: mpirun detects SLURM_JOB_ID and
 * launches through srun; `-np` must not exceed the allocation's tasks unless
 * `oversubscribe` is set.
 */
export function mpiEnv(options: MpiEnvOptions = {}): Record<string, string> {
  const env: Record<string, string> = {
    OMPI_ALLOW_RUN_AS_ROOT: '1',
    OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1',
    OMPI_MCA_btl_vader_single_copy_mechanism: 'none',
  };
  if (options.oversubscribe === true) {
    env.OMPI_MCA_rmaps_base_oversubscribe = '1';
  }
  return env;
}

// ---------------------------------------------------------------------------- probes

interface CommandResult {
  readonly ok: boolean;
  readonly stdout: string;
  readonly detail: string;
}

function describeFailure(command: string, error: Error | undefined, status: number | null, stderr: string): string {
  if (error !== undefined) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? `'${command}' not found` : `'${command}': ${error.message}`;
  }
  const firstLine = stderr.trim().split('\n')[0] ?? '';
  return `'${command}' exited with ${String(status)}${firstLine ? `: ${firstLine}` : ''}`;
}

function runSync(command: string, args: readonly string[]): CommandResult {
  const result = spawnSync(command, args, {
    encoding: 'utf8',
    timeout: PROBE_TIMEOUT_MS,
    env: { ...process.env, ...mpiEnv() },
  });
  const ok = result.error === undefined && result.status === 0;
  const full = [command, ...args].join(' ');
  return {
    ok,
    stdout: result.stdout,
    detail: ok ? '' : describeFailure(full, result.error, result.status, result.stderr),
  };
}

function runAsync(command: string, args: readonly string[]): Promise<CommandResult> {
  const full = [command, ...args].join(' ');
  return new Promise((resolve) => {
    execFile(
      command,
      [...args],
      { encoding: 'utf8', timeout: PROBE_TIMEOUT_MS, env: { ...process.env, ...mpiEnv() } },
      (error, stdout, stderr) => {
        if (error === null) {
          resolve({ ok: true, stdout, detail: '' });
          return;
        }
        const status = typeof error.code === 'number' ? error.code : null;
        const spawnError = typeof error.code === 'string' ? error : undefined;
        resolve({ ok: false, stdout, detail: describeFailure(full, spawnError, status, stderr) });
      },
    );
  });
}

function slurmStatus(sinfo: CommandResult): ServiceStatus {
  if (!sinfo.ok) return { name: 'slurm', available: false, detail: sinfo.detail };
  const states = sinfo.stdout
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line.length > 0);
  const usable = states.filter((state) => USABLE_NODE_STATES.has(state));
  return usable.length > 0
    ? { name: 'slurm', available: true, detail: `node states: ${states.join(', ')}` }
    : {
        name: 'slurm',
        available: false,
        detail: `no usable node (sinfo node states: ${states.join(', ') || 'none'})`,
      };
}

function mpiStatus(mpirun: CommandResult, mpicc: CommandResult): ServiceStatus {
  if (!mpirun.ok) return { name: 'mpi', available: false, detail: mpirun.detail };
  if (!mpicc.ok) return { name: 'mpi', available: false, detail: mpicc.detail };
  return { name: 'mpi', available: true, detail: mpirun.stdout.trim().split('\n')[0] ?? '' };
}

const SINFO_ARGS = ['-h', '-o', '%T'] as const;

/**
 * Sends PING to Redis over a plain TCP connection (RESP inline command) and
 * resolves with the first reply line (`+PONG` when healthy). Rejects on
 * connection errors or after `timeoutMs`.
 */
export function redisPing(
  host: string = REDIS.host,
  port: number = REDIS.port,
  timeoutMs: number = 3_000,
): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host, port });
    let buffer = '';
    const finish = (error: Error | undefined, reply?: string): void => {
      clearTimeout(timer);
      socket.destroy();
      if (error !== undefined) reject(error);
      else resolve(reply ?? '');
    };
    const where = `${host}:${String(port)}`;
    const timer = setTimeout(() => {
      finish(new Error(`no reply from redis at ${where} within ${String(timeoutMs)} ms`));
    }, timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => {
      socket.write('PING\r\n');
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const end = buffer.indexOf('\r\n');
      if (end >= 0) finish(undefined, buffer.slice(0, end));
    });
    socket.once('error', (error: Error) => {
      finish(error);
    });
    socket.once('close', () => {
      finish(new Error(`redis at ${where} closed the connection`));
    });
  });
}

async function redisStatus(): Promise<ServiceStatus> {
  try {
    const reply = await redisPing();
    return reply === '+PONG'
      ? { name: 'redis', available: true, detail: `${REDIS_ADDRESS} PONG` }
      : { name: 'redis', available: false, detail: `PING answered '${reply}'` };
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    return { name: 'redis', available: false, detail: `${REDIS_ADDRESS}: ${message}` };
  }
}

/** The Redis probe as a separate node process, so that it can run synchronously. */
function redisStatusSync(): ServiceStatus {
  const script = `
    const s = require('node:net').connect({ host: ${JSON.stringify(REDIS.host)}, port: ${String(REDIS.port)} });
    let b = '';
    s.setEncoding('utf8');
    s.setTimeout(3000, () => { process.stdout.write('ERR timeout'); process.exit(0); });
    s.on('connect', () => s.write('PING\\r\\n'));
    s.on('data', (d) => { b += d; const i = b.indexOf('\\r\\n');
      if (i >= 0) { process.stdout.write(b.slice(0, i)); process.exit(0); } });
    s.on('error', (e) => { process.stdout.write('ERR ' + e.message); process.exit(0); });
  `;
  const result = runSync(process.execPath, ['-e', script]);
  const reply = result.stdout.trim();
  if (reply === '+PONG') {
    return { name: 'redis', available: true, detail: `${REDIS_ADDRESS} PONG` };
  }
  const why = reply.startsWith('ERR ') ? reply.slice(4) : reply || result.detail;
  return { name: 'redis', available: false, detail: `${REDIS_ADDRESS}: ${why}` };
}

/** Probes a service without side effects (no warning, no throw). */
export async function probeService(name: ServiceName): Promise<ServiceStatus> {
  switch (name) {
    case 'slurm':
      return slurmStatus(await runAsync('sinfo', SINFO_ARGS));
    case 'redis':
      return redisStatus();
    case 'mpi': {
      const [mpirun, mpicc] = await Promise.all([runAsync('mpirun', ['--version']), runAsync('mpicc', ['--version'])]);
      return mpiStatus(mpirun, mpicc);
    }
  }
}

const syncCache = new Map<ServiceName, ServiceStatus>();

/**
 * Synchronous probe (child processes), for deciding at test-collection time.
 * Cached per test file (jest module registry).
 */
export function probeServiceSync(name: ServiceName): ServiceStatus {
  const cached = syncCache.get(name);
  if (cached !== undefined) return cached;
  let status: ServiceStatus;
  switch (name) {
    case 'slurm':
      status = slurmStatus(runSync('sinfo', SINFO_ARGS));
      break;
    case 'redis':
      status = redisStatusSync();
      break;
    case 'mpi':
      status = mpiStatus(runSync('mpirun', ['--version']), runSync('mpicc', ['--version']));
      break;
  }
  syncCache.set(name, status);
  return status;
}

// ------------------------------------------------------------------- missing services

/** The message for a missing service (thrown under CI, printed otherwise). */
export function missingServiceMessage(status: ServiceStatus, what?: string): string {
  return (
    `${what !== undefined ? `${what}: ` : ''}the real '${status.name}' service is not available ` +
    `(${status.detail}). Start the services with \`${START_SERVICES_COMMAND}\` ` +
    `(as root; install the packages first with \`${INSTALL_DEPS_COMMAND}\`).`
  );
}

const warned = new Set<ServiceName>();

function warnSkipped(status: ServiceStatus, what?: string): void {
  const bar = '!'.repeat(78);
  const lines = [
    bar,
    `!!  SKIPPING TESTS: the real '${status.name}' service is not available`,
    ...(what !== undefined ? [`!!  skipped: ${what}`] : []),
    `!!  reason: ${status.detail}`,
    `!!  start it with:   ${START_SERVICES_COMMAND}      (as root)`,
    `!!  packages:        ${INSTALL_DEPS_COMMAND}`,
    `!!  (with CI=true these tests fail instead of being skipped)`,
    bar,
  ];
  if (what === undefined && warned.has(status.name)) return;
  warned.add(status.name);
  console.warn(`\n${lines.join('\n')}\n`);
}

/**
 * Checks that a service is available. Resolves true if it is; otherwise, under
 * CI=true, throws (failing the calling test or hook), else warns loudly and
 * resolves false so the caller can return early:
 *
 *   it('enqueues', async () => {
 *     if (!(await requireService('redis'))) return;
 *     ...
 *   });
 */
export async function requireService(name: ServiceName): Promise<boolean> {
  const status = await probeService(name);
  if (status.available) return true;
  if (isCI()) throw new Error(missingServiceMessage(status));
  warnSkipped(status);
  return false;
}

/**
 * `describe` that runs only when the named service(s) are available. Decided at
 * collection time with synchronous probes. When a service is missing: under
 * CI=true the block becomes a single failing test naming the service and the
 * script to run; otherwise the block is skipped (`describe.skip`, so its tests show
 * as skipped) with a loud warning.
 */
export function describeWithService(names: ServiceName | readonly ServiceName[], title: string, fn: () => void): void {
  const list: readonly ServiceName[] = typeof names === 'string' ? [names] : names;
  const missing = list.map(probeServiceSync).filter((status) => !status.available);
  describeWhenAvailable(
    title,
    missing.map((status) => ({
      requirement: `the '${status.name}' service`,
      failure: missingServiceMessage(status, title),
      warn: () => warnSkipped(status, title),
    })),
    fn,
  );
}

/** What a block of tests needs and does not have: how to fail under CI=true, how to warn when skipping. */
export interface MissingRequirement {
  /** "the 'redis' service", "Chromium" */
  readonly requirement: string;
  /** the failure message under CI=true: what is missing and how to get it */
  readonly failure: string;
  /** the loud warning when the block is skipped */
  readonly warn: () => void;
}

/**
 * `describe` unless something is missing. Then, under CI=true, the block is one failing test per missing
 * requirement; otherwise it is skipped (`describe.skip`, so its tests show as skipped) after a loud warning.
 */
export function describeWhenAvailable(title: string, missing: readonly MissingRequirement[], fn: () => void): void {
  if (missing.length === 0) {
    describe(title, fn);
    return;
  }
  if (isCI()) {
    describe(title, () => {
      for (const m of missing) {
        it(`requires ${m.requirement}`, () => {
          throw new Error(m.failure);
        });
      }
    });
    return;
  }
  for (const m of missing) m.warn();
  describe.skip(title, fn);
}
