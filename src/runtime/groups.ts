/**
 * Worker groups: the parts of one executor scope that each provision their own resources (a backend executor: for
 * slurm(), an allocation with its agents) and admit their own tasks; and how a ready task is routed to one of them.
 */
import { UnsatisfiableRequirementsError } from '../errors';
import type { TaskSlot } from '../store/slot';
import { canonical } from '../task/hash';
import type { TaskSpec } from '../task/spec';
import { footprint, type NamedWorker, type TaskRequirements, type WorkerRequirements } from '../task/requirements';
import { Admission, type Need } from './admission';
import type { Backend, BackendExecutor, Capacity } from './backend';
import type { Workflow } from './workflow';

/** One worker group of an executor, as `executor.groups` lists it. */
export interface WorkerGroup {
  /** its name, unique in its executor: the worker entry's `name`, else `group-<index>` */
  readonly name: string;
  /** its worker requirements, as validated */
  readonly worker: WorkerRequirements;
  /** what its backend executor provides at once */
  readonly capacity: Capacity;
}

/**
 * @internal A ready task queued on several groups at once (it fits each): the first group whose admission starts it
 * takes it, and the others then pass over it. A task that can go to one group only is queued there as its slot.
 */
export class Ticket {
  taken = false;
  constructor(readonly slot: TaskSlot) {}
}

/** @internal what a group's admission holds */
export type Queued = TaskSlot | Ticket;

/** @internal What the executor does for its groups' admissions. */
export interface GroupStarter {
  /** what the queued task needs, if it is still to be started */
  need(slot: TaskSlot): Need | undefined;
  /** starts the task on `group`; calls `group.admission.take(hold)` */
  start(group: Group, slot: TaskSlot, need: Need): void;
}

/** @internal One group: its backend executor and the admission of its tasks against its capacity. */
export class Group implements WorkerGroup {
  readonly admission: Admission<Queued>;
  readonly capacity: Capacity;

  constructor(
    readonly name: string,
    readonly worker: WorkerRequirements,
    readonly backend: BackendExecutor,
    starter: GroupStarter,
  ) {
    this.capacity = backend.capacity;
    this.admission = new Admission<Queued>(this.capacity, {
      need: (queued) => {
        if (!(queued instanceof Ticket)) return starter.need(queued);
        if (queued.taken) return undefined;
        // a task several groups may run starts where a core is free: handed to a busy group's backend queue, it
        // would wait there while another group freed first and idled
        const need = starter.need(queued.slot);
        return need === undefined ? undefined : { ...need, queueable: false };
      },
      start: (queued, need) => {
        if (queued instanceof Ticket) {
          queued.taken = true;
          starter.start(this, queued.slot, need);
        } else starter.start(this, queued, need);
      },
    });
  }

  /** Why a task of these requirements can never run on this group (`whose`: "the executor" or `group "x"`). */
  problem(req: TaskRequirements, whose: string): string | undefined {
    const need = footprint(req);
    const ranks = req.ranks ?? 1;
    const c = this.capacity;
    if (need.cores > c.cores) {
      const rank = `ranks ${ranks} × coresPerRank ${req.coresPerRank ?? 1}`;
      return `it needs ${need.cores} cores (${rank}) but ${whose} has ${c.cores}`;
    }
    if (need.gpus > c.gpus) {
      const rank = `ranks ${ranks} × gpusPerRank ${req.gpusPerRank ?? 0}`;
      return `it needs ${need.gpus} GPUs (${rank}) but ${whose} has ${c.gpus}`;
    }
    if (need.memoryMB > c.memoryMB) return `it needs ${need.memoryMB} MB of memory but ${whose} has ${c.memoryMB} MB`;
    return undefined;
  }
}

