/**
 * The Slurm backend's options, what the cluster offers (asked once, synchronously, from sinfo and
 * scontrol), and how requirements become salloc / srun options.
 */
import { execFileSync } from 'node:child_process';
import { SlurmAllocationError, UnsatisfiableRequirementsError } from '../../errors';
import type { SlurmOptions, TaskRequirements, WorkerRequirements } from '../../task/requirements';
import type { Capacity } from '../backend';

export interface SlurmBackendOptions {
  /**
   * Partition of the allocations; `worker.slurm.partition` wins.
   * @default the cluster's default partition
   */
  readonly partition?: string;
  /** Account the allocations are charged to; `worker.slurm.account` wins. */
  readonly account?: string;
  /**
   * Seconds: the allocations' time limit (Slurm counts whole minutes: rounded up); `worker.walltime` wins.
   * @default the partition's limit
   */
  readonly walltime?: number;
  /**
   * Nodes of each allocation; `worker.nodes` wins.
   * @default none: Slurm places the allocation's cores on as many nodes as it takes
   */
  readonly nodes?: number;
  /**
   * How executables with `ranks > 1` start. `'mpirun'`: one job step of one task with
   * ranks × coresPerRank CPUs on one node, in which Open MPI's `mpirun -np <ranks>` starts the ranks.
   * `'srun'`: a step of `ranks` tasks started by srun itself through PMIx (`--mpi=pmix`); may span nodes.
   * @default 'mpirun'
   */
  readonly launcher?: 'mpirun' | 'srun';
  /**
   * How attempts run in the allocation. `'agents'`: one resident agent per node (started once, as one job step) runs
   * function tasks on its worker threads and executables as its children, placed by this program on a node where
   * they fit; only a task whose ranks need more than one node is a job step of its own. `'steps'`: every attempt is
   * its own job step (`srun --exact`), for sites that want Slurm to see each task.
   * @default 'agents'
   */
  readonly mode?: 'agents' | 'steps';
  /**
   * The address of this host that the nodes reach, for the agents to connect back to (the socket listens there
   * only, and takes only peers with the allocation's random token).
   * @default os.hostname()
   */
  readonly address?: string;
  /**
   * Modules that define the function tasks (`defineTask`): loaded by the `scalems-task` entry point in
   * each step. Without them, only executables run.
   * @default []
   */
  readonly modules?: readonly string[];
  /**
   * Where task working directories go: `<root>/<workflow>/tasks/<id>/attempt-<n>`; must be visible to the nodes.
   * @default `<cwd>/.scalems`
   */
  readonly root?: string;
  /**
   * Seconds a cancelled (or timed-out) task's processes have between SIGTERM and SIGKILL.
   * @default 3
   */
  readonly gracePeriod?: number;
  /**
   * The Node executable that runs function tasks on the nodes.
   * @default process.execPath (this one: the same path must exist on the nodes)
   */
  readonly node?: string;
  /**
   * Extra `mpirun` arguments before the program.
   * @default ['--bind-to', 'none']
   */
  readonly mpirunArgs?: readonly string[];
}

export interface NodeInfo {
  readonly name: string;
  readonly cpus: number;
  readonly memoryMB: number;
  readonly gpus: number;
}

export interface PartitionInfo {
  readonly name: string;
  readonly nodes: readonly NodeInfo[];
  /** minutes; undefined = no limit */
  readonly maxTimeMinutes: number | undefined;
}

export interface ClusterInfo {
  readonly partitions: ReadonlyMap<string, PartitionInfo>;
  readonly defaultPartition: string | undefined;
  /** MB a job gets per CPU when it does not ask for memory (DefMemPerCPU), if set */
  readonly defMemPerCpu: number | undefined;
  readonly defMemPerNode: number | undefined;
}

let cached: ClusterInfo | undefined;

