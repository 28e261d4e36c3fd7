/**
 * The spawner: one small Node process per owner (a `processes()` backend, a remote task host such as a Slurm agent)
 * that makes each attempt's working directory and output files and forks its program (through the native forker where
 * it was built: `forker.ts`), so that none of it happens in the owner. Why: a fork copies the page tables of the
 * process that forks, and every page another thread of it writes before the child execs (libuv's thread pool, the
 * collector); in a big driver that cost about twice what it costs a bare Node, and the directory and files were more
 * system calls on the thread pool. The spawner does them
 * synchronously in its own small address space, from one line of JSON per program (`spawner-program.ts`), and
 * answers with the pid and, later, the exit status. The trees stay the owner's: it ends them (`killTree`) on cancel,
 * walltime and exit, as before.
 *
 * It is also the watchdog: it runs in a session of its own, and when the pipe from its owner reaches end of file
 * without a QUIT (the owner died, even by SIGKILL), it ends the trees it started that may still have members, and
 * every process carrying one of the owner's marks, then exits. An owner that is interrupted (SIGINT, SIGTERM, SIGHUP)
 * closes that pipe itself and exits only once the spawner has: a program started but not yet reported is ended too.
 * It keeps no event loop of the owner alive while no program runs.
 *
 * If it dies, the attempts it started fail with `WorkerCrashedError` (their trees are ended by their owners, the
 * programs it may have started for attempts it had not answered yet by their marks), and the next attempt starts
 * another.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { WorkerCrashedError } from '../../errors';
import { isInterrupted } from '../interrupt';
import { forkerPath } from './forker';
import { MARK_VARIABLE, withMark } from './marks';
import {
  adoptTree,
  killMarked,
  whenInterrupted,
  type AdoptedTree,
  type ProcessTree,
  type TreeRoot,
  type TreeWatcher,
} from './process-tree';
import { SPAWNER_NAME, SPAWNER_PROGRAM, SpawnerCommand, SpawnerReply, type SpawnStage } from './spawner-program';

/** One program to start; `G`: the gate its cores are held at (a `Spawner`'s, or a `SpawnerPool`'s). */
export interface SpawnRequest<G = SpawnerGate> {
  /** the program and its arguments (no shell) */
  readonly command: readonly string[];
  /** its working directory */
  readonly cwd: string;
  /** true: `cwd` exists already (inputs were staged into it); else the spawner makes it afresh */
  readonly made: boolean;
  readonly stdout: string;
  readonly stderr: string;
  /** a file to read stdin from */
  readonly stdinPath?: string;
  /** text to write to its stdin */
  readonly stdinText?: string;
  /**
   * Its environment: this process's (`process.env` as it is when `start` is called) with these variables set over it
   * (and the mark added)
   */
  readonly env: Readonly<Record<string, string>>;
  /** the attempt's mark (`marks.ts`) */
  readonly mark?: string;
  /** seconds from SIGTERM to SIGKILL when its tree is ended */
  readonly graceSeconds: number;
  /**
   * When it starts: at once (none), when `go()` is called (`'go'`), or once `cores` of the gate's are free (the
   * spawner holds the cores of the executor: its programs start one after the other without waiting for this process)
   */
  readonly when?: 'go' | { readonly gate: G; readonly cores: number };
}

/** What starts programs: a `Spawner`, or a `SpawnerPool` of them. */
export interface ProgramStarter<G = SpawnerGate> {
  start(request: SpawnRequest<G>): Spawning;
}

/** The cores of one executor, held in the spawner (see `Spawner.gate`). */
export interface SpawnerGate {
  readonly id: number;
  readonly cores: number;
}

/** A program handed to the spawner. */
export interface Spawning {
  /** resolves once it runs; undefined if it was dropped before it started (`leave`) */
  readonly tree: Promise<ProcessTree | undefined>;
  /** starts it now (`when: 'go'`) */
  go(): void;
  /**
   * It (`when: 'go'`) may start before its GO, on the core that the exit of a program of the same spawner frees, one
   * that started at once or on GO and was not left: those named first, first (core-gate.ts, "Heirs"). `started` is
   * called as its start is read, before the tree resolves, and before that exit is reported.
   */
  next(started: () => void): void;
  /**
   * The attempt was stopped: drop it if it has not started; if it runs, its tree is ending, and its cores come back
   * when it exits.
   * Resolves once the spawner has been told (written to its pipe, with whatever else was sent meanwhile): end a
   * running tree only then, or the spawner, seeing it exit first, starts a program that the same teardown leaves next.
   */
  leave(): Promise<void>;
  /**
   * Drops it if it has not started yet (its `tree` then resolves undefined), so that it can be started elsewhere;
   * nothing if it runs. For a `SpawnerPool`, which moves a waiting program to a spawner with a free core.
   */
  withdraw(): void;
}

