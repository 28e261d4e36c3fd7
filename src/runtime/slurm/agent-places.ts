/**
 * Where the attempts of a `slurm()` allocation's agents go (the driver's books, `AgentPool`'s other half): what each
 * node has free, the attempts waiting for a node in line (first come, first served: nothing overtakes the first, so a
 * wide one is not starved), one-core attempts handed to a node ahead of a free core, and those moved to a node whose
 * core frees (`rebalance`). The connections to the agents, and what they say, are `agents.ts`.
 */
import type { Socket } from 'node:net';
import type { Subscriber } from 'rxjs';
import { NodeFailureError, UnsatisfiableRequirementsError } from '../../errors';
import type { Footprint } from '../../task/requirements';

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

/** An attempt sent to a node's agent. */
export interface Running {
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
  /**
   * Set once the driver stopped it: it still holds its part of the node until the agent says it has ended (its
   * process tree gone, `done`), or withdrew it; then this is called.
   */
  ended?: () => void;
}

/** The nodes an attempt takes, and what of each. */
export type Picked = ReadonlyArray<readonly [NodeAgent, Footprint]>;

interface Waiting {
  /** the nodes it would take now, and what of each; undefined while it does not fit */
  readonly pick: () => Picked | undefined;
  /** why it can never be placed on the live nodes, or undefined */
  readonly never: () => Error | undefined;
  readonly go: (picked: Picked) => void;
  readonly fail: (err: Error) => void;
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

export interface AgentPlacesOptions {
  /** every agent that said hello, by node, lost ones included (the pool's map: it adds to it) */
  readonly agents: ReadonlyMap<string, NodeAgent>;
  /** true while the agents are still coming: nothing can be said never to fit yet */
  readonly starting: () => boolean;
  /** asks `agent` to withdraw the attempt `key` (it answers: `withdrawn`) */
  readonly withdraw: (agent: NodeAgent, key: string) => void;
}

export class AgentPlaces {
  private readonly waiting: Waiting[] = [];
  /** the node each executable task's successful attempt ran on (its files are there): by task id */
  private readonly producedOn = new Map<string, string>();
  /** attempts the driver asked their agent to withdraw (`rebalance`), until it answers: the agent, by key */
  private readonly withdrawing = new Map<string, NodeAgent>();
  private closed = false;

  constructor(private readonly options: AgentPlacesOptions) {}

  /** The live nodes. */
  live(): NodeAgent[] {
    return [...this.options.agents.values()].filter((a) => a.lost === undefined);
  }

