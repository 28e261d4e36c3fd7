/**
 * `slurm({ mode: 'agents' })`, the default: once the allocation is granted, one agent per node (`agent.ts`) is started
 * as one job step, and every attempt that fits one node is sent to the agent of a node where it fits (`agents.ts`).
 * What does not fit one node (an MPI program whose ranks need several) is left to the per-step path.
 */
import { catchError, defer, from, switchMap, throwError, type Observable } from 'rxjs';
import { ExecutableFailedError, NodeFailureError, WorkerCrashedError } from '../../errors';
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
import type { ModuleDigests } from '../remote/modules';

export interface AgentModeContext {
  readonly where: string;
  readonly address: string;
  readonly modules: readonly string[];
  /** the modules' digests as the driver has them when the agents start (`moduleDigests`) */
  readonly digests: () => ModuleDigests;
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
      const command = agentCommand(this.ctx.modules, this.ctx.node, this.ctx.digests());
      await this.pool.start(jobId, layout, command, env, this.ctx.hostCwd);
    })();
    return this.started;
  }

  /**
   * One attempt, once the agents are up: on the agent of a node where it fits, or, when it fits no node of the
   * allocation (an MPI program whose ranks need several) or srun is to launch its ranks, as a job step of its own
   * (`step`), pinned to nodes whose cores the agents then leave to it.
   */
  run(
    job: Job,
    launcher: 'mpirun' | 'srun',
    step: (placement: Placement, holdUntil: (ended: Promise<unknown>) => void) => Observable<unknown>,
  ): Observable<unknown> {
    const need: Footprint = footprint(job.requirements);
    return defer(() => from(this.ready())).pipe(
      switchMap(() =>
        onAgent(job, need, this.widestNode(), launcher)
          ? this.onNode(job, need)
          : this.pool.wide(job.requirements.ranks ?? 1, need, step),
      ),
      // the allocation ended under it (cancelled, its time limit): its agents died or ended their programs, which is
      // said as such (SlurmAllocationError, with Slurm's state), as a job step's end is in mode 'steps'. With no live
      // node left, Slurm is given a moment to settle the job's state (its agents may say so before it does). A program
      // that exited with a code of its own says nothing of that: Slurm is not asked then
      catchError((err: unknown) =>
        err instanceof NodeFailureError ||
        err instanceof WorkerCrashedError ||
        (err instanceof ExecutableFailedError && err.signal !== null)
          ? from(this.alloc.checkEnded(this.pool.nodes().length === 0)).pipe(
              switchMap((ended) => throwError(() => ended ?? err)),
            )
          : throwError(() => err),
      ),
    );
  }

  /** The most cores one live node of the allocation has. */
  private widestNode(): number {
    return Math.max(0, ...this.pool.nodes().map((n) => n.capacity.cores));
  }

  private onNode(job: Job, need: Footprint): Observable<unknown> {
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
    return this.pool.attempt(need, `${job.id}.${job.attempt}`, data, prefer, queueable, (ended) =>
      job.holdUntil?.(ended),
    );
  }

  /** Lets the agents go and waits for their step to end. */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/**
 * Whether an attempt goes to an agent: it fits one node (a function always does: refused at submit otherwise), and it
 * is not an MPI program the user wants srun to launch (`launcher: 'srun'`: a job step of its own).
 */
function onAgent(job: Job, need: Footprint, widest: number, launcher: 'mpirun' | 'srun'): boolean {
  if (job.kind === 'function') return true;
  if (launcher === 'srun' && (job.requirements.ranks ?? 1) > 1) return false;
  return need.cores <= widest;
}

/** How the agents' step starts the agent. */
export const agentCommand = (modules: readonly string[], node: string, digests?: ModuleDigests): string[] =>
  nodeEntryCommand('agent-entry', modules, node, 'agents', digests);
