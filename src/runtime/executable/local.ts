/**
 * An executable attempt as a program on this host, never through a shell, started by the owner's spawner
 * (`spawner.ts`): the program leads its own session and process group, with stdout and stderr into its working
 * directory's files. Stopping
 * the attempt (cancel, walltime) ends the whole process tree: SIGTERM, then SIGKILL after the grace
 * period. Every attempt's processes carry its mark (`marks.ts`), so that this also reaches the ones that daemonised.
 * The local runner of `processes()`, and of any remote side that runs programs on its host.
 */
import { randomUUID } from 'node:crypto';
import { existsSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import type { Observable } from 'rxjs';
import { ExecutableFailedError, WorkerCrashedError } from '../../errors';
import type { ExecutableResult } from '../../task/executable';
import { footprint } from '../../task/requirements';
import { attemptOf } from '../backend';
import { isInterrupted } from '../interrupt';
import {
  executableResult,
  prepareExecutable,
  type ExecutableJob,
  type ExecutablePlace,
  type PreparedExecutable,
} from './attempt';
import type { CoreGate, GateTicket } from './core-gate';
import { launchCommand, rootEnv, type MpiOptions } from './mpi';
import type { ProcessTree } from './process-tree';
import { SpawnFailure, type ProgramStarter, type SpawnerGate, type Spawning } from './spawner';

/** `G`: the gate the starter holds cores at (`Spawner`: a `SpawnerGate`; `SpawnerPool`: a `PoolGate`). */
export interface LocalRunContext<G = SpawnerGate> extends ExecutablePlace {
  /** seconds between SIGTERM and SIGKILL when an attempt is stopped */
  readonly grace: number;
  readonly mpi: MpiOptions;
  /** the executor's worker env, under the task's env requirement and the executable's own */
  readonly workerEnv: Readonly<Record<string, string>>;
  /** trees being ended, so that the owner can wait until none is left */
  readonly ending: Set<Promise<void>>;
  /**
   * The executor's cores, where attempts are handed over ahead of a free core (`Capacity.queue`): each
   * prepares its working directory and files at once, then waits here for its cores. None: it starts at once.
   */
  readonly gate?: CoreGate;
  /** The mark of each attempt (`marks.ts`). None: a random one, which only its own tree kill looks for. */
  readonly marks?: { next(): string };
  /**
   * Makes the working directories and files and starts the programs, in a small process of its own (`spawner.ts`), or
   * in several (`spawner-pool.ts`); it ends them if this process dies first.
   */
  readonly spawner: ProgramStarter<G>;
  /**
   * The executor's cores, held in the spawners instead of at `gate`: attempts are handed over with their files made,
   * and each starts as soon as its cores are free, without a round trip to this process.
   */
  readonly spawnerGate?: G;
  /** Resolves when attempts may start (once what a dead run of the same workflow left has been ended). */
  readonly ready?: Promise<void>;
  /**
   * Given, at subscription, what withdraws the attempt if its program has not started (see {@link Withdraw}): for an
   * owner that may move a waiting attempt elsewhere (a Slurm agent, for its driver).
   */
  readonly withdrawable?: (withdraw: Withdraw) => void;
}

/**
 * Withdraws an attempt whose program has not started, waiting for its cores (at `gate`, or in the spawners): it then
 * never starts, and ends with {@link AttemptWithdrawn}; resolves true. Resolves false if the program started (or
 * holds its cores, about to start), or if the attempt has no cores to wait for: it goes on.
 */
export type Withdraw = () => Promise<boolean>;

/** How an attempt ends that was withdrawn before its program started (see {@link Withdraw}): not a failure. */
export class AttemptWithdrawn extends Error {
  constructor() {
    super('the attempt was withdrawn before its program started, to run elsewhere');
    this.name = 'AttemptWithdrawn';
  }
}

/**
 * Runs one attempt: subscribing starts it, unsubscribing ends its process tree (also after it exited: what it left
 * running goes too).
 */
export function runLocalExecutable<G>(
  job: ExecutableJob,
  ctx: LocalRunContext<G>,
): Observable<ExecutableResult | undefined> {
  let tree: ProcessTree | undefined;
  let ticket: GateTicket | undefined;
  let spawning: Spawning | undefined;
  /** asked to withdraw (see Withdraw): it was, unless its tree comes */
  let withdrawn = false;
  /** its tree being ended (`end`) */
  let ending: Promise<void> | undefined;
  /** Ends the tree (once `after` has resolved), once; resolves when no process of it is left. */
  const end = (t: ProcessTree, after?: Promise<void>): Promise<void> => {
    if (ending !== undefined) return ending;
    const e = (ending = after === undefined ? t.kill(ctx.grace) : after.then(() => t.kill(ctx.grace)));
    ctx.ending.add(e);
    void e.finally(() => ctx.ending.delete(e));
    return e;
  };
  const leave = (): void => {
    if (ticket !== undefined) ctx.gate!.leave(ticket);
  };
  /** the attempt's work, once subscribed */
  let flow: Promise<unknown> | undefined;
  const withdraw: Withdraw = async () => {
    if (tree !== undefined || withdrawn) return false;
    if (ctx.spawnerGate === undefined) {
      // its cores at the gate here: once granted, it is about to start
      if (ticket === undefined || ticket.granted) return false;
      withdrawn = true;
      // its place goes to the next; woken, it stops before it starts. Named to the spawner, it may have started on a
      // freed core already: it leaves once the spawner says it dropped it
      if (!ticket.named) ctx.gate!.leave(ticket);
    } else withdrawn = true;
    if (spawning === undefined) {
      // not handed to the spawner yet: it stops before it is. Only then is its preparation over (which may stage its
      // inputs into its directory), and the directory free to be made elsewhere (on a shared file system)
      return flow!.then(
        () => false,
        (err: unknown) => err instanceof AttemptWithdrawn,
      );
    }
    spawning.withdraw();
    // Answered once the spawner has read it (after the request that made its directory): dropped (no tree), or it
    // had started (its tree: it runs). If the spawner died, the attempt fails as such (WorkerCrashedError).
    const t = await spawning.tree.then(
      (started) => started,
      () => tree ?? null,
    );
    if (t !== undefined) withdrawn = false;
    else if (ticket?.named === true) ctx.gate!.leave(ticket);
    return t === undefined;
  };
  const work = async (stopped: () => boolean): Promise<ExecutableResult | undefined> => {
    ctx.withdrawable?.(withdraw);
    /** stopped, or withdrawn: the program is not to start */
    const halted = (): boolean => stopped() || withdrawn;
    /**
     * How an attempt that did not start ends: stopped (undefined: nothing is told), withdrawn, or dropped by its
     * spawner (this process was interrupted, and starts nothing more): never a result, which would be a success with
     * none
     */
    const notStarted = (where: string): undefined => {
      if (stopped()) return undefined;
      if (withdrawn) throw new AttemptWithdrawn();
      throw new WorkerCrashedError(
        `${where}: the program was not started: ` +
          (isInterrupted() ? 'this process was interrupted and is ending its work' : 'its spawner dropped it'),
      );
    };
    // in line, in the order the attempts were handed over; the cores are held from when they are granted
    ticket = ctx.gate?.enter(footprint(job.requirements).cores);
    try {
      if (ctx.ready !== undefined) await ctx.ready;
      const prep = await prepareExecutable(job, ctx, true);
      if (halted()) return notStarted(prep.where);
      const command = launchCommand(prep.description.argv, job.requirements, ctx.mpi);
      // over this process's environment as it is when the program starts (the spawner takes what differs)
      const env = { ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...prep.description.env };
      const mark = ctx.marks?.next() ?? randomUUID();
      const when = { ticket, gate: ctx.gate, stopped: halted };
      const gate =
        ctx.spawnerGate !== undefined ? { gate: ctx.spawnerGate, cores: footprint(job.requirements).cores } : undefined;
      const t = await startSpawned(ctx.spawner, command, prep, env, { grace: ctx.grace, mark }, when, gate, (s) => {
        spawning = s;
      });
      if (t === undefined) return notStarted(prep.where); // stopped, withdrawn or dropped before it started
      tree = t;
      if (stopped()) {
        // stopped before it was known to have started: its cores stay held here until it has exited, as a running
        // one's do (the teardown left them to this)
        end(t);
        await t.exited.catch(() => undefined);
        return undefined;
      }
      let exit;
      try {
        exit = await t.exited;
      } catch (err) {
        end(t); // its spawner died: nobody else will end it
        throw new WorkerCrashedError(`${prep.where}: ${(err as Error).message}`);
      }
      leave(); // the core is free for the next program while this one's result is made
      if (exit.groupAlive) end(t); // the program is done: what it left running in its group goes too
      return await executableResult(prep, command, exit);
    } finally {
      leave();
    }
  };
  return attemptOf(
    (stopped) => (flow = work(stopped)),
    // also runs after the attempt ended, when the program has exited (and its leftovers were handled)
    () => {
      // not started: dropped; running: ended once the spawner knows (see Spawning.leave)
      const told = tree === undefined || tree.running ? spawning?.leave() : undefined;
      if (tree?.running === true) {
        // its cores stay held until its tree has ended: here until its program exits (the spawner's too, `leave` in
        // `work`), at the executor until no process of it is left (`holdUntil`), so no retry runs beside it
        job.holdUntil?.(end(tree, told));
        return;
      }
      // handed to the spawner, not known to have started: held until the spawner says (then ended, if it started).
      // Its core here is left by `work` then, once dropped or exited; a ticket still in line leaves it now (it is not
      // to start)
      if (tree === undefined && spawning !== undefined) {
        if (ticket !== undefined && !ticket.granted && !ticket.named) leave();
        job.holdUntil?.(spawning.tree.then((t) => (t?.running === true ? end(t, told) : undefined)).catch(() => {}));
        return;
      }
      leave();
    },
  );
}

/**
 * Hands the attempt to the spawner, which makes its working directory (unless made) and files at once and starts the
 * command, with this process's environment as it is now under `env`, once its cores are free: held in the spawner
 * (`gate`), or here (`ticket`: then on GO). A program that cannot start is an `ExecutableFailedError`; undefined if
 * the attempt was stopped before it started.
 */
async function startSpawned<G>(
  spawner: ProgramStarter<G>,
  command: readonly string[],
  prep: PreparedExecutable,
  env: Readonly<Record<string, string>>,
  tree: { readonly grace: number; readonly mark: string },
  when: {
    readonly ticket: GateTicket | undefined;
    readonly gate: CoreGate | undefined;
    readonly stopped: () => boolean;
  },
  gate: { readonly gate: G; readonly cores: number } | undefined,
  handed: (s: Spawning) => void,
): Promise<ProcessTree | undefined> {
  const { workdir: wd, stdin } = prep;
  const { ticket } = when;
  // without a gate in the spawner: its files are made at once, and it starts on GO, once the cores are granted here
  const go = gate === undefined && ticket !== undefined && !ticket.granted;
  const stdinPath = stdin !== undefined && 'path' in stdin ? stdin.path : undefined;
  try {
    const spawning = spawner.start({
      command,
      cwd: wd.path,
      made: prep.made,
      stdout: wd.stdout,
      stderr: wd.stderr,
      ...(stdinPath !== undefined && { stdinPath }),
      ...(stdin !== undefined && 'text' in stdin && { stdinText: stdin.text }),
      env,
      mark: tree.mark,
      graceSeconds: tree.grace,
      ...(gate !== undefined ? { when: gate } : go && { when: 'go' as const }),
    });
    handed(spawning);
    if (go) {
      // it may start on the core another program's exit frees, before its grant here (core-gate.ts, "Heirs")
      const coreGate = when.gate!;
      coreGate.offer(ticket, () => spawning.next(() => coreGate.claim(ticket)));
      await ticket.ready;
      // its teardown or withdrawal dropped it; named, it may have started first: then it is ended as a started one
      if (when.stopped()) return ticket.named ? await spawning.tree : undefined;
      spawning.go();
    }
    return await spawning.tree;
  } catch (e) {
    if (e instanceof WorkerCrashedError) throw new WorkerCrashedError(`${prep.where}: ${e.message}`);
    if (!(e instanceof SpawnFailure)) throw e;
    if (e.stage === 'spawn') throw cannotStart(e as NodeJS.ErrnoException, command, prep, env.PATH ?? process.env.PATH);
    if (e.stage === 'stdin') {
      throw new ExecutableFailedError(
        `${prep.where}: stdin ${stdinPath!} cannot be read (${e.code ?? e.message}); the program was not started`,
        null,
        null,
        '',
      );
    }
    // the working directory or an output file cannot be made (a root under a file, a read-only file system)
    const what = e.stage === 'dir' ? `its working directory ${wd.path}` : `its ${e.stage} file in ${wd.path}`;
    throw new ExecutableFailedError(
      `${prep.where}: ${what} cannot be made (${e.message}); the program was not started: check that ` +
        "the backend's root is a directory this process may write",
      null,
      null,
      '',
    );
  }
}

function cannotStart(
  e: NodeJS.ErrnoException,
  command: readonly string[],
  prep: PreparedExecutable,
  path: string | undefined,
): Error {
  const program = command[0]!;
  let why: string;
  if (e.code === 'ENOENT') {
    const file = isAbsolute(program) ? program : join(prep.workdir.path, program);
    why = !program.includes('/')
      ? `program "${program}" was not found on PATH (${path ?? 'PATH is not set'})` +
        (program === 'mpirun' ? '; tasks with ranks > 1 need Open MPI (Debian: openmpi-bin)' : '')
      : existsSync(file)
        ? `program "${program}" could not be started: it exists, but the interpreter its first line (#!) names ` +
          'was not found'
        : isAbsolute(program)
          ? `program "${program}" was not found`
          : `program "${program}" was not found (relative program paths are resolved in the task's working ` +
            `directory ${prep.workdir.path}: give an absolute path)`;
  } else if (e.code === 'EACCES') {
    why = `program "${program}" is not executable (permission denied)`;
  } else why = `program "${program}" could not be started: ${e.message}`;
  return new ExecutableFailedError(`${prep.where}: ${why}`, null, null, '');
}
