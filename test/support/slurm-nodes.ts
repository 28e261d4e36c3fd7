/**
 * The nodes of the test cluster (scripts/start-services.sh: one `slurmd -N <node>` per node on this
 * machine) and what node-failure tests do to them: kill one node's slurmd (and, to play a node that
 * died, its job steps with everything they run), and bring it back.
 *
 *   const [first] = slurmNodes();              // { name: 'n1', state: 'idle', cpus: 2 }
 *   await killSlurmd(first.name, { steps: true });
 *   ...                                         // Slurm marks the node DOWN after SlurmdTimeout (30 s)
 *   await restartSlurmd(first.name);            // idle (or mixed/allocated) again
 *
 * Run as root (as the services are). Only node: builtins.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';

export interface SlurmNode {
  readonly name: string;
  /** sinfo's state: `idle`, `mixed`, `allocated`, `down*`, `idle*` (not responding), `drained`, ... */
  readonly state: string;
  readonly cpus: number;
}

/** Where start-services.sh keeps a node's slurmd pid and log (`%n` in slurm.conf). */
export const slurmdPidFile = (node: string): string => `/run/slurmd-${node}.pid`;
export const slurmdLogFile = (node: string): string => `/var/log/slurm/slurmd-${node}.log`;

const USABLE = new Set(['idle', 'mixed', 'allocated', 'completing']);

/** The nodes of partition `debug`, in name order. */
export function slurmNodes(partition = 'debug'): SlurmNode[] {
  return execFileSync('sinfo', ['-h', '-N', '-p', partition, '-o', '%N|%T|%c'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.trim() !== '')
    .map((l) => {
      const [name = '', state = '', cpus = '0'] = l.trim().split('|');
      return { name, state, cpus: Number(cpus) };
    })
    .sort((a, b) => a.name.localeCompare(b.name, 'en', { numeric: true }));
}

/** The node's state as sinfo reports it (`undefined` if sinfo does not list it). */
export function nodeState(node: string): string | undefined {
  return slurmNodes().find((n) => n.name === node)?.state;
}

function comm(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** The process exists and is not a zombie. */
function running(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

/** The pid of the node's running slurmd, if there is one. */
export function slurmdPid(node: string): number | undefined {
  let pid: number;
  try {
    pid = Number(readFileSync(slurmdPidFile(node), 'utf8').trim());
  } catch {
    return undefined;
  }
  return pid > 0 && comm(pid) === 'slurmd' ? pid : undefined;
}

/** The node's slurmstepd processes: each keeps its node's slurmd log file open. */
export function stepdPids(node: string): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || comm(pid) !== 'slurmstepd') continue;
    try {
      if (readdirSync(`/proc/${pid}/fd`).some((fd) => safeReadlink(`/proc/${pid}/fd/${fd}`) === slurmdLogFile(node)))
        pids.push(pid);
    } catch {
      // gone meanwhile
    }
  }
  return pids;
}

function safeReadlink(path: string): string | undefined {
  try {
    return readlinkSync(path);
  } catch {
    return undefined;
  }
}

/** The pids of these processes and of all their descendants. */
function withDescendants(roots: readonly number[]): number[] {
  const children = new Map<number, number[]>();
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid)) continue;
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    } catch {
      // gone meanwhile
    }
  }
  const all = new Set<number>();
  const walk = (pid: number): void => {
    if (all.has(pid)) return;
    all.add(pid);
    for (const c of children.get(pid) ?? []) walk(c);
  };
  roots.forEach(walk);
  return [...all];
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function until(what: string, timeoutMs: number, probe: () => boolean, detail: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!probe()) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs / 1000} s (${detail()})`);
    await sleep(100);
  }
}

export interface KillOptions {
  /**
   * Also SIGKILL the node's slurmstepd processes and everything their steps run: the node "died" (Slurm learns
   * it only once SlurmdTimeout has passed). Without it only the daemon goes: running steps go on.
   * @default false
   */
  readonly steps?: boolean;
}

/** SIGKILLs the node's slurmd (and with `steps`, its job steps); resolves once they are gone. */
export async function killSlurmd(node: string, options: KillOptions = {}): Promise<void> {
  const pid = slurmdPid(node);
  const victims = [
    ...(pid !== undefined ? [pid] : []),
    ...(options.steps === true ? withDescendants(stepdPids(node)) : []),
  ];
  for (const p of victims) {
    try {
      process.kill(p, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  await until(
    `the slurmd of node ${node} did not end`,
    10_000,
    () => victims.every((p) => !running(p)),
    () => `pids ${victims.filter(running).join(', ')} still there`,
  );
}

/**
 * Starts the node's slurmd again (if it is not running) and waits until Slurm offers the node again, resuming it
 * if Slurm had set it DOWN or drained it.
 */
export async function restartSlurmd(node: string, timeoutMs = 60_000): Promise<void> {
  if (slurmdPid(node) === undefined) {
    const started = spawnSync('slurmd', ['-N', node], { encoding: 'utf8', timeout: 30_000 });
    if (started.status !== 0)
      throw new Error(`slurmd -N ${node} failed (${started.status ?? started.signal}): ${started.stderr.trim()}`);
  }
  let resumed = 0;
  await until(
    `node ${node} did not become usable again`,
    timeoutMs,
    () => {
      const state = nodeState(node) ?? '';
      if (USABLE.has(state)) return true;
      // down (ReturnToService=2 would bring it back once slurmd registers) or drained: ask for it, every 2 s
      if (/^(down|drain|fail)/.test(state) && Date.now() - resumed > 2000) {
        spawnSync('scontrol', ['update', `nodename=${node}`, 'state=resume'], { encoding: 'utf8' });
        resumed = Date.now();
      }
      return false;
    },
    () => `state ${nodeState(node) ?? 'unknown'}; see ${slurmdLogFile(node)} and 'scontrol show node ${node}'`,
  );
}

/**
 * A job of "someone else" holding nodes (`salloc --no-shell` with these arguments, and a 3-minute limit should the
 * test never release it), granted when this resolves. `release()` cancels it and resolves once Slurm no longer lists
 * it: no salloc of it is left running (a salloc running a command outlives a cancel of its job by a long while).
 */
export async function holdNodes(name: string, args: readonly string[]): Promise<{ release(): Promise<void> }> {
  execFileSync('salloc', ['--no-shell', '-t', '3', '-J', name, ...args], { stdio: 'ignore', timeout: 60_000 });
  const listed = (): boolean => execFileSync('squeue', ['-h', '-n', name, '-o', '%i'], { encoding: 'utf8' }) !== '';
  return {
    async release(): Promise<void> {
      execFileSync('scancel', ['--name', name]);
      await until(
        `the job ${name} did not leave the queue`,
        30_000,
        () => !listed(),
        () => 'still listed',
      );
    },
  };
}