/** A program that is never started: dropped at once. */
const DROPPED: Spawning = {
  tree: Promise.resolve(undefined),
  go: () => undefined,
  next: () => undefined,
  leave: () => Promise.resolve(),
  withdraw: () => undefined,
};

/** A program the spawner could not start: where (`stage`), and the error's errno code and message. */
export class SpawnFailure extends Error {
  constructor(
    readonly stage: SpawnStage,
    readonly code: string | undefined,
    message: string,
  ) {
    super(message);
  }
}

interface Waiting {
  readonly request: SpawnRequest;
  /** named next (`Spawning.next`): told of its start before anything else is */
  started?: () => void;
  resolve(tree: ProcessTree | undefined): void;
  reject(reason: Error): void;
}

type Reply =
  | [typeof SpawnerReply.started, number, number, string | null]
  | [typeof SpawnerReply.failed, number, SpawnStage, string | null, string]
  | [typeof SpawnerReply.exited, number, number | null, NodeJS.Signals | null, 0 | 1];

export class Spawner implements TreeWatcher, ProgramStarter {
  #child: ChildProcess | undefined;
  /** the environment the spawner was started with: requests send what differs from it */
  #base: Readonly<Record<string, string | undefined>> = {};
  readonly #waiting = new Map<number, Waiting>();
  readonly #running = new Map<number, AdoptedTree>();
  /** trees whose group outlived their leader: the spawner watches them until they have been ended */
  readonly #kept = new Set<string>();
  /** stops the spawner being ended with the others when this process is interrupted */
  #unhook: (() => void) | undefined;
  #ids = 0;
  #gates = 0;
  #out: string[] = [];
  /** waiting for what is in `#out` now to be written (`leave()`) */
  #sent: Array<() => void> = [];
  #in = '';

  /**
   * @param prefix the marks of the owner's attempts start with it: if the owner dies, the spawner also ends every
   *   process that carries one. '' (the default): only the trees it started.
   * @param graceSeconds from SIGTERM to SIGKILL when it ends them
   */
  constructor(
    readonly prefix = '',
    readonly graceSeconds = 3,
  ) {}

  /** The spawner's pid while it runs. */
  get pid(): number | undefined {
    return this.#child?.pid;
  }