  /**
   * Waits in line (`first`: at its head) until `pick` finds its nodes, and takes what it needs of them; fails at once
   * (or when nodes are lost) if it can never be placed.
   */
  acquire(
    pick: Waiting['pick'],
    never: Waiting['never'],
    first = false,
  ): { placed: Promise<Picked>; withdraw(): void } {
    let entry: Waiting | undefined;
    const placed = new Promise<Picked>((go, fail) => {
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

  /**
   * The node for a task of one node: the preferred one if it has the cores free now, else the one with most free.
   * `queueable`: it may go to a node ahead of a free core.
   */
  oneNode(need: Footprint, queueable: boolean, prefer: string | undefined): Waiting['pick'] {
    return () => {
      const preferred = prefer !== undefined ? this.options.agents.get(prefer) : undefined;
      // the node with its files, if a core is free there now (else a free core elsewhere beats waiting there)
      if (preferred !== undefined && preferred.lost === undefined && fits(need, preferred.free))
        return [[preferred, need]];
      const ok = (a: NodeAgent): boolean => fits(need, a.free) || (queueable && aheadFits(a));
      let best: NodeAgent | undefined;
      for (const a of this.live()) if (ok(a) && (best === undefined || a.free.cores > best.free.cores)) best = a;
      return best !== undefined ? [[best, need]] : undefined;
    };
  }

  /**
   * The nodes for a task of `ranks` ranks spread over as few nodes as hold it (the same ranks on each, in block order),
   * of `of` (each node's free cores, or its capacity): undefined if none do.
   */
  spread(ranks: number, need: Footprint, of: 'free' | 'capacity'): Array<readonly [NodeAgent, Footprint]> | undefined {
    const live = this.live();
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

  /** Why `need` can never run on the live nodes, or undefined. */
  neverFits(need: Footprint): Error | undefined {
    if (this.live().some((a) => fits(need, a.capacity))) return undefined;
    const gpus = need.gpus > 0 ? ` and ${need.gpus} GPUs` : '';
    return this.cannot(`it needs ${need.cores} cores${gpus} on one node`);
  }

  /** The error for what the live nodes can never hold: `what`, and what they offer (none left: `NodeFailureError`). */
  cannot(what: string): Error | undefined {
    if (this.options.starting()) return undefined; // the agents are still coming
    const live = this.live();
    const offered =
      live
        .sort((a, b) => a.node.localeCompare(b.node, 'en', { numeric: true }))
        .map((a) => `${a.node}: ${a.capacity.cores} cores`)
        .join(', ') || 'no live node';
    const lostNodes = [...this.options.agents.values()].filter((a) => a.lost !== undefined).map((a) => a.node);
    const failed = lostNodes.length > 0 ? ` (failed: ${lostNodes.join(', ')})` : '';
    const msg = `${what}, but the live nodes of the allocation offer ${offered}${failed}`;
    return lostNodes.length > 0 && live.length === 0
      ? new NodeFailureError(msg, lostNodes.join(','))
      : new UnsatisfiableRequirementsError(msg);
  }

  /** What an attempt held of `agent` is free again; the next in line may take it. */
  release(agent: NodeAgent, need: Footprint): void {
    agent.free.cores += need.cores;
    agent.free.gpus += need.gpus;
    agent.free.memoryMB += need.memoryMB;
    this.dispatch();
  }

  /** What a wide attempt held of its live nodes is free again. */
  giveBack(picked: Picked): void {
    for (const [agent, need] of picked) if (agent.lost === undefined) this.release(agent, need);
  }

  /**
   * Places waiting attempts, first come first served (nothing overtakes the first, so a wide one is not starved). One
   * core attempts may be placed ahead of a free core (`aheadFits`): a node's free cores then go below zero.
   */
  dispatch(): void {
    while (this.waiting.length > 0) {
      const w = this.waiting[0]!;
      const picked = w.pick();
      if (picked === undefined) return;
      this.waiting.shift();
      for (const [agent, need] of picked) {
        agent.free.cores -= need.cores;
        agent.free.gpus -= need.gpus;
        agent.free.memoryMB -= need.memoryMB;
      }
      w.go(picked);
    }
    this.rebalance();
  }

  /**
   * While nothing waits here and a node has a core free, asks the agent of a node where attempts wait for a core (sent
   * ahead) to withdraw the last one sent there, to place it again: so no attempt waits behind a long one while a core
   * idles elsewhere. One request per free core at a time; the agent answers `withdrawn` (see `withdrawn`).
   */
  rebalance(): void {
    if (this.waiting.length > 0 || this.closed) return;
    const live = this.live();
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
      this.options.withdraw(from, key);
      spare--;
    }
  }

  /**
   * The agent's answer to a withdrawal of `key`: withdrawn before it started (`ok`), the attempt is placed again
   * (first in line: it waited longest) and its core on that node is free; else it runs there.
   */
  withdrawn(agent: NodeAgent, key: string, ok: boolean): void {
    this.withdrawing.delete(key);
    const run = agent.running.get(key);
    if (run === undefined) return; // done, or stopped, meanwhile
    if (!ok) {
      run.ahead = false;
      this.rebalance();
      return;
    }
    agent.running.delete(key);
    // stopped meanwhile: withdrawn, it never started, and is not placed again
    if (run.ended !== undefined) run.ended();
    else run.replace();
    this.release(agent, run.need);
  }

  /** The attempt `key` ended or was stopped: no answer to a withdrawal of it is waited for. */
  forget(key: string): void {
    this.withdrawing.delete(key);
  }

  /** A node was lost: what waits for a node that no live node can hold fails now. */
  lost(agent: NodeAgent): void {
    for (const key of agent.running.keys()) this.withdrawing.delete(key);
    for (const w of [...this.waiting]) {
      const problem = w.never();
      if (problem !== undefined) {
        this.waiting.splice(this.waiting.indexOf(w), 1);
        w.fail(problem);
      }
    }
  }

  /** An executable task's attempt succeeded on `node`: its files are there. */
  produced(task: string, node: string): void {
    this.producedOn.set(task, node);
  }

  /** The node that holds files of an upstream task named in `args` (a path under its working directory), if any. */
  preferredNode(args: readonly unknown[], workflowDir: string): string | undefined {
    if (this.producedOn.size === 0) return undefined;
    const text = JSON.stringify(args);
    const marker = `${workflowDir}/tasks/`;
    for (let at = text.indexOf(marker); at >= 0; at = text.indexOf(marker, at + 1)) {
      const id = /^[^/"\\]+/.exec(text.slice(at + marker.length, at + marker.length + 200))?.[0];
      const node = id !== undefined ? this.producedOn.get(id) : undefined;
      if (node !== undefined && this.options.agents.get(node)?.lost === undefined) return node;
    }
    return undefined;
  }

  /** The allocation is being released: what waits fails, and nothing more is moved. */
  close(): void {
    this.closed = true;
    for (const w of this.waiting.splice(0)) w.fail(new Error('the allocation is being released'));
  }
}

/** A one-core attempt may go to a node whose cores are all taken while fewer than AHEAD_PER_CORE per core wait. */
const aheadFits = (a: NodeAgent): boolean => a.free.cores > -AHEAD_PER_CORE * a.capacity.cores;

function fits(need: Footprint, free: { cores: number; gpus: number; memoryMB: number }): boolean {
  return need.cores <= free.cores && need.gpus <= free.gpus && need.memoryMB <= free.memoryMB;
}