/**
 * @internal The worker groups of one executor. Each has its own backend executor and its own first-come-first-served
 * admission; one ready task is queued, in the order tasks became ready, on every group it may run on (the one it is
 * pinned to with `group`, else each whose capacity it fits), the group with the most free cores first, and starts on
 * the first of them that has room for it (a free core: it is not handed to a busy group's backend queue ahead of one,
 * `Capacity.queue`). A group with room therefore never idles while a task it could run waits
 * for another group, and a task that does not fit a group's free resources yet keeps the tasks behind it from
 * overtaking it there (so a wide task is never starved), on each group it may run on. A group whose backend is not
 * ready yet (`BackendExecutor.ready`: an allocation still in Slurm's queue) starts nothing until it is: its tasks
 * wait in its queue, and those another group can run start there.
 */
export class WorkerGroups {
  readonly list: readonly Group[];
  /** the sum of the groups' capacities */
  readonly capacity: Capacity;
  private readonly byName = new Map<string, Group>();
  /** whether a group has a worker `env` (see `envIdentity`) */
  private readonly workerEnv: boolean;

  /** Opens every group's backend executor at once (a Slurm allocation each, requested side by side). */
  constructor(
    backend: Backend,
    workers: readonly NamedWorker[],
    context: { readonly workflow: Workflow; readonly executorId: string; readonly executorName?: string },
    starter: GroupStarter,
  ) {
    const list: Group[] = [];
    try {
      for (const { name, worker } of workers) {
        const opened = backend.open(worker, workers.length > 1 ? { ...context, group: name } : context);
        const group = new Group(name, worker, opened, starter);
        list.push(group);
        // several groups: none takes tasks before its backend can start them (its allocation granted), so that
        // tasks another group could run now do not wait for it
        const ready = opened.ready;
        if (workers.length > 1 && ready !== undefined) {
          group.admission.paused = true;
          const resume = (): void => {
            group.admission.paused = false;
            group.admission.pump();
          };
          ready.then(resume, resume);
        }
      }
    } catch (error) {
      for (const group of list) void group.backend.close().catch(() => undefined);
      throw error;
    }
    this.list = list;
    this.workerEnv = list.some((g) => g.worker.env !== undefined && Object.keys(g.worker.env).length > 0);
    for (const group of list) this.byName.set(group.name, group);
    let cores = 0;
    let gpus = 0;
    let memoryMB = 0;
    let queue = 0;
    for (const { capacity: c } of list) {
      cores += c.cores;
      gpus += c.gpus;
      memoryMB += c.memoryMB;
      queue += c.queue ?? 0;
    }
    this.capacity = queue > 0 ? { cores, gpus, memoryMB, queue } : { cores, gpus, memoryMB };
  }

  get(name: string): Group | undefined {
    return this.byName.get(name);
  }

  /**
   * The environment a task of these requirements is given, as part of its identity: its `env` requirement over the
   * worker `env` of each group it may run on (one text per distinct environment, sorted); '' when all are empty, so
   * that tasks without an environment keep the ids they always had.
   */
  envIdentity(req: TaskRequirements): string {
    if (req.env === undefined && !this.workerEnv) return '';
    const { groups } = this.candidates(req);
    const texts = new Set<string>();
    for (const group of groups.length > 0 ? groups : this.list) {
      const env = { ...group.worker.env, ...req.env };
      if (Object.keys(env).length > 0) texts.add(canonical(env));
    }
    return texts.size === 0 ? '' : `env${[...texts].sort().join(';')}`;
  }

  /** `"members", "analysis"`: the groups' names, for messages */
  names(): string {
    return this.list.map((g) => JSON.stringify(g.name)).join(', ');
  }

  /** Why a task of these requirements can never run on this executor (see `candidates`), or undefined. */
  problem(req: TaskRequirements, excluded?: ReadonlySet<Group>): string | undefined {
    if (this.list.length === 1 && req.group === undefined) return this.list[0]!.problem(req, 'the executor');
    return this.candidates(req, excluded).problem;
  }

