/**
 * The resident agent of one node of a `slurm()` allocation: started once per node as one long-lived job step, it
 * connects back to the driver, says what its node offers, and runs the attempts the driver places on it through the
 * shared task host (`remote/host.ts`): functions on its worker-thread pool, programs (started by its spawners,
 * `executable/spawner.ts`) in the working directory the driver names. It beats every HEARTBEAT_MS; it checks its
 * node's slurmd at each beat and says it is unwell (and ends its work) when that stops answering. When the driver
 * goes (the connection ends, by `bye` or because the driver died), it stops its work, ends its programs' process
 * trees and exits; if it is killed itself, its spawners (also its watchdogs) end them.
 */
import { execFile } from 'node:child_process';
import { connect, type Socket } from 'node:net';
import { TaskCancelledError } from '../../errors';
import { recordError, reviveError } from '../../recorded-error';
import { AttemptData, decodeWith } from '../remote/attempt-data';
import { CoreGate } from '../executable/core-gate';
import { AttemptWithdrawn } from '../executable/local';
import { whenInterrupted } from '../executable/process-tree';
import { TaskHost } from '../remote/host';
import { hostPool } from '../threads/host-pool';
import {
  DriverMessage,
  HEARTBEAT_MS,
  decodeLine,
  doneMessage,
  line,
  lineReader,
  type AgentMessage,
} from './agent-protocol';
import type { ModuleDigests } from '../remote/modules';

export interface AgentOptions {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  /** Slurm's name of this node */
  readonly node: string;
  readonly modules: readonly string[];
  /** the modules' digests as the driver read them (`moduleDigests`): one changed since is not loaded */
  readonly digests?: ModuleDigests;
  readonly cores: number;
  readonly memoryMB: number;
  readonly gpus: number;
  /** where it says what it does @default stderr */
  readonly log?: (line: string) => void;
  /**
   * Why this node can run nothing more, or undefined while it is well; asked at each beat. @default its slurmd answers
   * on its port
   */
  readonly health?: () => Promise<string | undefined>;
}

/** Runs the agent until the driver lets it go or goes; resolves with the exit code for the process. */
export function runAgent(options: AgentOptions): Promise<number> {
  const log = options.log ?? ((text: string) => process.stderr.write(`${text}\n`));
  const name = `the Slurm agent on node ${options.node}`;
  const host = new TaskHost({
    name,
    modules: options.modules,
    ...(options.digests !== undefined && { digests: options.digests }),
    modulesOption: 'slurm({ modules })',
    cores: options.cores,
    pool: hostPool(name),
    // the driver hands it one-core attempts ahead of a free core (Capacity.queue): they wait here, prepared
    gate: new CoreGate(options.cores),
    watchdog: true,
  });
  const health = options.health ?? slurmdHealth(options.node);
  return new Promise((resolve) => {
    const socket: Socket = connect({ host: options.host, port: options.port });
    socket.setNoDelay(true);
    let ended = false;
    let beat: ReturnType<typeof setInterval> | undefined;
    const send = (message: AgentMessage): void => {
      if (!socket.destroyed) socket.write(line(message));
    };
    // interrupted (SIGTERM from Slurm, or by hand): this process ends its programs and starts none (interrupt.ts), so
    // the driver is told at once, as of a node that failed, and sends its attempts to the other nodes; else each
    // attempt sent here meanwhile would fail, and use up its retries, in the seconds the ending takes
    const unhook = whenInterrupted(async () => {
      send({ t: 'unwell', reason: 'its agent was interrupted (SIGTERM, SIGINT or SIGHUP) and is ending its programs' });
    });
    const end = (code: number, why: string): void => {
      if (ended) return;
      ended = true;
      unhook();
      if (beat !== undefined) clearInterval(beat);
      log(`${name}: ${why}`);
      host.stopAll(new TaskCancelledError(`${name} stopped: ${why}`));
      void host.close().finally(() => {
        socket.end();
        resolve(code);
      });
    };
    socket.once('connect', () => {
      send({
        t: 'hello',
        token: options.token,
        node: options.node,
        pid: process.pid,
        cores: options.cores,
        memoryMB: options.memoryMB,
        gpus: options.gpus,
      });
      let checking = false;
      beat = setInterval(() => {
        send({ t: 'beat' });
        if (checking) return;
        checking = true;
        void health()
          .then((problem) => {
            if (problem === undefined || ended) return;
            send({ t: 'unwell', reason: problem });
            end(1, `the node is unwell: ${problem}`);
          })
          .finally(() => (checking = false));
      }, HEARTBEAT_MS);
      log(`${name}: connected to the driver at ${options.host}:${options.port}; ${options.cores} cores`);
    });
    const run = (key: string, raw: unknown): void => {
      let data: AttemptData;
      try {
        data = decodeWith(AttemptData, raw, `the attempt ${key} sent to ${name}`);
      } catch (err) {
        send(doneMessage(key, { error: recordError(err) }));
        return;
      }
      host.execute(data, key).then(
        (value) => send(doneMessage(key, { value })),
        (err: unknown) => {
          // withdrawn: the driver is told so by the answer to its `withdraw`, and runs it elsewhere
          if (!(err instanceof AttemptWithdrawn)) send(doneMessage(key, { error: recordError(err) }));
        },
      );
    };
    const read = lineReader(
      (text) => {
        let message: DriverMessage;
        try {
          message = decodeLine(DriverMessage, text, 'the driver');
        } catch (err) {
          end(2, (err as Error).message);
          return;
        }
        if (message.t === 'run') run(message.key, message.data);
        else if (message.t === 'stop') host.stop(message.key, reviveError(message.reason));
        else if (message.t === 'withdraw') {
          const { key } = message;
          void host.withdraw(key).then((ok) => send({ t: 'withdrawn', key, ok }));
        } else end(0, 'released by the driver');
      },
      (err) => end(2, err.message),
    );
    socket.on('data', read);
    socket.on('error', (err) => end(1, `the connection to the driver failed: ${err.message}`));
    socket.on('close', () => end(1, 'the driver has gone'));
  });
}

/**
 * The default health check: this node's slurmd accepts a connection on its address and port (asked of `scontrol`
 * once). Two failures in a row make the node unwell (one may be a busy moment). None if scontrol cannot tell.
 */
export function slurmdHealth(node: string): () => Promise<string | undefined> {
  let where: Promise<{ host: string; port: number } | undefined> | undefined;
  let failures = 0;
  return async () => {
    where ??= new Promise((resolve) => {
      execFile('scontrol', ['show', 'node', '-o', node], { encoding: 'utf8', timeout: 10_000 }, (err, out) => {
        const addr = /\bNodeAddr=(\S+)/.exec(out ?? '')?.[1];
        const port = Number(/\bPort=(\d+)/.exec(out ?? '')?.[1]);
        resolve(err === null && addr !== undefined && port > 0 ? { host: addr, port } : undefined);
      });
    });
    const target = await where;
    if (target === undefined) return undefined;
    const answers = await new Promise<boolean>((resolve) => {
      const probe = connect(target);
      const timer = setTimeout(() => probe.destroy(), HEARTBEAT_MS / 2);
      probe.once('connect', () => resolve(true));
      probe.once('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
      probe.once('connect', () => probe.end());
      probe.on('error', () => undefined);
    });
    failures = answers ? 0 : failures + 1;
    return failures >= 2 ? `its slurmd does not answer at ${target.host}:${target.port}` : undefined;
  };
}
