/**
 * `slurm({ mode: 'agents' })`, the default: once the allocation is granted, one agent per node (`agent.ts`) is started
 * as one job step, and every attempt that fits one node is sent to the agent of a node where it fits (`agents.ts`).
 * What does not fit one node (an MPI program whose ranks need several) is left to the per-step path.
 */
import { defer, from, switchMap, type Observable } from 'rxjs';
import { footprint, type Footprint } from '../../task/requirements';
import type { Job } from '../backend';
import { rootEnv } from '../executable/mpi';
import type { AttemptData } from '../remote/attempt-data';
import { LAYOUT_VARIABLE, formatLayout } from './agent-protocol';
import type { Allocation } from './allocation';
import { AgentPool } from './agents';
import { nodeEntryCommand } from './plans';
import type { AllocatedNode, Placement } from './placement';
import { srunEnv } from './steps';

export interface AgentModeContext {
  readonly where: string;
  readonly address: string;
  readonly modules: readonly string[];
  /** the Node executable on the nodes */
  readonly node: string;
  readonly hostCwd: string;
  readonly workflowDir: string;
  readonly grace: number;
  readonly workerEnv: Readonly<Record<string, string>>;
  /** MB of memory a node with this many of the allocation's cores has (Infinity: not accounted) */
  readonly memoryOf: (cores: number) => number;
  readonly log: { info(line: string): void; warn(line: string): void };
  /** the allocation's nodes and its CPUs on each (asked of Slurm once) */
  readonly nodes: () => Promise<readonly AllocatedNode[]>;
}

export class AgentMode {
  private readonly pool: AgentPool;
  private started: Promise<void> | undefined;

  constructor(
    private readonly alloc: Allocation,
    private readonly ctx: AgentModeContext,
  ) {
    this.pool = new AgentPool({ where: ctx.where, host: ctx.address, log: ctx.log, memoryOf: ctx.memoryOf });
  }

  /** The agents, started once (on the first attempt, when the allocation is granted). */
  private ready(): Promise<void> {
    this.started ??= (async () => {
      const jobId = this.alloc.usable() ?? (await this.alloc.ready());
      const layout = new Map((await this.ctx.nodes()).map((n) => [n.name, n.cpus]));
      const env = srunEnv({ ...rootEnv(), ...this.ctx.workerEnv, [LAYOUT_VARIABLE]: formatLayout(layout) });
      const command = agentCommand(this.ctx.modules, this.ctx.node);
      await this.pool.start(jobId, layout, command, env, this.ctx.hostCwd);
    })();
    return this.started;
  }

  /** The largest number of cores one live node offers (Infinity before the agents are up: not known yet). */
  widestNode(): number {
    const nodes = this.pool.nodes();
    return nodes.length === 0 ? Infinity : Math.max(...nodes.map((n) => n.capacity.cores));
  }

  /** One attempt on the agent of a node where it fits. */
  run(job: Job): Observable<unknown> {
    const need: Footprint = footprint(job.requirements);
    return defer(() => from(this.ready())).pipe(
      switchMap(() => {
        const data: AttemptData = {
          kind: job.kind,
          name: job.name,
          args: job.args as unknown[], // (read only: it is sent, not changed)
          id: job.id,
          attempt: job.attempt,
          requirements: { ...job.requirements, env: { ...this.ctx.workerEnv, ...job.requirements.env } },
          ...(job.label !== undefined && { label: job.label }),
          ...(job.version !== undefined && { version: job.version }),
          ...(job.kind === 'executable' && {
            place: {
              workflowDir: this.ctx.workflowDir,
              hostCwd: this.ctx.hostCwd,
              staging: 'copy' as const,
              grace: this.ctx.grace,
            },
          }),
        };
        const prefer = this.pool.preferredNode(job.args, this.ctx.workflowDir);
        const queueable =
          need.cores === 1 && need.gpus === 0 && need.memoryMB === 0 && job.requirements.walltime === undefined;
        return this.pool.attempt(need, `${job.id}.${job.attempt}`, data, prefer, queueable);
      }),
    );
  }

  /**
   * A task wider than a node (or an MPI program srun launches) as a job step of its own: once nodes have its cores
   * free, the agents leave them to it, and `step` runs it pinned there (`placement`).
   */
  wide(job: Job, step: (placement: Placement) => Observable<unknown>): Observable<unknown> {
    const need = footprint(job.requirements);
    return defer(() => from(this.ready())).pipe(
      switchMap(() => this.pool.wide(job.requirements.ranks ?? 1, need, step)),
    );
  }

  /** Lets the agents go and waits for their step to end. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/** How the agents' step starts the agent. */
export const agentCommand = (modules: readonly string[], node: string): string[] =>
  nodeEntryCommand('agent-entry', modules, node, 'agents');
