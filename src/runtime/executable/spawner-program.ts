/**
 * The spawner's own program (see `spawner.ts` for why it exists and for its main side): plain JavaScript that
 * `node -e` runs, so that it runs the same from `src/` under jest, from `dist/`, and inside a Slurm agent, and loads
 * nothing of this package. Its wire codes, and what it does when its owner dies (`SWEEP`), are here too.
 *
 * Protocol: one JSON array per line, on the spawner's stdin (from the owner) and stdout (to the owner).
 *   owner → spawner  [START, id, argv, cwd, made, stdout, stderr, stdinPath|null, stdinText|null, env changes,
 *                     gate, gate cores, cores]
 *                           makes the directory (unless made) and opens the files at once (a FIFO as stdin is
 *                           opened by the program's own process, see FIFO_STDIN); then starts the program at once
 *                           (gate 0), on GO (gate -1), or once `cores` of the gate's are free (gate > 0)
 *                    [GO, id]               start it now
 *                    [NEXT, id]             it (waiting for GO) may start at once on the core that the exit of a
 *                                           program started at once or on GO frees, unless that program was left:
 *                                           the first such one named, in the order named (core-gate.ts, "Heirs")
 *                    [LEAVE, id]            the attempt was stopped: drop it if it waits; if it runs, it is being
 *                                           ended, and gives its cores back when it exits (no heir starts then)
 *                    [WITHDRAW, id]         drop it if it waits (to start it elsewhere); nothing if it runs
 *                    [DONE, pid, start]     the tree of this leader has been ended: stop watching it
 *                    [QUIT]                 a normal shutdown: exit without ending anything
 *   spawner → owner  [STARTED, id, pid, start|null]
 *                    [FAILED, id, stage, errno code|null, message]   stage: dir, stdout, stderr, stdin, spawn, dropped
 *                    [EXITED, id, code|null, signal|null, group alive 0|1]   (its cores are free again)
 * `env changes` are the variables that differ from the spawner's own environment (null: removed).
 */
import { MARK_VARIABLE } from './marks';

/** Owner → spawner. */
export const SpawnerCommand = {
  start: 's',
  go: 'g',
  next: 'n',
  leave: 'l',
  withdraw: 'w',
  done: 'd',
  quit: 'q',
} as const;
/** Spawner → owner. */
export const SpawnerReply = { started: 's', failed: 'f', exited: 'x' } as const;
/** Where starting a program failed. */
export type SpawnStage = 'dir' | 'stdout' | 'stderr' | 'stdin' | 'spawn' | 'dropped';

/** What the spawner's process is called in `ps` (its first argument). */
export const SPAWNER_NAME = 'scalems-spawner';

/**
 * Ends, as `killTree` would (SIGTERM, then SIGKILL after the grace period), every process of the trees `specs` (a
 * set of `<pid>:<start>` of their leaders, read each round), their descendants, and every process whose
 * `SCALEMS_ATTEMPT` holds a token that starts with `prefix` (none if `prefix` is empty); then calls `done`. Plain
 * JavaScript, a function expression.
 */
