/**
 * Spawning a program as the leader of its own session and process group, and ending the whole tree it
 * grows: SIGTERM, then SIGKILL after a grace period, until no member is left. Members are found by
 * session, group and parentage, and by the attempt's mark in their environment (`marks.ts`), which
 * also finds programs that daemonised (left the session and were reparented). Reusable by any backend
 * that runs local processes (processes(), the Slurm backend's helpers).
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { closeSync, openSync, readSync, readdirSync, readFileSync } from 'node:fs';
import { constants } from 'node:os';
import { sleep } from '../../util';
import { hasMark, withMark, type MarkTest } from './marks';
import { markInterrupted } from '../interrupt';

export interface TreeSpawnOptions {
  readonly cwd: string;
  readonly env: NodeJS.ProcessEnv;
  /** [stdin, stdout, stderr]: file descriptors, 'ignore' or 'pipe' (stdin only) */
  readonly stdio: StdioOptions;
  /** seconds from SIGTERM to SIGKILL when the tree is ended (default 3) */
  readonly graceSeconds?: number;
  /**
   * The attempt's mark: added to the program's `SCALEMS_ATTEMPT` (which every process it starts inherits), so that
   * ending the tree also reaches what left its session (`setsid`, a double fork). None: members by /proc ancestry only.
   */
  readonly mark?: string;
  /** Told when the tree has started and when nothing of it is left (a watchdog that outlives this process). */
  readonly watcher?: TreeWatcher;
}

