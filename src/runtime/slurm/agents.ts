/**
 * The driver's side of a `slurm()` allocation's agents: the socket they connect to (refusing any peer without the
 * allocation's token), the job step that starts one agent per node, what they say, and what happens when a node
 * fails: its attempts fail with `NodeFailureError` at once (retried elsewhere when the task's `retries` allow) and
 * nothing more is placed there. Where each attempt goes (a node where it fits, preferring the one that holds its input
 * files; ahead of a free core; moved to a node whose core frees) is `agent-places.ts`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Observable, type Subscription } from 'rxjs';
import { AgentProtocolError, NodeFailureError, SlurmAllocationError, TaskCancelledError } from '../../errors';
import { recordError, reviveError } from '../../recorded-error';
import type { Footprint } from '../../task/requirements';
import type { AttemptData } from '../remote/attempt-data';
import {
  ADDRESS_VARIABLE,
  AgentMessage,
  HEARTBEATS_MISSED,
  HEARTBEAT_MS,
  TOKEN_VARIABLE,
  decodeLine,
  line,
  lineReader,
  tokenMatches,
  type Hello,
  type Layout,
} from './agent-protocol';
import { AgentPlaces, type NodeAgent, type Picked } from './agent-places';
import type { Placement } from './placement';

/** ms an agent has, once its socket is open, to say hello with the token */
const HELLO_MS = 10_000;

export interface AgentPoolOptions {
  /** `executor <id>`, for messages */
  readonly where: string;
  /** the address the agents connect to (this host, as the nodes reach it) */
  readonly host: string;
  /** where it says what happens to agents: connections (info), refused peers and lost nodes (warn) */
  readonly log: { info(line: string): void; warn(line: string): void };
  /** the program that starts the agents' step @default 'srun' (tests give a stand-in that runs them here) */
  readonly srun?: string;
  /** MB of memory a node with this many of the allocation's cores has (Infinity: memory is not accounted) */
  readonly memoryOf: (cores: number) => number;
}

export class AgentPool {
  private readonly token = randomBytes(32).toString('hex');
  private readonly server: Server;
  private readonly agents = new Map<string, NodeAgent>();
  private readonly places: AgentPlaces;
  private readonly listening: Promise<number>;
  private step: ChildProcess | undefined;
  private stepErr = '';
  private expected = 0;
  private onAll: (() => void) | undefined;
  private onFail: ((err: Error) => void) | undefined;
  private readonly watch: ReturnType<typeof setInterval>;
  private lastCheck = Date.now();
  private closed = false;
  private layout: Layout = new Map();