const SWEEP = `function sweep(prefix, graceText, specs, done) {
const fs = require('fs');
const key = ${JSON.stringify(MARK_VARIABLE + '=')};
// read each round: a program the forker reports started meanwhile joins them
const groups = () =>
  [...specs].map((s) => s.split(':')).map(([pid, start]) => ({ pid: Number(pid), start: Number(start) }));
const stat = (pid) => {
  try {
    const t = fs.readFileSync('/proc/' + pid + '/stat', 'latin1');
    const f = t.slice(t.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]), pgrp: Number(f[2]), session: Number(f[3]), start: Number(f[19]) };
  } catch { return undefined; }
};
const marked = (pid) => {
  if (prefix === '') return false;
  let env;
  try { env = fs.readFileSync('/proc/' + pid + '/environ', 'latin1'); } catch { return false; }
  for (const v of env.split('\\0'))
    if (v.startsWith(key)) return v.slice(key.length).split(':').some((t) => t.startsWith(prefix));
  return false;
};
const members = () => {
  const all = new Map();
  let names = [];
  try { names = fs.readdirSync('/proc'); } catch {}
  for (const name of names) {
    const pid = Number(name);
    if (!(pid > 0) || pid === process.pid) continue;
    const s = stat(pid);
    if (s !== undefined && s.state !== 'Z' && s.state !== 'X') all.set(pid, s);
  }
  // a group whose leader's pid now belongs to another process is not ours any more
  const ours = groups().filter((g) => { const l = all.get(g.pid); return l === undefined || l.start === g.start; });
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
  if (quiet >= 3 || Date.now() - started > 60000) return done();
  const kill = Date.now() >= deadline;
  for (const pid of found) {
    if (kill) signal(pid, 'SIGKILL');
    else if (!termed.has(pid)) { termed.add(pid); signal(pid, 'SIGTERM'); }
  }
  setTimeout(round, 50);
};
round();
}`;

/**
 * The forker (`forker.ts`, `native/forker.c`), if the spawner was given its path and it starts: a program whose files
 * the forker is to open (`native`, set in `prepare`) is handed to it as one record of NUL-ended fields (its stdin's
 * text, if any, by its length), and counts as launched from then on (never dropped: it may have started);
 * the forker answers P (started), F (not started) and X (exited) lines. If it dies, so does this spawner: its owner
 * then fails the programs it started and ends their trees, as when a spawner dies.
 */
