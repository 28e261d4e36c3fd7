/**
 * The driver's side of a `slurm()` allocation's agents: the socket they connect to (refusing any peer without the
 * allocation's token), the job step that starts one agent per node, what each node offers and has free, where each
 * attempt goes (a node where it fits, preferring the one that holds its input files), and what happens when a node
 * fails: its attempts fail with `NodeFailureError` at once (retried elsewhere when the task's `retries` allow) and
 * nothing more is placed there.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import { Observable, type Subscriber, type Subscription } from 'rxjs';
import {
  AgentProtocolError,
  NodeFailureError,
  SlurmAllocationError,
  TaskCancelledError,
  UnsatisfiableRequirementsError,
} from '../../errors';
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
import type { Placement } from './placement';

/** ms an agent has, once its socket is open, to say hello with the token */
const HELLO_MS = 10_000;

/** One node's agent, as the driver sees it. */
export interface NodeAgent {
  readonly node: string;
  /** the agent's process id on its node */
  readonly pid: number;
  readonly capacity: Footprint;
  readonly free: { cores: number; gpus: number; memoryMB: number };
  /** attempts it runs, by key */
  readonly running: Map<string, Running>;
  /** why it can run nothing more, once it failed */
  lost: string | undefined;
  socket: Socket;
  lastHeard: number;
}

interface Running {
  readonly subscriber: Subscriber<unknown>;
  /** what it holds of its node */
  readonly need: Footprint;
  /** the task, when its files matter to later tasks (an executable) */
  readonly producer: string | undefined;
  /**
   * Sent ahead of a free core (it may still wait there, see `aheadFits`): it may be withdrawn to a node with a core
   * free (`rebalance`). False once the agent said it runs.
   */
  ahead: boolean;
  /** places it again, on another node: the agent withdrew it before it started */
  readonly replace: () => void;
}