function query(cmd: string, args: readonly string[]): string {
  try {
    return execFileSync(cmd, [...args], { encoding: 'utf8', timeout: 15_000, stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (err) {
    const e = err as NodeJS.ErrnoException & { stderr?: string };
    const why =
      e.code === 'ENOENT'
        ? `${cmd} is not installed (or not on PATH)`
        : `${cmd} ${args.join(' ')} failed: ${(e.stderr ?? e.message).trim().split('\n')[0] ?? ''}`;
    throw new SlurmAllocationError(
      `slurm(): cannot reach a Slurm cluster from here: ${why}. Run on a host with the Slurm client commands and ` +
        `a reachable slurmctld.`,
      null,
      null,
    );
  }
}

/** What the cluster offers, asked once per process (sinfo + scontrol show config). */
export function clusterInfo(refresh = false): ClusterInfo {
  if (cached !== undefined && !refresh) return cached;
  const partitions = new Map<string, { name: string; nodes: NodeInfo[]; maxTimeMinutes: number | undefined }>();
  let defaultPartition: string | undefined;
  for (const line of query('sinfo', ['-h', '-N', '-o', '%P|%N|%c|%m|%G|%l']).split('\n')) {
    const [rawPartition, node, cpus, mem, gres, limit] = line.trim().split('|');
    if (rawPartition === undefined || node === undefined || rawPartition === '') continue;
    const isDefault = rawPartition.endsWith('*');
    const name = isDefault ? rawPartition.slice(0, -1) : rawPartition;
    if (isDefault) defaultPartition = name;
    let p = partitions.get(name);
    if (p === undefined) partitions.set(name, (p = { name, nodes: [], maxTimeMinutes: parseSlurmTime(limit ?? '') }));
    p.nodes.push({
      name: node,
      cpus: Number(cpus) || 0,
      memoryMB: Number.parseInt(mem ?? '', 10) || 0,
      gpus: gpuCount(gres ?? ''),
    });
  }
  const config = query('scontrol', ['show', 'config']);
  const setting = (key: string): number | undefined => {
    const m = new RegExp(`^${key}\\s*=\\s*(\\d+)`, 'm').exec(config);
    return m !== null ? Number(m[1]) : undefined;
  };
  cached = {
    partitions,
    defaultPartition,
    defMemPerCpu: setting('DefMemPerCPU'),
    defMemPerNode: setting('DefMemPerNode'),
  };
  return cached;
}

/** GPUs in a sinfo %G field such as `gpu:2`, `gpu:a100:4(S:0-1)`, `(null)`. */
export function gpuCount(gres: string): number {
  let n = 0;
  for (const item of gres.split(',')) {
    const m = /^gpu(?::[^:(]+)?:(\d+)/.exec(item.trim());
    if (m !== null) n += Number(m[1]);
  }
  return n;
}

/** Minutes of a Slurm time (`infinite`, `MM`, `MM:SS`, `HH:MM:SS`, `D-HH[:MM[:SS]]`); undefined = unlimited/unknown. */
export function parseSlurmTime(text: string): number | undefined {
  const t = text.trim();
  const m = /^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$/.exec(t);
  if (m === null) return undefined;
  const days = Number(m[1] ?? 0);
  const parts = [m[2], m[3], m[4]].filter((x): x is string => x !== undefined).map(Number);
  let seconds: number;
  if (m[1] !== undefined) seconds = days * 86400 + (parts[0] ?? 0) * 3600 + (parts[1] ?? 0) * 60 + (parts[2] ?? 0);
  else if (parts.length === 1) seconds = parts[0]! * 60;
  else if (parts.length === 2) seconds = parts[0]! * 60 + parts[1]!;
  else seconds = parts[0]! * 3600 + parts[1]! * 60 + parts[2]!;
  return Math.ceil(seconds / 60);
}

/** What one allocation asks for: the worker requirements over the backend's options. */
export interface AllocationRequest {
  readonly partition: string | undefined;
  readonly cores: number;
  readonly nodes: number | undefined;
  readonly memoryMB: number | undefined;
  readonly gpus: number;
  /** seconds */
  readonly walltime: number | undefined;
  readonly slurm: SlurmOptions;
}

export function allocationRequest(worker: WorkerRequirements, options: SlurmBackendOptions): AllocationRequest {
  const partition = worker.slurm?.partition ?? options.partition;
  const account = worker.slurm?.account ?? options.account;
  return {
    partition,
    cores: worker.cores ?? 1,
    nodes: worker.nodes ?? options.nodes,
    memoryMB: worker.memoryMB,
    gpus: worker.gpus ?? 0,
    walltime: worker.walltime ?? options.walltime,
    slurm: {
      ...worker.slurm,
      ...(partition !== undefined ? { partition } : {}),
      ...(account !== undefined ? { account } : {}),
    },
  };
}

/**
 * Checks a request against the cluster and returns the executor's capacity. Throws
 * `UnsatisfiableRequirementsError`, naming both figures, for what the partition can never give.
 */
export function checkRequest(req: AllocationRequest, cluster: ClusterInfo): Capacity {
  const name = req.partition ?? cluster.defaultPartition;
  const known = [...cluster.partitions.keys()].join(', ') || 'none';
  if (name === undefined)
    throw new UnsatisfiableRequirementsError(
      `slurm(): no partition given and the cluster has no default partition; pass slurm({ partition }) ` +
        `(partitions: ${known})`,
    );
  const p = cluster.partitions.get(name);
  if (p === undefined)
    throw new UnsatisfiableRequirementsError(
      `slurm(): partition "${name}" does not exist on this cluster (partitions: ${known})`,
    );
  const where = `Slurm partition "${name}"`;
  const fail = (what: string): never => {
    throw new UnsatisfiableRequirementsError(`executor worker requirements can never be met on ${where}: ${what}`);
  };
  if (req.nodes !== undefined && req.nodes > p.nodes.length)
    fail(`they ask for ${req.nodes} nodes but the partition has ${p.nodes.length}`);
  const count = req.nodes ?? p.nodes.length;
  const top = (key: 'cpus' | 'memoryMB' | 'gpus'): number =>
    p.nodes
      .map((n) => n[key])
      .sort((a, b) => b - a)
      .slice(0, count)
      .reduce((a, b) => a + b, 0);
  const cpus = top('cpus');
  const nodesText = `${count} node${count === 1 ? '' : 's'}`;
  if (req.cores > cpus)
    fail(
      `they ask for ${req.cores} cores ` +
        `but ${req.nodes !== undefined ? `${nodesText} of it have` : 'its nodes have'} ${cpus} CPUs`,
    );
  if (req.nodes !== undefined && req.cores < req.nodes)
    fail(`they ask for ${req.nodes} nodes but only ${req.cores} cores (at least one core per node)`);
  const memory = top('memoryMB');
  if (req.memoryMB !== undefined && req.memoryMB > memory)
    fail(`they ask for ${req.memoryMB} MB of memory but ${nodesText} of it have ${memory} MB`);
  // as `sallocArgs` asks for it: per node with a node count, else per CPU (before, only the total was compared, and
  // salloc refused what no node could hold: "Memory specification can not be satisfied")
  if (req.memoryMB !== undefined && req.memoryMB > 0) {
    const sizes = p.nodes.map((n) => `${n.name}: ${n.cpus} CPUs, ${n.memoryMB} MB`).join('; ');
    if (req.nodes !== undefined) {
      const perNode = Math.ceil(req.memoryMB / req.nodes);
      const holding = p.nodes.filter((n) => n.memoryMB >= perNode).length;
      if (holding < req.nodes)
        fail(
          `they ask for ${req.memoryMB} MB on ${req.nodes} nodes (${perNode} MB each) but ${holding} of its nodes ` +
            `have that much (${sizes})`,
        );
    } else {
      const perCpu = Math.ceil(req.memoryMB / req.cores);
      const usable = p.nodes.reduce((sum, n) => sum + Math.min(n.cpus, Math.floor(n.memoryMB / perCpu)), 0);
      if (usable < req.cores)
        fail(
          `they ask for ${req.memoryMB} MB for ${req.cores} cores (${perCpu} MB per core) but its nodes have that ` +
            `much for ${usable} cores (${sizes}); ask for fewer MB per core, or give a node count`,
        );
    }
  }
  const gpus = top('gpus');
  if (req.gpus > gpus) fail(`they ask for ${req.gpus} GPUs but ${nodesText} of it have ${gpus}`);
  if (req.walltime !== undefined && p.maxTimeMinutes !== undefined && Math.ceil(req.walltime / 60) > p.maxTimeMinutes) {
    fail(`they ask for a walltime of ${req.walltime} s but the partition's time limit is ${p.maxTimeMinutes} min`);
  }
  let memoryMB = req.memoryMB;
  if (memoryMB === undefined) {
    if (cluster.defMemPerCpu !== undefined && cluster.defMemPerCpu > 0) memoryMB = cluster.defMemPerCpu * req.cores;
    else if (cluster.defMemPerNode !== undefined && cluster.defMemPerNode > 0)
      memoryMB = cluster.defMemPerNode * (req.nodes ?? 1);
    else memoryMB = Infinity;
  }
  return { cores: req.cores, gpus: req.gpus, memoryMB };
}

/** salloc options for a request (without the job name and the command). */
export function sallocArgs(req: AllocationRequest): string[] {
  const args = ['--ntasks', String(req.cores)];
  if (req.nodes !== undefined) args.push('--nodes', String(req.nodes));
  if (req.memoryMB !== undefined) {
    // --mem is per node: with a node count, split it; otherwise per CPU, whatever the spread.
    if (req.nodes !== undefined) args.push(`--mem=${Math.ceil(req.memoryMB / req.nodes)}M`);
    else args.push(`--mem-per-cpu=${Math.ceil(req.memoryMB / req.cores)}M`);
  }
  if (req.gpus > 0)
    args.push(req.nodes === undefined || req.nodes === 1 ? `--gres=gpu:${req.gpus}` : `--gpus=${req.gpus}`);
  if (req.walltime !== undefined) args.push(`--time=${Math.ceil(req.walltime / 60)}`);
  args.push(...passThrough(req.slurm, 'job'));
  return args;
}

/** The `slurm` pass-through as options: all of them for the allocation; for a step only those a step can take. */
export function passThrough(s: SlurmOptions | undefined, level: 'job' | 'step'): string[] {
  if (s === undefined) return [];
  const args: string[] = [];
  if (level === 'job') {
    if (s.partition !== undefined) args.push(`--partition=${s.partition}`);
    if (s.account !== undefined) args.push(`--account=${s.account}`);
    if (s.qos !== undefined) args.push(`--qos=${s.qos}`);
    if (s.reservation !== undefined) args.push(`--reservation=${s.reservation}`);
  }
  if (s.constraint !== undefined) args.push(`--constraint=${s.constraint}`);
  if (s.exclusive === true) args.push('--exclusive');
  return args;
}

/**
 * Why a task's `slurm` options cannot hold inside this allocation (a step runs in its job: partition,
 * account, qos and reservation are the allocation's), or undefined.
 */
export function stepConflict(
  task: SlurmOptions | undefined,
  allocation: AllocationRequest,
  cluster: ClusterInfo,
): string | undefined {
  if (task === undefined) return undefined;
  const job: Record<string, string | undefined> = {
    partition: allocation.slurm.partition ?? cluster.defaultPartition,
    account: allocation.slurm.account,
    qos: allocation.slurm.qos,
    reservation: allocation.slurm.reservation,
  };
  for (const key of ['partition', 'account', 'qos', 'reservation'] as const) {
    const want = task[key];
    if (want !== undefined && want !== job[key]) {
      return (
        `it asks for slurm.${key} "${want}" but its executor's allocation ` +
        `has ${job[key] === undefined ? `no ${key}` : `"${job[key]}"`}: a job step runs inside its allocation; ` +
        `open an executor with worker: { slurm: { ${key}: "${want}" } }`
      );
    }
  }
  return undefined;
}

/**
 * srun options for the resources of one task attempt (see `SlurmBackendOptions.launcher`). `'spanning'`: the step
 * of mpirun's daemons over several nodes, whose tasks and CPUs per node mpirun and the placement set; only memory
 * (per CPU), GPUs, the time limit and the pass-through come from here.
 */
export function stepResourceArgs(req: TaskRequirements, launcher: 'mpirun' | 'srun' | 'spanning' | 'none'): string[] {
  const ranks = req.ranks ?? 1;
  const cpr = req.coresPerRank ?? 1;
  const args: string[] = [];
  const tasks = launcher === 'srun' ? ranks : 1;
  const cpusPerTask = launcher === 'srun' ? cpr : ranks * cpr;
  if (launcher !== 'spanning') args.push('--ntasks', String(tasks), '--cpus-per-task', String(cpusPerTask));
  if (launcher === 'mpirun' || launcher === 'none') args.push('--nodes', '1');
  if (req.memoryMB !== undefined) {
    if (launcher !== 'mpirun' && launcher !== 'none' && ranks > 1)
      args.push(`--mem-per-cpu=${Math.ceil(req.memoryMB / (ranks * cpr))}M`);
    else args.push(`--mem=${Math.ceil(req.memoryMB)}M`);
  }
  const gpus = ranks * (req.gpusPerRank ?? 0);
  if (gpus > 0) args.push(`--gpus=${gpus}`);
  // Slurm's step time limit is a backstop only (whole minutes): the executor enforces `walltime` itself.
  if (req.walltime !== undefined) args.push(`--time=${Math.ceil(req.walltime / 60) + 1}`);
  args.push(...passThrough(req.slurm, 'step'));
  return args;
}