const FORKER = `let forker = null;
// it said it runs (its first line): until then, its end means it could not run here (a binary built for another
// machine, a library missing), and this spawner forks the programs itself
let forkerReady = false;
let readyTimer;
let toForker = [];
const signalNames = {};
for (const [name, n] of Object.entries(require('os').constants.signals)) signalNames[n] = name;
// records wait until it said it runs: one that is not a forker (a wrong SCALEMS_FORKER) is handed nothing
const flushForker = () => {
  if (forker === null || !forkerReady || toForker.length === 0) return;
  const text = toForker.join('');
  toForker = [];
  forker.stdin.write(text);
};
const fork = (p) => {
  const argv = p.fifo === null ? p.argv : ['/bin/sh', '-c', FIFO_STDIN, ...p.argv];
  const env = [];
  for (const k in p.changes) { const v = p.changes[k]; env.push(v === null ? k : k + '=' + v); }
  if (p.fifo !== null) env.push('SCALEMS_STDIN_FIFO=' + p.fifo);
  const head = [String(p.id), p.cwd, ...p.paths];
  const tail = [String(argv.length), ...argv, String(env.length), ...env];
  for (const f of [...head, ...tail]) {
    if (f.includes('\\0')) {
      const message = 'spawn: an argument, a path or an environment variable holds a null byte';
      return failed(p, 'spawn', 'ERR_INVALID_ARG_VALUE', message);
    }
  }
  // the text for its stdin, by its length in bytes (it may hold NUL bytes), or "-"
  const text = p.stdinText === null ? ['-'] : [String(Buffer.byteLength(p.stdinText)), p.stdinText];
  const record = [...head, ...text, ...tail].join('\\0') + '\\0';
  if (toForker.push(record) === 1) queueMicrotask(flushForker);
};
// a program prepared for the forker, forked here instead: its files opened again
const reopen = (p) => {
  const failure = openFiles(p);
  if (failure !== null) failed(p, failure[0], failure[1].code || null, failure[1].message);
  return failure === null;
};
const forked = (line) => {
  if (!forkerReady) {
    // nothing it says before it said it runs is believed (a program that is not a forker)
    if (line !== 'R') return;
    forkerReady = true;
    clearTimeout(readyTimer);
    return flushForker();
  }
  const f = line.split(' ');
  const p = programs.get(Number(f[1]));
  if (p === undefined) return;
  if (f[0] === 'P') {
    const pid = Number(f[2]), begun = f[3] === '-' ? null : f[3];
    p.pid = pid;
    p.spec = pid + ':' + (begun === null ? '0' : begun);
    trees.add(p.spec);
    send([R.started, p.id, pid, begun]);
    if (p.after !== null) send(p.after);
  } else if (f[0] === 'X') {
    const status = Number(f[2]), signal = status & 0x7f;
    const code = signal === 0 ? (status >> 8) & 0xff : null;
    exited(p, p.spec, code, signal === 0 ? null : signalNames[signal] || 'SIG' + signal, f[3] === '1');
  } else if (f[0] === 'F') {
    const [stage, code] = [f[2], f[3]], text = f.slice(4).join(' ');
    const path = p.paths[['stdout', 'stderr', 'stdin'].indexOf(stage)] || '';
    failed(p, stage, code, stage === 'spawn' ? text + ' (' + code + ')' : code + ': ' + text + ", open '" + path + "'");
  }
};
if (forkerPath) {
  const f = cp.spawn(forkerPath, [], { stdio: ['pipe', 'pipe', 'inherit'], windowsHide: true });
  f.on('error', () => {}); // not started (a binary of another machine's, say): the programs start with Node
  if (f.pid !== undefined) {
    forker = f;
    // one that runs but does not say so (not a forker: SCALEMS_FORKER=/bin/cat) is ended, and taken for one that
    // could not run
    readyTimer = setTimeout(() => { if (!forkerReady) f.kill('SIGKILL'); }, 5000);
    f.stdin.on('error', () => {});
    f.stdout.setEncoding('utf8');
    let text = '';
    f.stdout.on('data', (chunk) => {
      text += chunk;
      let nl;
      while ((nl = text.indexOf('\\n')) >= 0) {
        const line = text.slice(0, nl);
        text = text.slice(nl + 1);
        forked(line);
      }
    });
    f.once('exit', (code, signal) => {
      if (ending || quitting) return;
      const how = signal !== null ? 'signal ' + signal : 'exit code ' + code;
      if (!forkerReady) {
        process.stderr.write('scalems-spawner: the native forker ' + forkerPath + ' could not run (' + how + '): ' +
          "programs are started with Node's spawn instead. Build it again on this machine: node native/build.cjs " +
          'in the scalems package\\n');
        forker = null;
        toForker = [];
        // what was handed to it, none of it started (it said nothing): forked here, in the order handed
        for (const p of [...programs.values()]) {
          if (p.native && p.launched && p.pid === undefined) {
            p.launched = false;
            launch(p);
          }
        }
        return;
      }
      process.stderr.write('scalems-spawner: its forker (' + forkerPath + ') died (' + how + '): it ends too\\n');
      process.exit(70);
    });
  }
}`;

/**
 * The spawner (run by `node -e`; argv: its name, the mark prefix of its owner's attempts ('' for none), the grace
 * seconds). Everything per program is synchronous: the directory, the files, the fork. Its address space is a bare
 * Node's, and no other thread of it writes memory meanwhile, so a fork copies little.
 */