  constructor(private readonly options: AgentPoolOptions) {
    this.places = new AgentPlaces({
      agents: this.agents,
      starting: () => this.onAll !== undefined,
      withdraw: (agent, key) => agent.socket.write(line({ t: 'withdraw', key })),
    });
    this.server = createServer((socket) => this.accept(socket));
    this.listening = new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(0, options.host, () => resolve((this.server.address() as AddressInfo).port));
    });
    this.listening.catch(() => undefined); // (told by start)
    this.server.unref();
    this.watch = setInterval(() => this.checkBeats(), HEARTBEAT_MS);
    this.watch.unref();
  }

  /**
   * Starts one agent per node of the granted allocation `jobId` (`nodes` of them) as one job step, and resolves once
   * all have said hello. Rejects with `SlurmAllocationError` (naming the end of the step's stderr) if the step ends
   * first, or if they do not all connect within `timeoutMs`.
   */
  async start(
    jobId: string,
    layout: Layout,
    command: readonly string[],
    env: NodeJS.ProcessEnv,
    cwd: string,
    timeoutMs = 60_000,
  ): Promise<void> {
    let port: number;
    try {
      port = await this.listening;
    } catch (err) {
      throw new SlurmAllocationError(
        `${this.options.where}: the agents' socket could not listen on ${this.options.host} ` +
          `(${(err as Error).message}); give slurm({ address }) an address of this host that the nodes reach`,
        jobId,
        null,
      );
    }
    const nodes = layout.size;
    this.layout = layout;
    this.expected = nodes;
    const args = [
      `--jobid=${jobId}`,
      '--overlap',
      `--nodes=${nodes}`,
      `--ntasks=${nodes}`,
      '--ntasks-per-node=1',
      '--cpus-per-task=1',
      '--kill-on-bad-exit=0',
      '--job-name=scalems-agents',
      '--chdir',
      cwd,
      ...command,
    ];
    const all = new Promise<void>((resolve, reject) => {
      this.onAll = resolve;
      this.onFail = reject;
    });
    const step = spawn(this.options.srun ?? 'srun', args, {
      stdio: ['ignore', 'ignore', 'pipe'],
      env: { ...env, [ADDRESS_VARIABLE]: `${this.options.host}:${port}`, [TOKEN_VARIABLE]: this.token },
    });
    this.step = step;
    step.stderr!.setEncoding('utf8');
    step.stderr!.on('data', (chunk: string) => {
      this.stepErr = (this.stepErr + chunk).slice(-8192);
    });
    step.once('error', (err) => this.failStart(`srun could not be started: ${err.message}`, jobId));
    step.once('close', (code) => {
      this.step = undefined;
      if (this.onAll !== undefined) this.failStart(`the agents' job step ended (exit code ${code})`, jobId);
      else if (!this.closed) for (const a of this.agents.values()) this.lose(a, `its job step ended (exit ${code})`);
    });
    const timer = setTimeout(
      () => this.failStart(`not every agent connected within ${timeoutMs / 1000} s (${this.agents.size} did)`, jobId),
      timeoutMs,
    );
    try {
      if (this.agents.size >= nodes) this.allHere();
      await all;
    } finally {
      clearTimeout(timer);
    }
  }

  private failStart(why: string, jobId: string): void {
    const fail = this.onFail;
    this.onAll = this.onFail = undefined;
    const said = this.stepErr.trim() !== '' ? `; its stderr ends:\n${this.stepErr.trim().slice(-2000)}` : '';
    fail?.(
      new SlurmAllocationError(`${this.options.where}: the Slurm agents did not start: ${why}${said}`, jobId, null),
    );
  }

  private allHere(): void {
    const go = this.onAll;
    this.onAll = this.onFail = undefined;
    // from now on only running attempts keep this program alive (their agents' sockets: see `busy`), as a program
    // with no task left may end without shutting the executor down: the allocation and its agents then go with it
    this.step?.unref();
    (this.step?.stderr as Socket | null | undefined)?.unref();
    go?.();
  }

  /** Keeps this program alive while the agent runs attempts (its socket is ref'd), not while it idles. */
  private busy(agent: NodeAgent): void {
    if (agent.running.size > 0) agent.socket.ref();
    else agent.socket.unref();
  }

  /** Where the agents connect (once listening). */
  async address(): Promise<{ host: string; port: number }> {
    return { host: this.options.host, port: await this.listening };
  }

  /** The live nodes and what each offers. */
  nodes(): ReadonlyArray<Pick<NodeAgent, 'node' | 'pid' | 'capacity' | 'free'>> {
    return this.places.live();
  }

  private accept(socket: Socket): void {
    socket.setNoDelay(true);
    const peer = `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`;
    let agent: NodeAgent | undefined;
    const refuse = (why: string): void => {
      const err = new AgentProtocolError(`refused a connection to the agents' socket from ${peer}: ${why}`);
      this.options.log.warn(`${this.options.where}: ${err.name}: ${err.message}`);
      socket.destroy();
    };
    const hello = setTimeout(() => refuse('no hello within 10 s'), HELLO_MS);
    hello.unref();
    const read = lineReader(
      (text) => {
        let message: AgentMessage;
        try {
          message = decodeLine(AgentMessage, text, agent === undefined ? `a peer (${peer})` : `agent ${agent.node}`);
        } catch (err) {
          if (agent === undefined) refuse((err as Error).message);
          else this.lose(agent, (err as Error).message);
          return;
        }
        if (agent === undefined) {
          clearTimeout(hello);
          if (message.t !== 'hello') return refuse(`it spoke (${message.t}) before saying hello`);
          if (!tokenMatches(message.token, this.token)) return refuse('it did not present the allocation token');
          agent = this.welcome(message, socket);
          return;
        }
        agent.lastHeard = Date.now();
        if (message.t === 'done') this.done(agent, message);
        else if (message.t === 'withdrawn') this.withdrawn(agent, message);
        else if (message.t === 'unwell') this.lose(agent, message.reason);
      },
      (err) => (agent === undefined ? refuse(err.message) : this.lose(agent, err.message)),
    );
    socket.on('data', read);
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(hello);
      if (agent !== undefined) this.lose(agent, 'its connection closed (the agent died?)');
    });
  }

  private welcome(hello: Hello, socket: Socket): NodeAgent | undefined {
    const old = this.agents.get(hello.node);
    if (old !== undefined && old.lost === undefined) {
      this.options.log.warn(`${this.options.where}: a second agent for node ${hello.node} was refused`);
      socket.destroy();
      return undefined;
    }
    // what Slurm granted on the node, not what the agent says
    const cores = this.layout.get(hello.node) ?? hello.cores;
    const capacity = { cores, gpus: hello.gpus, memoryMB: this.options.memoryOf(cores) };
    const agent: NodeAgent = {
      node: hello.node,
      pid: hello.pid,
      capacity,
      free: { ...capacity },
      running: new Map(),
      lost: undefined,
      socket,
      lastHeard: Date.now(),
    };
    this.agents.set(hello.node, agent);
    this.busy(agent);
    this.options.log.info(`${this.options.where}: agent on node ${hello.node} (pid ${hello.pid}), ${cores} cores`);
    if (this.onAll !== undefined && this.nodes().length >= this.expected) this.allHere();
    this.places.dispatch();
    return agent;
  }

  private done(agent: NodeAgent, message: Extract<AgentMessage, { t: 'done' }>): void {
    const run = agent.running.get(message.key);
    if (run === undefined) return; // stopped (or withdrawn) here meanwhile
    agent.running.delete(message.key);
    this.busy(agent);
    const { subscriber, producer, need } = run;
    // free before the outcome is told: a task it makes ready may then go to this node (where its files are)
    this.places.release(agent, need);
    if (run.ended !== undefined) return run.ended(); // stopped here: it has now ended there
    if (message.ok) {
      if (producer !== undefined) this.places.produced(producer, agent.node);
      subscriber.next(message.value);
      subscriber.complete();
    } else {
      subscriber.error(
        reviveError(
          message.error ?? { name: 'Error', message: `agent ${agent.node} sent no error for ${message.key}` },
        ),
      );
    }
  }

  /** The agent's answer to `withdraw` (`AgentPlaces.rebalance`): the attempt is placed again, or it runs there. */
  private withdrawn(agent: NodeAgent, message: Extract<AgentMessage, { t: 'withdrawn' }>): void {
    this.places.withdrawn(agent, message.key, message.ok);
    this.busy(agent);
  }

  private checkBeats(): void {
    const now = Date.now();
    // This program's own event loop was held up (a long synchronous stretch): the beats that came meanwhile wait
    // unread in the sockets, so silence says nothing of the agents. Count from now.
    const stalled = now - this.lastCheck > 2 * HEARTBEAT_MS;
    this.lastCheck = now;
    if (stalled) {
      for (const agent of this.agents.values()) agent.lastHeard = now;
      return;
    }
    const late = now - HEARTBEAT_MS * HEARTBEATS_MISSED;
    for (const agent of this.agents.values()) {
      if (agent.lost === undefined && agent.lastHeard < late)
        this.lose(agent, `it sent no heartbeat for ${HEARTBEATS_MISSED} s`);
    }
  }

  /** A node failed: its attempts fail with `NodeFailureError`, nothing more goes there. */
  private lose(agent: NodeAgent, why: string): void {
    if (agent.lost !== undefined || this.closed) return;
    agent.lost = why;
    agent.socket.destroy();
    this.options.log.warn(`${this.options.where}: node ${agent.node} failed: ${why}`);
    const running = [...agent.running.values()];
    this.places.lost(agent);
    agent.running.clear();
    for (const { subscriber, ended } of running) {
      ended?.();
      subscriber.error(
        new NodeFailureError(
          `node ${agent.node} of the allocation failed while the task ran there: ${why}`,
          agent.node,
        ),
      );
    }
  }

  /** The node that holds files of an upstream task named in `args` (a path under its working directory), if any. */
  preferredNode(args: readonly unknown[], workflowDir: string): string | undefined {
    return this.places.preferredNode(args, workflowDir);
  }

  /**
   * One attempt on a node: subscribing waits for a node where `need` fits, then sends it there; unsubscribing stops it
   * there (or withdraws it from the wait). Emits the value and completes, or errors with the attempt's failure.
   */
  attempt(
    need: Footprint,
    key: string,
    data: AttemptData,
    prefer: string | undefined,
    queueable = false,
    holdUntil?: (ended: Promise<unknown>) => void,
  ): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      let agent: NodeAgent | undefined;
      let stopped = false;
      let withdraw = (): void => undefined;
      const producer = data.kind === 'executable' ? data.id : undefined;
      /** waits for a node, and sends it there (`again`: withdrawn from another node, it goes first) */
      const place = (again: boolean): void => {
        agent = undefined;
        const places = this.places;
        const acquired = places.acquire(places.oneNode(need, queueable, prefer), () => places.neverFits(need), again);
        withdraw = acquired.withdraw;
        acquired.placed.then(
          ([[a]]) => {
            if (stopped) return this.places.release(a!, need);
            agent = a!;
            // taken from it already: below zero, it waits there for a core
            const ahead = a!.free.cores < 0;
            a!.running.set(key, { subscriber, need, producer, ahead, replace: () => place(true) });
            this.busy(a!);
            a!.socket.write(line({ t: 'run', key, data }));
          },
          (err: unknown) => {
            if (!stopped) subscriber.error(err);
          },
        );
      };
      place(false);
      return () => {
        stopped = true;
        this.places.forget(key);
        if (agent === undefined) return withdraw();
        // still running there: stopped. What it holds of the node is freed once the agent says it has ended (`done`,
        // with its process tree gone), or withdrew it, or the node is lost; the executor holds its cores until then
        const run = agent.running.get(key);
        if (run === undefined || run.ended !== undefined || agent.lost !== undefined) return;
        const reason = recordError(new TaskCancelledError(`stopped by the driver (${this.options.where})`));
        agent.socket.write(line({ t: 'stop', key, reason }));
        if (this.closed) {
          agent.running.delete(key);
          this.busy(agent);
          this.places.release(agent, need);
          return;
        }
        run.ahead = false;
        holdUntil?.(new Promise<void>((resolve) => (run.ended = resolve)));
        run.ended ??= () => undefined;
      };
    });
  }

  /**
   * A task of `ranks` ranks that is a job step of its own: subscribing waits until nodes have its cores free, takes
   * them from what the agents may use, and subscribes to `step` with the placement; they are given back when it ends.
   * A step stopped while it runs says, through the `holdUntil` it is given, when Slurm has ended it: its nodes' places
   * are given back then, not at the stop, so no attempt of the agents starts there beside the step still ending.
   */
  wide(
    ranks: number,
    need: Footprint,
    step: (placement: Placement, holdUntil: (ended: Promise<unknown>) => void) => Observable<unknown>,
  ): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      let held: Picked | undefined;
      let stopped = false;
      let work: Subscription | undefined;
      let ending: Promise<unknown> | undefined;
      const places = this.places;
      const never = (): Error | undefined =>
        places.spread(ranks, need, 'capacity') !== undefined
          ? undefined
          : places.cannot(`it needs ${need.cores} cores for ${ranks} ranks spread over nodes`);
      const { placed, withdraw } = places.acquire(() => places.spread(ranks, need, 'free'), never);
      placed.then(
        (picked) => {
          held = picked;
          if (stopped) return places.giveBack(picked);
          const perNode = Math.ceil(ranks / picked.length);
          const placement = { nodes: picked.map(([a]) => a.node), ranksPerNode: perNode };
          // its own subscription (not `subscriber`'s: its teardown would then run after this one's, too late to say
          // when the step ends)
          work = step(placement, (ended) => (ending = ended)).subscribe({
            next: (v) => subscriber.next(v),
            error: (e: unknown) => subscriber.error(e),
            complete: () => subscriber.complete(),
          });
        },
        (err: unknown) => {
          if (!stopped) subscriber.error(err);
        },
      );
      return () => {
        stopped = true;
        work?.unsubscribe();
        if (held === undefined) return withdraw();
        const picked = held;
        if (ending === undefined || this.closed) return places.giveBack(picked);
        const giveBack = (): void => {
          if (!this.closed) places.giveBack(picked);
        };
        ending.then(giveBack, giveBack);
      };
    });
  }

  /** Lets the agents go (they end their work and exit) and waits for their step to end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watch);
    // stopped attempts whose end was still to be told: nothing is placed any more
    for (const agent of this.agents.values()) for (const run of agent.running.values()) run.ended?.();
    this.places.close();
    for (const agent of this.agents.values()) if (agent.lost === undefined) agent.socket.end(line({ t: 'bye' }));
    const step = this.step;
    if (step !== undefined) {
      const gone = new Promise<void>((resolve) => step.once('close', () => resolve()));
      const kill = setTimeout(() => step.kill('SIGTERM'), 10_000);
      await gone;
      clearTimeout(kill);
    }
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