  /**
   * The groups a task of these requirements may run on, apart from those whose backend refused it (`excluded`), or
   * why there are none. A `group` that is not one of this executor's is `unknown`.
   */
  candidates(
    req: TaskRequirements,
    excluded?: ReadonlySet<Group>,
  ): { readonly groups: readonly Group[]; readonly problem?: string } {
    if (this.list.length === 1 && req.group === undefined) {
      const only = this.list[0]!;
      const problem = only.problem(req, 'the executor');
      return problem === undefined ? { groups: this.list } : { groups: [], problem };
    }
    if (req.group !== undefined) {
      const group = this.byName.get(req.group);
      if (group === undefined) {
        const problem = `it asks for worker group ${JSON.stringify(req.group)}, but the executor's groups are`;
        return { groups: [], problem: `${problem} ${this.names()}` };
      }
      const problem = group.problem(req, this.list.length === 1 ? 'the executor' : `group "${group.name}"`);
      return problem === undefined ? { groups: [group] } : { groups: [], problem };
    }
    const groups = this.list.filter((g) => g.problem(req, '') === undefined && excluded?.has(g) !== true);
    if (groups.length > 0) return { groups };
    const each = this.list.map(
      (g) =>
        `group "${g.name}" (${g.capacity.cores} cores, ${g.capacity.gpus} GPUs, ${g.capacity.memoryMB} MB): ` +
        (g.problem(req, 'it') ?? 'its backend refused it'),
    );
    return { groups: [], problem: `it fits none of the executor's worker groups: ${each.join('; ')}` };
  }

  /**
   * Asks the backend executors of the groups a task may run on whether they can run it (`BackendExecutor.accept`):
   * throws the refusal if all of them refuse, else returns those that did (the task then goes to the others). A group
   * name the executor does not have is refused here (`UnsatisfiableRequirementsError`, naming its groups).
   */
  accept(spec: TaskSpec, req: TaskRequirements, executorId: string): ReadonlySet<Group> | undefined {
    const list = this.list;
    if (req.group !== undefined && this.byName.get(req.group) === undefined)
      throw new UnsatisfiableRequirementsError(
        `task ${spec.name} on executor ${executorId}: it asks for worker group ${JSON.stringify(req.group)}, ` +
          `but the executor has the group${list.length === 1 ? '' : 's'} ${this.names()}`,
      );
    if (list.length === 1) {
      list[0]!.backend.accept?.(spec);
      return undefined;
    }
    // a task that fits no group is asked of all: it fails at once later, unless a backend refuses it first
    const { groups } = this.candidates(req);
    const asked = groups.length > 0 ? groups : list;
    let refused: Set<Group> | undefined;
    let first: unknown;
    for (const group of asked) {
      try {
        group.backend.accept?.(spec);
      } catch (error) {
        if (refused === undefined) first = error;
        (refused ??= new Set()).add(group);
      }
    }
    if (refused !== undefined && refused.size === asked.length) throw first;
    return refused;
  }

  /** Queues a ready task on the groups it may run on (see the class). */
  route(slot: TaskSlot, req: TaskRequirements, excluded?: ReadonlySet<Group>): void {
    if (this.list.length === 1) {
      this.list[0]!.admission.enqueue(slot);
      return;
    }
    const { groups } = this.candidates(req, excluded);
    if (groups.length === 1) {
      groups[0]!.admission.enqueue(slot);
      return;
    }
    const ticket = new Ticket(slot);
    const order = [...groups].sort((a, b) => b.admission.freeCores - a.admission.freeCores);
    for (const group of order) {
      group.admission.enqueue(ticket);
      if (ticket.taken) return;
    }
  }

  /** Starts what now fits, on every group. */
  pump(): void {
    for (const group of this.list) group.admission.pump();
  }

  /** Closes every group's backend executor, side by side; rejects with the first failure once all have ended. */
  async close(onError: (group: Group, error: unknown) => void): Promise<void> {
    const outcomes = await Promise.allSettled(this.list.map((g) => g.backend.close()));
    let first: { error: unknown } | undefined;
    outcomes.forEach((o, i) => {
      if (o.status === 'fulfilled') return;
      onError(this.list[i]!, o.reason);
      first ??= { error: o.reason };
    });
    if (first !== undefined) throw first.error;
  }
}