export const SPAWNER_PROGRAM = `'use strict';
// no error it makes is shown with a stack (their code and message go to the owner), and one is made for each program
// that exits (the test of its process group): making none is a good part of the cost of an error
Error.stackTraceLimit = 0;
const fs = require('fs');
const path = require('path');
const cp = require('child_process');
const [, prefix, graceText, forkerPath] = process.argv.slice(1);
const C = ${JSON.stringify(SpawnerCommand)};
const R = ${JSON.stringify(SpawnerReply)};
const base = Object.assign({}, process.env);
const trees = new Set();
let out = [];
const flush = () => { const text = out.join(''); out = []; process.stdout.write(text); };
const send = (m) => { if (out.push(JSON.stringify(m) + '\\n') === 1) setImmediate(flush); };
process.stdout.on('error', () => {});
// Signals meant for the owner's process group, session or unit (a terminal's Ctrl-C, \`systemctl stop\`, the end of the
// Slurm job step an agent runs in, which signals every process of the step) are the owner's to act on: a worker
// lets its running programs finish, an agent or driver that ends closes this pipe, and this spawner then ends them
// (below). Dying of SIGTERM, a spawner left its programs, in sessions of their own, running for good; ending
// them itself, it failed work its owner meant to finish, and took a program that exits 0 on SIGTERM for a success.
for (const s of ['SIGINT', 'SIGHUP', 'SIGPIPE', 'SIGTERM']) process.on(s, () => {});
const statBuffer = Buffer.alloc(1024);
const startOf = (pid) => {
  let fd;
  try {
    fd = fs.openSync('/proc/' + pid + '/stat', 'r');
    const t = statBuffer.toString('latin1', 0, fs.readSync(fd, statBuffer, 0, 1024, 0));
    return t.slice(t.lastIndexOf(')') + 2).split(' ')[19];
  } catch { return null; } finally { if (fd !== undefined) fs.closeSync(fd); }
};
// gates: id -> { free cores, queue of prepared programs waiting for theirs } (see core-gate.ts: first come, first
// served, nothing overtakes the first)
const gates = new Map();
// programs by id: prepared (waiting for cores, or for GO) or running
const programs = new Map();
// ids of programs waiting for GO that may start on the core a program's exit frees (NEXT), in the owner's order; one
// that started on GO or was dropped meanwhile is skipped
const heirs = [];
const inherit = () => {
  while (heirs.length > 0) {
    const p = programs.get(heirs.shift());
    if (p !== undefined && !p.launched && p.gate === -1) {
      launch(p);
      return p;
    }
  }
};
const closeFds = (p) => { for (const fd of p.fds.splice(0)) fs.closeSync(fd); };
// The exit of a program gives its cores back and starts the next at once (\`exited\`); a running program that is left
// (being ended) keeps them until then, so that nothing starts beside it in its grace period. The owner ends a running
// tree only after its LEAVE is written (Spawning.leave), so a teardown's LEAVEs of the programs waiting behind it are
// read before the exit its kill causes. Cores given back otherwise (a program that could not start) start the next
// once the commands at hand are read, not at once.
const release = (p, exited) => {
  if (p.holds === 0) return;
  const gate = gates.get(p.gate);
  gate.free += p.holds;
  p.holds = 0;
  if (exited) pump(gate);
  else pumpSoon(gate);
};
const due = new Set();
const pumpSoon = (gate) => {
  if (due.size === 0) setImmediate(() => { const gs = [...due]; due.clear(); for (const g of gs) pump(g); });
  due.add(gate);
};
const pump = (gate) => {
  while (gate.queue.length > 0 && gate.queue[0].cores <= gate.free) {
    const p = gate.queue.shift();
    gate.free -= p.cores;
    p.holds = p.cores;
    launch(p);
  }
};
// the attempt's directory, fresh, and its task's: two mkdir calls where the task's directory is new (a recursive
// mkdir tries the attempt's first, and fails)
const makeDir = (cwd) => {
  try {
    fs.mkdirSync(path.dirname(cwd));
  } catch (e) {
    if (e.code === 'ENOENT') fs.mkdirSync(path.dirname(cwd), { recursive: true });
    else if (e.code !== 'EEXIST') throw e;
  }
  if (fs.mkdirSync(cwd, { recursive: true }) === undefined) {
    fs.rmSync(cwd, { recursive: true, force: true }); // an attempt's directory from a run that died
    fs.mkdirSync(cwd, { recursive: true });
  }
};
// opens the program's files into p.fds (stdin's unless there is none, or it is a FIFO: see FIFO_STDIN); returns
// null, or where it failed and the error
const openFiles = (p) => {
  let stage = 'stdout';
  try {
    p.fds.push(fs.openSync(p.paths[0], 'w'));
    stage = 'stderr';
    p.fds.push(fs.openSync(p.paths[1], 'w'));
    stage = 'stdin';
    if (p.paths[2] !== '') {
      if (fs.statSync(p.paths[2]).isFIFO()) [p.fifo, p.paths[2]] = [p.paths[2], ''];
      else p.fds.push((p.input = fs.openSync(p.paths[2], 'r')));
    }
    return null;
  } catch (e) {
    closeFds(p);
    return [stage, e];
  }
};
const prepare = (m) => {
  const id = m[1], cwd = m[3], stdinPath = m[7], gateId = m[10];
  const p = { id, argv: m[2], cwd, fds: [], input: m[8] !== null ? 'pipe' : 'ignore', stdinText: m[8], changes: m[9],
    gate: gateId, cores: m[12], holds: 0, launched: false, pid: undefined, left: false, fifo: null,
    native: forker !== null, paths: [m[5], m[6], stdinPath === null ? '' : stdinPath], spec: null, after: null };
  try {
    if (!m[4]) makeDir(cwd);
  } catch (e) {
    send([R.failed, id, 'dir', e.code || null, e.message]);
    return;
  }
  const failure = openFiles(p);
  if (failure !== null) return void send([R.failed, id, failure[0], failure[1].code || null, failure[1].message]);
  // made (or emptied) here as for a program forked here, and opened again by the forker as it starts the program
  if (p.native) {
    closeFds(p);
    p.input = p.stdinText !== null ? 'pipe' : 'ignore';
  }
  programs.set(id, p);
  if (gateId === 0) return launch(p);
  if (gateId === -1) return; // it starts on GO
  let gate = gates.get(gateId);
  if (gate === undefined) gates.set(gateId, (gate = { free: m[11], queue: [] }));
  p.cores = Math.min(p.cores, m[11]);
  gate.queue.push(p);
  pump(gate);
};
// A FIFO as stdin opens once something opens it for writing, which may be never: opened here, that would hold this
// process (a synchronous open), or a thread of libuv's four for each such program, and the others behind them, for
// good. So the program's own process opens it: /bin/sh, which then becomes the program (exec, with the arguments as
// they are: none goes through the shell's parsing). It waits there as a program waiting for its input does, on its
// cores, and is ended as any program is.
const FIFO_STDIN = 'f=$SCALEMS_STDIN_FIFO; unset SCALEMS_STDIN_FIFO; exec "$0" "$@" < "$f"';
// the owner is gone (its pipe closed without QUIT): nothing more starts, not even on the cores the sweep frees
let ending = false;
const drop = (p) => { programs.delete(p.id); closeFds(p); };
const launch = (p) => {
  const id = p.id;
  if (ending) return drop(p);
  p.launched = true;
  if (p.native) {
    if (forker !== null) return fork(p);
    if (!reopen(p)) return; // the forker could not run: forked here, its files opened again
  }
  try {
    const env = Object.assign({}, base);
    for (const k in p.changes) { const v = p.changes[k]; if (v === null) delete env[k]; else env[k] = v; }
    if (p.fifo !== null) env.SCALEMS_STDIN_FIFO = p.fifo;
    const [file, args] = p.fifo === null ? [p.argv[0], p.argv.slice(1)] : ['/bin/sh', ['-c', FIFO_STDIN, ...p.argv]];
    const child = cp.spawn(file, args, {
      cwd: p.cwd, env, stdio: [p.input, p.fds[0], p.fds[1]], detached: true, shell: false, windowsHide: true,
    });
    const pid = child.pid;
    if (pid === undefined) {
      programs.delete(id);
      child.once('error', (e) => failed(p, 'spawn', e.code || null, e.message));
      return;
    }
    p.pid = pid;
    child.on('error', () => {});
    const begun = startOf(pid);
    const spec = pid + ':' + (begun === null ? '0' : begun);
    trees.add(spec);
    send([R.started, id, pid, begun]);
    if (p.after !== null) send(p.after);
    if (p.stdinText !== null) { child.stdin.on('error', () => {}); child.stdin.end(p.stdinText); }
    child.once('exit', (code, signal) => {
      let alive = true;
      try { process.kill(-pid, 0); } catch (e) { alive = e.code === 'EPERM'; }
      exited(p, spec, code, signal, alive);
    });
  } catch (e) {
    failed(p, 'spawn', e.code || null, e.message);
  } finally {
    closeFds(p);
  }
};
// it did not start: its cores back, and the exit an heir's start held back (exited) told after it
const failed = (p, stage, code, message) => {
  programs.delete(p.id);
  release(p);
  send([R.failed, p.id, stage, code, message]);
  if (p.after !== null) send(p.after);
};
const exited = (p, spec, code, signal, alive) => {
  programs.delete(p.id);
  // cores held by the owner, not given back: the next program it named takes them now (its GO will find it runs)
  const heir = p.gate <= 0 && !p.left ? inherit() : undefined;
  release(p, true);
  if (!alive) trees.delete(spec);
  const m = [R.exited, p.id, code, signal, alive ? 1 : 0];
  // the heir's start is told first, so that it claims the core before this exit gives it back (core-gate.ts, "Heirs"):
  // one the forker starts, once the forker has answered
  if (heir !== undefined && heir.pid === undefined && programs.has(heir.id)) heir.after = m;
  else send(m);
};
${FORKER}
// the owner no longer wants it: a program still waiting is dropped; a running one is being ended, and keeps its cores
// until it exits (no heir starts then: the owner holds the cores of one it started on GO until its tree has ended);
// the owner only withdrawing it (to start it in another spawner), a running one goes on
const leave = (id, withdraw) => {
  const p = programs.get(id);
  if (p === undefined) return;
  if (p.launched) {
    if (!withdraw) p.left = true;
    return;
  }
  programs.delete(id);
  const gate = gates.get(p.gate);
  if (gate !== undefined) {
    const i = gate.queue.indexOf(p);
    if (i >= 0) gate.queue.splice(i, 1);
    pumpSoon(gate);
  }
  closeFds(p);
  send([R.failed, id, 'dropped', null, 'dropped']);
};
const sweep = ${SWEEP};
let quitting = false;
// a line longer than a chunk (a program's text for stdin) is joined once its end comes: searched again with each
// chunk, as it was, 50 MB took half a minute
let pending = [];
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => {
  if (chunk.indexOf('\\n') < 0) return void pending.push(chunk);
  const buffer = pending.length === 0 ? chunk : pending.join('') + chunk;
  pending = [];
  let start = 0, nl;
  while ((nl = buffer.indexOf('\\n', start)) >= 0) {
    const m = JSON.parse(buffer.slice(start, nl));
    start = nl + 1;
    if (m[0] === C.start) prepare(m);
    else if (m[0] === C.go) { const p = programs.get(m[1]); if (p !== undefined && !p.launched) launch(p); }
    else if (m[0] === C.next) heirs.push(m[1]);
    else if (m[0] === C.leave) leave(m[1], false);
    else if (m[0] === C.withdraw) leave(m[1], true);
    else if (m[0] === C.done) trees.delete(m[1] + ':' + (m[2] === null ? '0' : m[2]));
    else if (m[0] === C.quit) quitting = true;
  }
  if (start < buffer.length) pending.push(buffer.slice(start));
});
process.stdin.on('error', () => {});
// the owner closed the pipe: after QUIT, a normal shutdown; without, it died: end what it started
process.stdin.on('close', () => {
  if (quitting) process.exit(0);
  // the programs still waiting for cores or for GO are dropped: each exit the sweep causes would start the next
  ending = true;
  for (const p of [...programs.values()]) if (!p.launched) drop(p);
  for (const gate of gates.values()) gate.queue.length = 0;
  heirs.length = 0;
  sweep(prefix, graceText, trees, () => process.exit(0));
});
`;