/** Someone who ends the trees this process started if it dies first (the spawner: `spawner.ts`). */
export interface TreeWatcher {
  /** called before the program is spawned: whatever the watcher needs must exist by then */
  arm(): void;
  started(root: TreeRoot): void;
  ended(root: TreeRoot): void;
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** How the leader of a tree ended, and whether members of its process group were left then. */
export interface TreeExit extends ExitStatus {
  readonly groupAlive: boolean;
}

/** A running program and everything it starts. */
export interface ProcessTree {
  readonly pid: number;
  readonly root: TreeRoot;
  /** the program, where this process started it (not when the spawner did: `spawner.ts`) */
  readonly child?: ChildProcess;
  /**
   * resolves when the program itself exits (its descendants may live on: see `kill`); rejects if that cannot be
   * known (the spawner that started it died)
   */
  readonly exited: Promise<TreeExit>;
  /** true until the program itself has exited */
  readonly running: boolean;
  /**
   * Ends the tree: SIGTERM to every member, SIGKILL to those still alive after `graceSeconds`.
   * Resolves when no member is left. Idempotent (later calls get the same promise).
   */
  kill(graceSeconds?: number): Promise<void>;
}

export const DEFAULT_GRACE_SECONDS = 3;

/** Trees that may still have members: the program runs, or it is being killed. */
const live = new Set<ProcessTree>();
/** The mark test of each live tree that has one. */
const marks = new Map<ProcessTree, MarkTest>();
/** What else ends trees when this process is interrupted: each resolves once it has (see `whenInterrupted`). */
const interruptHooks = new Set<() => Promise<void>>();

/**
 * Starts `program` with `args`, never through a shell, as the leader of a new session and process
 * group (`detached: true` = setsid), so that the tree can be found and signalled as a whole. Resolves
 * once the program has started; rejects with the spawn error (ENOENT, EACCES, ...) if it cannot start.
 */
export function spawnTree(program: string, args: readonly string[], options: TreeSpawnOptions): Promise<ProcessTree> {
  const { mark } = options;
  options.watcher?.arm();
  return new Promise<ProcessTree>((resolve, reject) => {
    const child = spawn(program, [...args], {
      cwd: options.cwd,
      env: mark === undefined ? options.env : withMark(options.env, mark),
      stdio: options.stdio,
      detached: true,
      shell: false,
      windowsHide: true,
    });
    child.on('error', (err) => {
      if (child.pid === undefined) reject(err);
    });
    child.once('spawn', () => {
      const pid = child.pid ?? -1;
      const start = readStat(pid)?.start;
      const adopted = adoptTree(start !== undefined ? { pid, start } : { pid }, options, child);
      child.once('exit', (code, signal) => adopted.exit({ code, signal }, groupAlive(adopted.tree.root)));
      resolve(adopted.tree);
    });
  });
}

/** A tree as its owner sees it, and how whoever started it reports its leader's end. */
export interface AdoptedTree {
  readonly tree: ProcessTree;
  /** the leader has exited; `groupAlive`: its process group still had members then */
  exit(status: ExitStatus, groupAlive: boolean): void;
  /** the leader's fate cannot be known any more (its parent died): `exited` rejects with `reason` */
  lost(reason: Error): void;
}

/**
 * The bookkeeping of a tree whose leader has just started (here, or in the spawner): it is ended with the others when
 * this process is interrupted or exits, and `watcher` is told when it started and when nothing of it is left.
 */
export function adoptTree(
  root: TreeRoot,
  options: Pick<TreeSpawnOptions, 'graceSeconds' | 'mark' | 'watcher'>,
  child?: ChildProcess,
): AdoptedTree {
  const { mark, watcher } = options;
  const test: MarkTest | undefined = mark === undefined ? undefined : (token) => token === mark;
  let killing: Promise<void> | undefined;
  let running = true;
  let watched = false;
  let settle!: (exit: TreeExit) => void;
  let fail!: (reason: Error) => void;
  const exited = new Promise<TreeExit>((resolve, reject) => {
    settle = resolve;
    fail = reject;
  });
  exited.catch(() => undefined); // for whoever awaits it; nobody may
  const forget = (): void => {
    live.delete(tree);
    marks.delete(tree);
    uninstallWhenUnneeded();
  };
  const gone = (): void => {
    if (watched) watcher?.ended(root);
    watched = false;
  };
  const tree: ProcessTree = {
    pid: root.pid,
    root,
    child,
    exited,
    get running() {
      return running;
    },
    kill(graceSeconds = options.graceSeconds ?? DEFAULT_GRACE_SECONDS) {
      if (killing === undefined) {
        live.add(tree);
        if (test !== undefined) marks.set(tree, test);
        installExitHooks();
        killing = killTree(root, graceSeconds, test).finally(() => {
          forget();
          gone();
        });
      }
      return killing;
    },
  };
  live.add(tree);
  if (test !== undefined) marks.set(tree, test);
  installExitHooks();
  if (watcher !== undefined) {
    watched = true;
    watcher.started(root);
  }
  return {
    tree,
    exit(status, groupAlive) {
      running = false;
      if (killing === undefined) {
        forget();
        if (!groupAlive) gone(); // else it is for the owner to end what is left (then `kill` says so)
      }
      settle({ code: status.code, signal: status.signal, groupAlive });
    },
    lost(reason) {
      running = false;
      fail(reason);
    },
  };
}

interface ProcStat {
  readonly ppid: number;
  readonly pgrp: number;
  readonly session: number;
  readonly state: string;
  /** start time in clock ticks since boot: tells a pid from a later process that reused it */
  readonly start: string;
}

/** The leader of a tree: its pid, and its start time where /proc tells it (to detect pid reuse). */
export interface TreeRoot {
  readonly pid: number;
  readonly start?: string;
}

const hasProc = ((): boolean => {
  try {
    readFileSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
})();

/**
 * One buffer for every read of /proc/<pid>/stat (a line of a few hundred bytes; readFileSync would allocate 64 KiB per
 * call).
 */
const statBuffer = Buffer.alloc(1024);

function readStat(pid: number): ProcStat | undefined {
  let text: string;
  let fd: number | undefined;
  try {
    fd = openSync(`/proc/${pid}/stat`, 'r');
    text = statBuffer.toString('latin1', 0, readSync(fd, statBuffer, 0, statBuffer.length, 0));
  } catch {
    return undefined;
  } finally {
    if (fd !== undefined) closeSync(fd);
  }
  // pid (comm) state ppid pgrp session ... ; comm may hold spaces and parentheses: split after the last ')'
  const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
  return { state: f[0]!, ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), start: f[19]! };
}

/** The start time of a live process (clock ticks since boot, as /proc says), or undefined (none, or no /proc). */
export function startOf(pid: number): string | undefined {
  const s = readStat(pid);
  return s === undefined || s.state === 'Z' || s.state === 'X' ? undefined : s.start;
}

/** True while a process exists and is not a zombie (a zombie has finished; only its exit status is left). */
export function isAlive(pid: number): boolean {
  if (hasProc) {
    const s = readStat(pid);
    return s !== undefined && s.state !== 'Z' && s.state !== 'X';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** False once the leader's pid has been taken by another process: then its session/group id is not ours to signal. */
function rootIsOurs(root: TreeRoot): boolean {
  if (!hasProc || root.start === undefined) return true;
  const s = readStat(root.pid);
  return s === undefined || s.start === root.start;
}

/** Which processes a scan takes, besides the tree of a root. */
export interface MemberScan {
  /** processes whose `SCALEMS_ATTEMPT` holds a mark this test accepts (read from /proc/<pid>/environ) */
  readonly mark?: MarkTest;
  /** only processes started at or after this time (clock ticks since boot) are tested for their mark */
  readonly since?: number;
}

/**
 * The live members of the tree of `root` (a session leader), by pid → start time: every process of
 * its session or group (which orphans keep after reparenting), every process whose environment carries
 * a mark `scan.mark` accepts (which finds daemons: they left the session and were reparented), and
 * every descendant of a member or of a `known` process (which catches members that made a session of
 * their own, e.g. with `setsid`, while their parent was alive). Empty where there is no /proc.
 */
export function treeMembers(
  root: TreeRoot | undefined,
  known: ReadonlyMap<number, string> = new Map(),
  scan: MemberScan = {},
): Map<number, string> {
  const members = new Map<number, string>();
  if (!hasProc) return members;
  const all = new Map<number, ProcStat>();
  for (const name of readdirSync('/proc')) {
    const pid = Number(name);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid) continue;
    const s = readStat(pid);
    if (s !== undefined) all.set(pid, s);
  }
  const children = new Map<number, number[]>();
  for (const [pid, s] of all) {
    let list = children.get(s.ppid);
    if (list === undefined) children.set(s.ppid, (list = []));
    list.push(pid);
  }
  const queue: number[] = [];
  const add = (pid: number): void => {
    const s = all.get(pid);
    if (s === undefined || members.has(pid) || s.state === 'Z' || s.state === 'X') return;
    members.set(pid, s.start);
    queue.push(pid);
  };
  if (root !== undefined && rootIsOurs(root)) {
    add(root.pid);
    for (const [pid, s] of all) if (s.session === root.pid || s.pgrp === root.pid) add(pid);
  }
  for (const [pid, start] of known) if (all.get(pid)?.start === start) add(pid);
  const { mark } = scan;
  if (mark !== undefined) {
    const since = scan.since ?? (root?.start !== undefined ? Number(root.start) : 0);
    for (const [pid, s] of all) if (!members.has(pid) && Number(s.start) >= since && hasMark(pid, mark)) add(pid);
  }
  while (queue.length > 0) for (const c of children.get(queue.pop()!) ?? []) add(c);
  return members;
}

function signalTree(root: TreeRoot | undefined, members: ReadonlyMap<number, string>, signal: NodeJS.Signals): void {
  if (root !== undefined && rootIsOurs(root)) {
    try {
      process.kill(-root.pid, signal);
    } catch {
      // the group is empty
    }
  }
  for (const [pid, start] of members) {
    if (hasProc && readStat(pid)?.start !== start) continue; // gone, or the pid was reused
    try {
      process.kill(pid, signal);
    } catch {
      // already gone
    }
  }
}

/** ms after SIGKILL that `endMembers` waits for the processes it signalled to be gone (the spawner's sweep: 60 s) */
const UNKILLABLE_MS = 60_000;

/** True while the leader's process group has a member (one cheap syscall; no /proc scan). */
export function groupAlive(root: TreeRoot): boolean {
  if (!rootIsOurs(root)) return false;
  try {
    process.kill(-root.pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * SIGTERM to the tree (and to the processes whose mark `mark` accepts), SIGKILL after `graceSeconds` to what is left of
 * it; resolves when nothing is left.
 */
export function killTree(root: TreeRoot, graceSeconds: number, mark?: MarkTest): Promise<void> {
  return endMembers(root, { mark }, graceSeconds);
}

/**
 * Ends every process whose mark `scan.mark` accepts (and its descendants), as `killTree` ends a tree: the leftovers
 * of attempts whose programs have exited, or of an earlier run. Resolves at once where there is no /proc.
 */
export function killMarked(scan: MemberScan & { readonly mark: MarkTest }, graceSeconds: number): Promise<void> {
  return endMembers(undefined, scan, graceSeconds);
}

async function endMembers(root: TreeRoot | undefined, scan: MemberScan, graceSeconds: number): Promise<void> {
  let members = treeMembers(root, new Map(), scan);
  if (root === undefined && members.size === 0) return;
  const termed = new Set<number>(members.keys());
  signalTree(root, members, 'SIGTERM');
  const deadline = Date.now() + Math.max(0, graceSeconds) * 1000;
  let killed = false;
  for (let round = 0; ; round++) {
    await sleep(Math.min(10 * (round + 1), 100));
    members = treeMembers(root, members, scan);
    if (members.size === 0 && (hasProc || root === undefined || !groupAlive(root))) return;
    // what SIGKILL has not ended in a minute it will not (another user's process, one stuck in the kernel): the cores
    // held for the tree (Job.holdUntil) and the shutdown wait no longer, as the spawner's own sweep gives up then
    if (Date.now() - deadline > UNKILLABLE_MS) return;
    if (!killed && Date.now() >= deadline) killed = true;
    if (killed) {
      signalTree(root, members, 'SIGKILL');
      continue;
    }
    const newcomers = new Map([...members].filter(([pid]) => !termed.has(pid)));
    for (const pid of newcomers.keys()) termed.add(pid);
    if (newcomers.size > 0) signalTree(root, newcomers, 'SIGTERM');
  }
}

// ------------------------------------------------------------------ when this process goes away

let exitHooked = false;
const signals: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];
const handlers = new Map<NodeJS.Signals, () => void>();
/** Interrupted: ending its trees before it dies. No handler is installed again: a second interrupt kills it. */
let dying = false;

/** Detached trees outlive their parent: when this process exits, take them along. */
function installExitHooks(): void {
  if (!exitHooked) {
    exitHooked = true;
    process.on('exit', () => {
      for (const tree of live)
        signalTree(tree.root, treeMembers(tree.root, new Map(), { mark: marks.get(tree) }), 'SIGKILL');
    });
  }
  for (const signal of signals) {
    if (handlers.has(signal) || dying) continue;
    const handler = (): void => {
      // Someone else handles this signal: they decide whether the program ends (the exit hook still runs).
      if (process.listenerCount(signal) > 1) return;
      dying = true;
      // what runs now is ended by this process: no outcome of it is recorded, nothing more starts (interrupt.ts)
      markInterrupted();
      uninstallSignalHandlers();
      // The spawners first: each drops the programs waiting in it for cores, ends the trees it started, and exits.
      // A tree ended here before a spawner has read that its owner is going would free a core, which the next
      // program waiting there would take: it would start, to be ended at once. Then what is left (if a spawner
      // failed to end a tree of its own).
      const spawners = [...interruptHooks].map((hook) => hook().catch(() => undefined));
      void Promise.all(spawners)
        .then(() => Promise.all([...live].map((t) => t.kill())))
        .finally(() => {
          process.kill(process.pid, signal);
          // still here: the signal is ignored (this is PID 1 of a container, or a handler added since kept it), and
          // this process, its work ended and nothing more to start (interrupt.ts), must not linger
          setTimeout(() => process.exit(128 + (constants.signals[signal] ?? 0)), 1000);
        });
    };
    handlers.set(signal, handler);
    process.on(signal, handler);
  }
}

/**
 * Until the returned function is called, `hook` runs too when this process is interrupted (SIGINT, SIGTERM, SIGHUP,
 * nobody else handling it), and the process ends only once it has resolved: a spawner, which may have started
 * programs it has not told about yet, ends what it started.
 */
export function whenInterrupted(hook: () => Promise<void>): () => void {
  interruptHooks.add(hook);
  installExitHooks();
  return () => {
    interruptHooks.delete(hook);
    uninstallWhenUnneeded();
  };
}

/** The signal handlers stay while a live tree or an interrupt hook needs them. */
function uninstallWhenUnneeded(): void {
  if (live.size === 0 && interruptHooks.size === 0) uninstallSignalHandlers();
}

function uninstallSignalHandlers(): void {
  for (const [signal, handler] of handlers) process.off(signal, handler);
  handlers.clear();
}

/** The trees started by this process that are still running. */
export function liveTrees(): readonly ProcessTree[] {
  return [...live];
}
