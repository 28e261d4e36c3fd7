/**
 * A watchdog that ends a backend's process trees if this (driving) process dies without doing so, as on SIGKILL: Node
 * has no `prctl(PR_SET_PDEATHSIG)`, and the trees lead sessions of their own. One small `/bin/sh` per backend, started
 * (detached, in a session of its own) before its first program, holds the read end of a pipe from this process and is
 * told each tree that starts and ends (`+ <pid>:<start>` / `- <pid>:<start>`). A normal shutdown writes `q` and closes
 * the pipe: it exits at once. When the pipe reaches end of file without `q` (this process died), it execs Node once
 * to end, as `killTree` would (SIGTERM, SIGKILL after the grace period), every process of the trees still recorded,
 * their descendants, and every process whose `SCALEMS_ATTEMPT` holds a token with the backend's prefix (the daemons
 * that left their session: see `marks.ts`). It costs no Node start while all is well, and keeps no event loop alive.
 * Linux (/proc); elsewhere there is no watchdog.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket } from 'node:net';
import { MARK_VARIABLE } from './marks';
import type { TreeRoot, TreeWatcher } from './process-tree';

/** The shell part: records the trees; on end of file (not after `q`) runs the sweep with them. */
const WATCH = `trap '' INT HUP
g=' '
while IFS= read -r l; do
  case $l in
    q) exit 0 ;;
    '+ '*) g="$g\${l#+ } " ;;
    '- '*) x=" \${l#- } "; case $g in *"$x"*) g="\${g%%"$x"*} \${g#*"$x"}" ;; esac ;;
  esac
done
exec "$1" -e "$4" "$2" "$3" $g`;

/** The sweep (plain JavaScript, run by `node -e`): argv = prefix, grace seconds, then `<pid>:<start>` of each tree. */
const SWEEP = `'use strict';
const fs = require('fs');
const [prefix, graceText, ...specs] = process.argv.slice(1);
const key = ${JSON.stringify(MARK_VARIABLE + '=')};
const groups = specs.map((s) => s.split(':')).map(([pid, start]) => ({ pid: Number(pid), start: Number(start) }));
const stat = (pid) => {
  try {
    const t = fs.readFileSync('/proc/' + pid + '/stat', 'latin1');
    const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), start: Number(f[19]) };
  } catch { return undefined; }
};
const marked = (pid) => {
  let env;
  try { env = fs.readFileSync('/proc/' + pid + '/environ', 'latin1'); } catch { return false; }
  for (const v of env.split('\\0'))
    if (v.startsWith(key)) return v.slice(key.length).split(':').some((t) => t.startsWith(prefix));
  return false;
};
const members = () => {
  const all = new Map();
  for (const name of fs.readdirSync('/proc')) {
    const pid = Number(name);
    if (!(pid > 0) || pid === process.pid) continue;
    const s = stat(pid);
    if (s !== undefined && s.state !== 'Z' && s.state !== 'X') all.set(pid, s);
  }
  // a group whose leader's pid now belongs to another process is not ours any more
  const ours = groups.filter((g) => { const l = all.get(g.pid); return l === undefined || l.start === g.start; });
  const found = new Set();
  const queue = [];
  const add = (pid) => { if (!found.has(pid) && all.has(pid)) { found.add(pid); queue.push(pid); } };
  for (const [pid, s] of all)
    if (ours.some((g) => (s.pgrp === g.pid || s.session === g.pid) && s.start >= g.start) || marked(pid)) add(pid);
  const children = new Map();
  for (const [pid, s] of all) { if (!children.has(s.ppid)) children.set(s.ppid, []); children.get(s.ppid).push(pid); }
  while (queue.length > 0) for (const c of children.get(queue.pop()) || []) add(c);
  return found;
};
const signal = (pid, sig) => { try { process.kill(pid, sig); } catch {} };
const started = Date.now();
const deadline = started + Math.max(0, Number(graceText) || 0) * 1000;
const termed = new Set();
let quiet = 0;
const round = () => {
  const found = members();
  quiet = found.size === 0 ? quiet + 1 : 0;
  if (quiet >= 3 || Date.now() - started > 60000) return;
  const kill = Date.now() >= deadline;
  for (const pid of found) {
    if (kill) signal(pid, 'SIGKILL');
    else if (!termed.has(pid)) { termed.add(pid); signal(pid, 'SIGTERM'); }
  }
  setTimeout(round, 50);
};
round();
`;

const SHELL = '/bin/sh';

/** The watchdog of one backend; started by the first `arm()`, ended by `close()` (and started again if used after). */
export class Watchdog implements TreeWatcher {
  #child: ChildProcess | undefined;
  readonly #watched = new Set<string>();

  /**
   * @param prefix the tokens of the backend's attempts start with it
   * @param graceSeconds from SIGTERM to SIGKILL when it ends what is left
   */
  constructor(
    readonly prefix: string,
    readonly graceSeconds: number,
  ) {}

  /** The watchdog's pid while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  arm(): void {
    if (this.#child !== undefined || !available()) return;
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // the sweep is plain JavaScript: no loader, no debugger
    const child = spawn(
      SHELL,
      ['-c', WATCH, 'scalems-watchdog', process.execPath, this.prefix, String(this.graceSeconds), SWEEP],
      { detached: true, stdio: ['pipe', 'ignore', 'ignore'], env, windowsHide: true },
    );
    child.on('error', () => undefined); // no shell: no watchdog (the trees are still ended by this process)
    child.stdin!.on('error', () => undefined); // it died: the next arm() starts another
    child.once('exit', () => {
      if (this.#child === child) this.#child = undefined;
    });
    child.unref();
    (child.stdin as Socket).unref();
    this.#child = child;
    for (const spec of this.#watched) this.#send(`+ ${spec}`);
  }

  started(root: TreeRoot): void {
    const spec = specOf(root);
    this.#watched.add(spec);
    this.#send(`+ ${spec}`);
  }

  ended(root: TreeRoot): void {
    const spec = specOf(root);
    if (this.#watched.delete(spec)) this.#send(`- ${spec}`);
  }

  /** Stops the watchdog without it ending anything (the owner has ended its trees); resolves once it has exited. */
  async close(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    this.#watched.clear();
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.ref(); // until it has gone
    child.stdin!.end('q\n');
    await exited;
  }

  #send(line: string): void {
    const stdin = this.#child?.stdin;
    if (stdin != null && stdin.writable) stdin.write(`${line}\n`);
  }
}

function specOf(root: TreeRoot): string {
  return `${root.pid}:${root.start ?? '0'}`;
}

let usable: boolean | undefined;

/** Linux with /proc and a shell. */
function available(): boolean {
  usable ??= existsSync('/proc/self/environ') && existsSync(SHELL);
  return usable;
}