interface Waiting {
  /** the nodes it would take now, and what of each; undefined while it does not fit */
  readonly pick: () => ReadonlyArray<readonly [NodeAgent, Footprint]> | undefined;
  /** why it can never be placed on the live nodes, or undefined */
  readonly never: () => Error | undefined;
  readonly go: (picked: ReadonlyArray<readonly [NodeAgent, Footprint]>) => void;
  readonly fail: (err: Error) => void;
}

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
  private readonly waiting: Waiting[] = [];
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
  /** the node each executable task's successful attempt ran on (its files are there): by task id */
  private readonly producedOn = new Map<string, string>();
  /** attempts the driver asked their agent to withdraw (`rebalance`), until it answers: the agent, by key */
  private readonly withdrawing = new Map<string, NodeAgent>();

  constructor(private readonly options: AgentPoolOptions) {
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
    return [...this.agents.values()].filter((a) => a.lost === undefined);
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
    this.dispatch();
    return agent;
  }

  private done(agent: NodeAgent, message: Extract<AgentMessage, { t: 'done' }>): void {
    const run = agent.running.get(message.key);
    if (run === undefined) return; // stopped (or withdrawn) here meanwhile
    agent.running.delete(message.key);
    this.busy(agent);
    const { subscriber, producer, need } = run;
    // free before the outcome is told: a task it makes ready may then go to this node (where its files are)
    this.release(agent, need);
    if (message.ok) {
      if (producer !== undefined) this.producedOn.set(producer, agent.node);
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

  /**
   * The agent's answer to `withdraw`: withdrawn before it started, the attempt is placed again (first in line: it
   * waited longest), and its core on that node is free; else it runs there.
   */
  private withdrawn(agent: NodeAgent, message: Extract<AgentMessage, { t: 'withdrawn' }>): void {
    this.withdrawing.delete(message.key);
    const run = agent.running.get(message.key);
    if (run === undefined) return; // done, or stopped, meanwhile
    if (!message.ok) {
      run.ahead = false;
      this.rebalance();
      return;
    }
    agent.running.delete(message.key);
    this.busy(agent);
    run.replace();
    this.release(agent, run.need);
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
    for (const key of agent.running.keys()) this.withdrawing.delete(key);
    agent.running.clear();
    for (const { subscriber } of running) {
      subscriber.error(
        new NodeFailureError(
          `node ${agent.node} of the allocation failed while the task ran there: ${why}`,
          agent.node,
        ),
      );
    }
    // what waits for a node that no live node can hold fails now
    for (const w of [...this.waiting]) {
      const problem = w.never();
      if (problem !== undefined) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        w.fail(problem);
      }
    }
  }

  /** Why `need` can never run on the live nodes, or undefined. */
  private neverFits(need: Footprint): Error | undefined {
    if (this.nodes().some((a) => fits(need, a.capacity))) return undefined;
    const gpus = need.gpus > 0 ? ` and ${need.gpus} GPUs` : '';
    return this.cannot(`it needs ${need.cores} cores${gpus} on one node`);
  }

  /** The error for what the live nodes can never hold: `what`, and what they offer (none left: `NodeFailureError`). */
  private cannot(what: string): Error | undefined {
    if (this.onAll !== undefined) return undefined; // the agents are still coming
    const offered =
      [...this.nodes()]
        .sort((a, b) => a.node.localeCompare(b.node, 'en', { numeric: true }))
        .map((a) => `${a.node}: ${a.capacity.cores} cores`)
        .join(', ') || 'no live node';
    const lostNodes = [...this.agents.values()].filter((a) => a.lost !== undefined).map((a) => a.node);
    const failed = lostNodes.length > 0 ? ` (failed: ${lostNodes.join(', ')})` : '';
    const msg = `${what}, but the live nodes of the allocation offer ${offered}${failed}`;
    return lostNodes.length > 0 && this.nodes().length === 0
      ? new NodeFailureError(msg, lostNodes.join(','))
      : new UnsatisfiableRequirementsError(msg);
  }

  /**
   * Waits in line (`first`: at its head) until `waiting.pick` finds its nodes, and takes what it needs of them; fails
   * at once (or when nodes are lost) if it can never be placed.
   */
  private acquire(
    pick: Waiting['pick'],
    never: Waiting['never'],
    first = false,
  ): { placed: Promise<ReadonlyArray<readonly [NodeAgent, Footprint]>>; withdraw(): void } {
    let entry: Waiting | undefined;
    const placed = new Promise<ReadonlyArray<readonly [NodeAgent, Footprint]>>((go, fail) => {
      const problem = never();
      if (problem !== undefined) return fail(problem);
      entry = { pick, never, go, fail };
      if (first) this.waiting.unshift(entry);
      else this.waiting.push(entry);
      this.dispatch();
    });
    return {
      placed,
      withdraw: () => {
        const i = entry !== undefined ? this.waiting.indexOf(entry) : -1;
        if (i >= 0) this.waiting.splice(i, 1);
      },
    };
  }

  /** The node for a task of one node: the preferred one if it has the cores free now, else the one with most free. */
  private oneNode(need: Footprint, queueable: boolean, prefer: string | undefined): Waiting['pick'] {
    return () => {
      const preferred = prefer !== undefined ? this.agents.get(prefer) : undefined;
      // the node with its files, if a core is free there now (else a free core elsewhere beats waiting there)
      if (preferred !== undefined && preferred.lost === undefined && fits(need, preferred.free))
        return [[preferred, need]];
      const ok = (a: NodeAgent): boolean => fits(need, a.free) || (queueable && aheadFits(a));
      let best: NodeAgent | undefined;
      for (const a of this.nodes() as NodeAgent[])
        if (ok(a) && (best === undefined || a.free.cores > best.free.cores)) best = a;
      return best !== undefined ? [[best, need]] : undefined;
    };
  }

  /**
   * The nodes for a task of `ranks` ranks spread over as few nodes as hold it (the same ranks on each, in block order),
   * of `of` (each node's free cores, or its capacity): undefined if none do.
   */
  private spread(
    ranks: number,
    need: Footprint,
    of: 'free' | 'capacity',
  ): Array<readonly [NodeAgent, Footprint]> | undefined {
    const live = this.nodes() as NodeAgent[];
    for (let k = 1; k <= Math.min(ranks, live.length); k++) {
      const perNode = Math.ceil(ranks / k);
      const share: Footprint = {
        cores: (need.cores / ranks) * perNode,
        gpus: (need.gpus / ranks) * perNode,
        memoryMB: (need.memoryMB / ranks) * perNode,
      };
      const fitting = live.filter((a) => fits(share, a[of])).sort((a, b) => b[of].cores - a[of].cores);
      if (fitting.length >= k) return fitting.slice(0, k).map((a) => [a, share] as const);
    }
    return undefined;
  }

  private take(picked: ReadonlyArray<readonly [NodeAgent, Footprint]>): void {
    for (const [agent, need] of picked) {
      agent.free.cores -= need.cores;
      agent.free.gpus -= need.gpus;
      agent.free.memoryMB -= need.memoryMB;
    }
  }

  private release(agent: NodeAgent, need: Footprint): void {
    agent.free.cores += need.cores;
    agent.free.gpus += need.gpus;
    agent.free.memoryMB += need.memoryMB;
    this.dispatch();
  }

  /**
   * Places waiting attempts, first come first served (nothing overtakes the first, so a wide one is not starved). One
   * core attempts may be placed ahead of a free core (`aheadFits`): a node's free cores then go below zero.
   */
  private dispatch(): void {
    while (this.waiting.length > 0) {
      const w = this.waiting[0]!;
      const picked = w.pick();
      if (picked === undefined) return;
      this.waiting.shift();
      this.take(picked);
      w.go(picked);
    }
    this.rebalance();
  }

  /**
   * While nothing waits here and a node has a core free, asks the agent of a node where attempts wait for a core (sent
   * ahead) to withdraw the last one sent there, to place it again: so no attempt waits behind a long one while a core
   * idles elsewhere. One request per free core at a time; the agent answers `withdrawn`.
   */
  private rebalance(): void {
    if (this.waiting.length > 0 || this.closed) return;
    const live = this.nodes() as NodeAgent[];
    let spare = -this.withdrawing.size;
    for (const a of live) spare += Math.max(0, a.free.cores);
    while (spare > 0) {
      // the node where the most attempts wait that are not being withdrawn already, and the last one sent there
      let from: NodeAgent | undefined;
      let key: string | undefined;
      let most = 0;
      for (const a of live) {
        let asked = 0;
        for (const at of this.withdrawing.values()) if (at === a) asked++;
        const waiting = -a.free.cores - asked;
        if (waiting <= most) continue;
        let last: string | undefined;
        for (const [k, run] of a.running) if (run.ahead && !this.withdrawing.has(k)) last = k;
        if (last === undefined) continue;
        [from, key, most] = [a, last, waiting];
      }
      if (from === undefined || key === undefined) return;
      const { need } = from.running.get(key)!;
      if (!live.some((a) => a !== from && fits(need, a.free))) return;
      this.withdrawing.set(key, from);
      from.socket.write(line({ t: 'withdraw', key }));
      spare--;
    }
  }

  /** The node that holds files of an upstream task named in `args` (a path under its working directory), if any. */
  preferredNode(args: readonly unknown[], workflowDir: string): string | undefined {
    if (this.producedOn.size === 0) return undefined;
    const text = JSON.stringify(args);
    const marker = `${workflowDir}/tasks/`;
    for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + 1)) {
      const id = /^[^/"\\]+/.exec(text.slice(at + marker.length, at + marker.length + 200))?.[0];
      const node = id !== undefined ? this.producedOn.get(id) : undefined;
      if (node !== undefined && this.agents.get(node)?.lost === undefined) return node;
    }
    return undefined;
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
  ): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      let agent: NodeAgent | undefined;
      let stopped = false;
      let withdraw = (): void => undefined;
      const producer = data.kind === 'executable' ? data.id : undefined;
      /** waits for a node, and sends it there (`again`: withdrawn from another node, it goes first) */
      const place = (again: boolean): void => {
        agent = undefined;
        const pick = this.oneNode(need, queueable, prefer);
        const acquired = this.acquire(pick, () => this.neverFits(need), again);
        withdraw = acquired.withdraw;
        acquired.placed.then(
          ([[a]]) => {
            if (stopped) return this.release(a!, need);
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
        this.withdrawing.delete(key);
        if (agent === undefined) return withdraw();
        // still running there: stopped, and what it held is free (once done or lost, it was freed or is gone)
        if (agent.running.delete(key) && agent.lost === undefined) {
          this.busy(agent);
          const reason = recordError(new TaskCancelledError(`stopped by the driver (${this.options.where})`));
          agent.socket.write(line({ t: 'stop', key, reason }));
          this.release(agent, need);
        }
      };
    });
  }

  /**
   * A task of `ranks` ranks that is a job step of its own: subscribing waits until nodes have its cores free, takes
   * them from what the agents may use, and subscribes to `step` with the placement; they are given back when it ends.
   */
  wide(ranks: number, need: Footprint, step: (placement: Placement) => Observable<unknown>): Observable<unknown> {
    return new Observable<unknown>((subscriber) => {
      let held: ReadonlyArray<readonly [NodeAgent, Footprint]> | undefined;
      let stopped = false;
      let work: Subscription | undefined;
      const never = (): Error | undefined =>
        this.spread(ranks, need, 'capacity') !== undefined
          ? undefined
          : this.cannot(`it needs ${need.cores} cores for ${ranks} ranks spread over nodes`);
      const { placed, withdraw } = this.acquire(() => this.spread(ranks, need, 'free'), never);
      placed.then(
        (picked) => {
          held = picked;
          if (stopped) return this.giveBack(picked);
          const perNode = Math.ceil(ranks / picked.length);
          work = step({ nodes: picked.map(([a]) => a.node), ranksPerNode: perNode }).subscribe(subscriber);
        },
        (err: unknown) => {
          if (!stopped) subscriber.error(err);
        },
      );
      return () => {
        stopped = true;
        work?.unsubscribe();
        if (held === undefined) withdraw();
        else this.giveBack(held);
      };
    });
  }

  private giveBack(picked: ReadonlyArray<readonly [NodeAgent, Footprint]>): void {
    for (const [agent, need] of picked) if (agent.lost === undefined) this.release(agent, need);
  }

  /** Lets the agents go (they end their work and exit) and waits for their step to end. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    clearInterval(this.watch);
    for (const w of this.waiting.splice(0)) w.fail(new Error('the allocation is being released'));
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

/**
 * One-core attempts the driver hands a node's agent ahead of a free core, per core: the agent prepares them and starts
 * the next the moment a core frees (its gate, or its spawners), so that a core does not idle for a round trip to the
 * driver. One that waits while another node's core is free is withdrawn and placed there (`rebalance`). 500 `true`
 * programs on one 2-core node's agent against a spawn loop, roots on tmpfs, four runs each: without modules, 1 per
 * core 0.66-0.71 of the loop's rate (the machine 10-11% idle), 2 per core 0.72-0.77 (5-6% idle); with modules
 * (then a GO line per program) 0.54-0.63 and 0.62-0.64. Four per core gave what two did, in two runs.
 */
export const AHEAD_PER_CORE = 2;

/** A one-core attempt may go to a node whose cores are all taken while fewer than AHEAD_PER_CORE per core wait. */
const aheadFits = (a: NodeAgent): boolean => a.free.cores > -AHEAD_PER_CORE * a.capacity.cores;

function fits(need: Footprint, free: { cores: number; gpus: number; memoryMB: number }): boolean {
  return need.cores <= free.cores && need.gpus <= free.gpus && need.memoryMB <= free.memoryMB;
}