  /** The cores of an executor, to be held here: its programs start as soon as theirs are free. */
  gate(cores: number): SpawnerGate {
    return { id: ++this.#gates, cores };
  }

  /**
   * Makes the working directory and files of `request` at once, and starts its program in a session of its own when
   * `request.when` says. Its `tree` rejects with `SpawnFailure` if it could not, with `WorkerCrashedError` if the
   * spawner died first.
   */
  start(request: SpawnRequest): Spawning {
    // This process is ending its work before it dies (interrupt.ts): nothing more starts, and no spawner is started
    // again. (A SpawnerPool moving a waiting program to a lane whose spawner was abandoned at the interrupt launched a
    // new spawner there, which started it.)
    if (isInterrupted()) return DROPPED;
    const child = this.#child ?? this.#launch();
    const id = ++this.#ids;
    const { when } = request;
    this.#send([
      SpawnerCommand.start,
      id,
      request.command,
      request.cwd,
      request.made,
      request.stdout,
      request.stderr,
      request.stdinPath ?? null,
      request.stdinText ?? null,
      changes(request.env, request.mark, this.#base),
      when === undefined ? 0 : when === 'go' ? -1 : when.gate.id,
      when === undefined || when === 'go' ? 0 : when.gate.cores,
      when === undefined || when === 'go' ? 0 : when.cores,
    ]);
    if (this.#waiting.size + this.#running.size === 0) {
      (child.stdout as Readable & { ref(): void }).ref();
      // and the process: if it dies, its pipe closes before its exit is read, and the owner's event loop, with nothing
      // else to do, ended there, its tasks never settled (a program of Node's exited 13, "unsettled top-level await")
      child.ref();
    }
    const tree = new Promise<ProcessTree | undefined>((resolve, reject) =>
      this.#waiting.set(id, { request, resolve, reject }),
    );
    return {
      tree,
      go: () => {
        if (this.#waiting.has(id)) this.#send([SpawnerCommand.go, id]);
      },
      next: (started) => {
        const w = this.#waiting.get(id);
        if (w === undefined) return;
        w.started = started;
        this.#send([SpawnerCommand.next, id]);
      },
      leave: () => {
        if (this.#waiting.has(id) || this.#running.has(id)) this.#send([SpawnerCommand.leave, id]);
        return this.#written();
      },
      withdraw: () => {
        if (this.#waiting.has(id)) this.#send([SpawnerCommand.withdraw, id]);
      },
    };
  }

  arm(): void {}

  started(): void {}

  /** A tree that outlived its leader has been ended: the spawner need not watch it any more. */
  ended(root: TreeRoot): void {
    const spec = specOf(root);
    if (this.#kept.delete(spec) && this.#child !== undefined)
      this.#send([SpawnerCommand.done, root.pid, root.start ?? null]);
  }

  /** Stops the spawner without it ending anything (the owner has ended its trees); resolves once it has exited. */
  async close(): Promise<void> {
    const child = this.#child;
    this.#child = undefined;
    this.#kept.clear();
    this.#unhook?.();
    this.#unhook = undefined;
    if (child === undefined) return;
    this.#lose(child, new WorkerCrashedError('the spawner was closed while the program ran'));
    if (child.exitCode !== null || child.signalCode !== null) return;
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    child.ref(); // until it has gone
    (child.stdout as Readable & { ref(): void }).ref();
    this.#flush(child);
    child.stdin!.end(`${JSON.stringify([SpawnerCommand.quit])}\n`);
    await exited;
  }

  #launch(): ChildProcess {
    const env = { ...process.env };
    delete env.NODE_OPTIONS; // no loader, no debugger: the programs get it back as a change (`changes`)
    const child = spawn(
      process.execPath,
      ['--single-threaded', '-e', SPAWNER_PROGRAM, SPAWNER_NAME, this.prefix, String(this.graceSeconds), forkerPath()],
      // in a session of its own: an interrupt of the owner's terminal reaches the owner, which ends the trees
      { detached: true, stdio: ['pipe', 'pipe', 'inherit'], env, windowsHide: true },
    );
    this.#base = env;
    this.#child = child;
    child.on('error', () => undefined); // no Node at execPath: reported as its exit
    child.stdin!.on('error', () => undefined); // it died: see 'exit'
    child.stdout!.setEncoding('utf8');
    child.stdout!.on('data', (chunk: string) => this.#receive(chunk));
    // interrupted, the owner waits for its spawner to end what it started: it may have started a program it has not
    // told about yet (that program is in no tree the owner knows)
    const unhook = whenInterrupted(() => this.#abandon(child));
    this.#unhook = unhook;
    child.once('exit', (code, signal) => {
      unhook();
      if (this.#unhook === unhook) this.#unhook = undefined;
      if (this.#child === child) this.#child = undefined;
      this.#lose(
        child,
        new WorkerCrashedError(
          `the spawner (pid ${child.pid ?? '?'}) that started its program died ` +
            `(${signal !== null ? `signal ${signal}` : `exit code ${String(code)}`}): the program was ended; ` +
            `the next attempts start another spawner`,
        ),
      );
    });
    child.unref();
    (child.stdin as Writable & { unref(): void }).unref();
    (child.stdout as Readable & { unref(): void }).unref();
    return child;
  }

  /**
   * This process is going away: the spawner is told so as if it had died (its pipe closes without QUIT: it ends every
   * tree it started, then exits), and nothing more is sent to it. Resolves once it has exited.
   */
  #abandon(child: ChildProcess): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
    const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
    if (this.#child === child) this.#drop();
    child.ref();
    child.stdin!.end();
    return exited;
  }

  /** The spawner is gone (or going): what it had not answered, and the programs it started, cannot be followed. */
  #lose(child: ChildProcess, reason: WorkerCrashedError): void {
    const unanswered = [...this.#waiting.values()];
    this.#waiting.clear();
    const running = [...this.#running.values()];
    this.#running.clear();
    this.#kept.clear();
    this.#drop();
    this.#in = '';
    if (this.#child === undefined) (child.stdout as Readable & { unref(): void }).unref();
    for (const tree of running) tree.lost(reason);
    // a program it started before it could answer carries its attempt's mark: end it by that
    const marks = new Set(unanswered.flatMap((w) => (w.request.mark !== undefined ? [w.request.mark] : [])));
    const ended =
      marks.size > 0 ? killMarked({ mark: (t) => marks.has(t) }, this.graceSeconds).catch(() => undefined) : undefined;
    for (const w of unanswered) {
      if (ended === undefined) w.reject(reason);
      else void ended.then(() => w.reject(reason));
    }
  }

  #receive(chunk: string): void {
    this.#in += chunk;
    let nl: number;
    while ((nl = this.#in.indexOf('\n')) >= 0) {
      const reply = JSON.parse(this.#in.slice(0, nl)) as Reply;
      this.#in = this.#in.slice(nl + 1);
      this.#answer(reply);
    }
  }

  #answer(reply: Reply): void {
    const id = reply[1];
    switch (reply[0]) {
      case SpawnerReply.started: {
        const w = this.#waiting.get(id);
        if (w === undefined) return;
        this.#waiting.delete(id);
        const start = reply[3];
        const root: TreeRoot = start !== null ? { pid: reply[2], start } : { pid: reply[2] };
        const adopted = adoptTree(root, { graceSeconds: w.request.graceSeconds, mark: w.request.mark, watcher: this });
        this.#running.set(id, adopted);
        w.started?.();
        w.resolve(adopted.tree);
        return;
      }
      case SpawnerReply.failed: {
        const w = this.#waiting.get(id);
        if (w === undefined) return;
        this.#waiting.delete(id);
        this.#idle();
        if (reply[2] === 'dropped') w.resolve(undefined);
        else w.reject(new SpawnFailure(reply[2], reply[3] ?? undefined, reply[4]));
        return;
      }
      case SpawnerReply.exited: {
        const adopted = this.#running.get(id);
        if (adopted === undefined) return;
        this.#running.delete(id);
        this.#idle();
        const groupAlive = reply[4] === 1;
        if (groupAlive) this.#kept.add(specOf(adopted.tree.root));
        adopted.exit({ code: reply[2], signal: reply[3] }, groupAlive);
        return;
      }
    }
  }

  /** Nothing to wait for: the owner's event loop need not stay alive for the spawner. */
  #idle(): void {
    if (this.#waiting.size + this.#running.size === 0 && this.#child !== undefined) {
      (this.#child.stdout as Readable & { unref(): void }).unref();
      this.#child.unref();
    }
  }

  #send(message: unknown[]): void {
    const child = this.#child;
    if (child === undefined) return;
    if (this.#out.push(`${JSON.stringify(message)}\n`) === 1) setImmediate(() => this.#flush(child));
  }

  #flush(child: ChildProcess): void {
    if (this.#out.length === 0 || child !== this.#child) return;
    const text = this.#out.join('');
    this.#out = [];
    if (child.stdin!.writable) child.stdin!.write(text);
    this.#wrote();
  }

  /** Resolves once what has been sent so far is written to the spawner's pipe (or will never be). */
  #written(): Promise<void> {
    if (this.#out.length === 0) return Promise.resolve();
    return new Promise<void>((resolve) => this.#sent.push(resolve));
  }

  #wrote(): void {
    for (const resolve of this.#sent.splice(0)) resolve();
  }

  /** What was not sent yet never will be. */
  #drop(): void {
    this.#out = [];
    this.#wrote();
  }
}

/**
 * The variables of the environment `process.env` under `over`, with `mark` added (`withMark`), that differ from
 * `base` (null: not in it). One pass over `process.env`, whose every read is a call into the C++ side: a program's
 * start read it three times over before (a copy, the copy with its mark, the comparison).
 */
export function changes(
  over: Readonly<Record<string, string>>,
  mark: string | undefined,
  base: Readonly<Record<string, string | undefined>>,
): Record<string, string | null> {
  const env = process.env;
  const d: Record<string, string | null> = {};
  const names = Object.keys(env);
  let kept = 0; // how many of `base`'s variables are still there
  for (const k of names) {
    if (Object.hasOwn(base, k)) kept++;
    if (Object.hasOwn(over, k)) continue;
    const v = env[k];
    if (v !== undefined && base[k] !== v) d[k] = v;
  }
  for (const k in over) {
    const v = over[k];
    if (v !== undefined && base[k] !== v) d[k] = v;
  }
  if (kept < Object.keys(base).length) {
    const present = new Set(names);
    for (const k in base) if (!present.has(k) && !Object.hasOwn(over, k)) d[k] = null;
  }
  if (mark !== undefined) {
    const marked = withMark({ [MARK_VARIABLE]: over[MARK_VARIABLE] ?? env[MARK_VARIABLE] }, mark)[MARK_VARIABLE]!;
    if (base[MARK_VARIABLE] !== marked) d[MARK_VARIABLE] = marked;
    else delete d[MARK_VARIABLE];
  }
  return d;
}

function specOf(root: TreeRoot): string {
  return `${root.pid}:${root.start ?? '0'}`;
}
