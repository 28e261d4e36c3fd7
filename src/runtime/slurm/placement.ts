/**
 * Where the ranks of a task go in its allocation: the allocation's nodes and CPUs (asked of Slurm once
 * per allocation), whether a task fits one of them, and the placement of one that must span several:
 * `ranksPerNode` ranks on each of `nodes`, in rank order (block distribution), as `--host` for mpirun
 * or `--nodelist` for srun.
 */
import { UnsatisfiableRequirementsError } from '../../errors';
import { slurmCommand } from './allocation';

/** A node of an allocation and the CPUs the allocation has on it. */
export interface AllocatedNode {
  readonly name: string;
  readonly cpus: number;
}

/**
 * Where a task's ranks run: `ranksPerNode` ranks on each node of `nodes`, ranks 0..k-1 on the first of them in the
 * allocation's node order, and so on (the last node may have fewer). Each node gives the task
 * `ranksPerNode × coresPerRank` CPUs.
 *
 * The allocation's order (Slurm's node order), not the order given: Slurm numbers the tasks of a step in its node
 * order, and mpirun's daemons take their number from it; mpirun told another order would start rank 0 on another
 * node than the one it believes (on the test cluster, where every node has the same host name, nothing notices).
 */
export interface Placement {
  /** names of nodes of the allocation (a set: see above for the order) */
  readonly nodes: readonly string[];
  /** @default ceil(ranks / nodes.length) */
  readonly ranksPerNode?: number;
}

/** Numbers in a Slurm id list such as `0-1,4`. */
function countIds(ids: string): number {
  let n = 0;
  for (const part of ids.split(',')) {
    const [a, b] = part.split('-').map(Number);
    if (a !== undefined && Number.isInteger(a)) n += b !== undefined && Number.isInteger(b) ? b - a + 1 : 1;
  }
  return n;
}

/**
 * Node names of a Slurm host list such as `n[1-2],gpu[01-03,7]`: one bracket per name is expanded here
 * (zero-padding kept), anything else by `scontrol show hostnames`.
 */
export async function hostnames(list: string): Promise<string[]> {
  const items = list.match(/[^,[]+(\[[^\]]*\])?[^,]*/g) ?? [];
  const names: string[] = [];
  for (const item of items) {
    const m = /^([^[\]]*)\[([\d,-]+)\]([^[\]]*)$/.exec(item);
    if (m === null && /[[\]]/.test(item))
      return (await slurmCommand('scontrol', ['show', 'hostnames', list])).split('\n').filter(Boolean);
    if (m === null) {
      names.push(item);
      continue;
    }
    for (const range of m[2]!.split(',')) {
      const [from, to = from] = range.split('-') as [string, string?];
      for (let i = Number(from); i <= Number(to); i++)
        names.push(`${m[1]}${String(i).padStart(from.length, '0')}${m[3]}`);
    }
  }
  return names;
}

/** Reads `scontrol show job -d -o` (its `Nodes=<list> CPU_IDs=<ids>` pairs) into the allocation's nodes. */
export async function parseAllocatedNodes(shown: string): Promise<AllocatedNode[]> {
  const nodes: AllocatedNode[] = [];
  for (const m of shown.matchAll(/\bNodes=(\S+) CPU_IDs=(\S+)/g)) {
    const cpus = countIds(m[2]!);
    for (const name of await hostnames(m[1]!)) nodes.push({ name, cpus });
  }
  return nodes;
}

/** The nodes of a granted allocation and its CPUs on each. */
export async function allocatedNodes(jobId: string): Promise<AllocatedNode[]> {
  return parseAllocatedNodes(await slurmCommand('scontrol', ['show', 'job', '-d', '-o', jobId]));
}

/** The placement with its nodes in the allocation's order (see `Placement`). */
export function inAllocationOrder(placement: Placement, nodes: readonly AllocatedNode[]): Placement {
  const wanted = new Set(placement.nodes);
  return { ...placement, nodes: nodes.filter((n) => wanted.has(n.name)).map((n) => n.name) };
}

/** The ranks per node of a placement for `ranks` ranks. */
export function ranksPerNode(placement: Placement, ranks: number): number {
  return placement.ranksPerNode ?? Math.ceil(ranks / placement.nodes.length);
}

/**
 * Checks a placement against the allocation: known nodes, no node twice, room for all ranks, and the CPUs it
 * asks of each node. Throws `UnsatisfiableRequirementsError` naming what does not hold.
 */
export function checkPlacement(
  placement: Placement,
  ranks: number,
  coresPerRank: number,
  nodes: readonly AllocatedNode[],
  where: string,
): void {
  const fail = (what: string): never => {
    throw new UnsatisfiableRequirementsError(`${where}: the placement ${show(placement)} ${what}`);
  };
  if (placement.nodes.length === 0) fail('names no node');
  if (new Set(placement.nodes).size !== placement.nodes.length) fail('names a node twice');
  const perNode = ranksPerNode(placement, ranks);
  if (!Number.isInteger(perNode) || perNode < 1) fail(`has ${perNode} ranks per node (a whole number from 1 up)`);
  if (perNode * placement.nodes.length < ranks)
    fail(`has room for ${perNode * placement.nodes.length} ranks, but the task has ${ranks}`);
  if (placement.nodes.length > Math.ceil(ranks / perNode))
    fail(
      `leaves node ${placement.nodes[placement.nodes.length - 1]} without ranks (${ranks} ranks, ${perNode} a node)`,
    );
  for (const name of placement.nodes) {
    const node = nodes.find((n) => n.name === name);
    if (node === undefined)
      fail(`names node ${name}, which is not in the allocation (${nodes.map((n) => n.name).join(', ')})`);
    else if (node.cpus < perNode * coresPerRank)
      fail(
        `needs ${perNode * coresPerRank} CPUs on node ${name} (${perNode} ranks × ${coresPerRank}) but the ` +
          `allocation has ${node.cpus} there`,
      );
  }
}

function show(p: Placement): string {
  return `{ nodes: [${p.nodes.join(', ')}]${p.ranksPerNode !== undefined ? `, ranksPerNode: ${p.ranksPerNode}` : ''} }`;
}

/**
 * The placement of a task that no node of the allocation can hold: the most ranks a node can take, on as few nodes
 * as that allows, the allocation's nodes in order. Undefined if the allocation cannot hold it at all.
 */
export function spreadPlacement(
  ranks: number,
  coresPerRank: number,
  nodes: readonly AllocatedNode[],
): Placement | undefined {
  const most = Math.max(0, ...nodes.map((n) => Math.floor(n.cpus / coresPerRank)));
  for (let perNode = Math.min(most, ranks); perNode >= 1; perNode--) {
    const fit = nodes.filter((n) => n.cpus >= perNode * coresPerRank);
    const count = Math.ceil(ranks / perNode);
    if (fit.length >= count) return { nodes: fit.slice(0, count).map((n) => n.name), ranksPerNode: perNode };
  }
  return undefined;
}
