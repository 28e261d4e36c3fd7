/**
 * An executable attempt as a child process of this one, never through a shell: the program leads its
 * own session and process group, with stdout and stderr into its working directory's files. Stopping
 * the attempt (cancel, walltime) ends the whole process tree: SIGTERM, then SIGKILL after the grace
 * period. The local runner of `processes()`, and of any remote side that runs programs on its host.
 */
import { closeSync, openSync } from 'node:fs';
import type { Observable } from 'rxjs';
import { ExecutableFailedError } from '../../errors';
import type { ExecutableResult } from '../../task/executable';
import { attemptOf } from '../backend';
import {
  executableResult,
  prepareExecutable,
  type ExecutableJob,
  type ExecutablePlace,
  type PreparedExecutable,
} from './attempt';
import { launchCommand, rootEnv, type MpiOptions } from './mpi';
import { groupAlive, spawnTree, type ProcessTree } from './process-tree';

export interface LocalRunContext extends ExecutablePlace {
  /** seconds between SIGTERM and SIGKILL when an attempt is stopped */
  readonly grace: number;
  readonly mpi: MpiOptions;
  /** the executor's worker env, under the task's env requirement and the executable's own */
  readonly workerEnv: Readonly<Record<string, string>>;
  /** trees being ended, so that the owner can wait until none is left */
  readonly ending: Set<Promise<void>>;
}

/**
 * Runs one attempt: subscribing starts it, unsubscribing ends its process tree (also after it exited: what it left
 * running goes too).
 */
export function runLocalExecutable(job: ExecutableJob, ctx: LocalRunContext): Observable<ExecutableResult | undefined> {
  let tree: ProcessTree | undefined;
  const end = (t: ProcessTree): void => {
    const ending = t.kill(ctx.grace);
    ctx.ending.add(ending);
    void ending.finally(() => ctx.ending.delete(ending));
  };
  return attemptOf(
    async (stopped) => {
      const prep = await prepareExecutable(job, ctx);
      if (stopped()) return undefined;
      const command = launchCommand(prep.description.argv, job.requirements, ctx.mpi);
      const env = { ...process.env, ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...prep.description.env };
      const t = await start(command, prep, env, ctx.grace);
      tree = t;
      if (stopped()) {
        end(t);
        return undefined;
      }
      const exit = await t.exited;
      if (groupAlive(t.root)) end(t); // the program is done: what it left running in its group goes too
      return executableResult(prep, command, exit);
    },
    // also runs after the attempt ended, when the program has exited (and its leftovers were handled)
    () => {
      if (tree?.running === true) end(tree);
    },
  );
}

/**
 * Spawns the command with stdout/stderr into the working directory's files; a program that cannot start is an
 * `ExecutableFailedError`.
 */
async function start(
  command: readonly string[],
  prep: PreparedExecutable,
  env: NodeJS.ProcessEnv,
  grace: number,
): Promise<ProcessTree> {
  const { workdir: wd, stdin, where } = prep;
  const fds: number[] = [];
  try {
    const out = openSync(wd.stdout, 'w');
    fds.push(out);
    const err = openSync(wd.stderr, 'w');
    fds.push(err);
    let input: number | 'ignore' | 'pipe' = 'ignore';
    if (stdin !== undefined && 'path' in stdin) {
      try {
        input = openSync(stdin.path, 'r');
      } catch (e) {
        throw new ExecutableFailedError(
          `${where}: stdin ${stdin.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}); the ` +
            `program was not started`,
          null,
          null,
          '',
        );
      }
      fds.push(input);
    } else if (stdin !== undefined) input = 'pipe';
    let tree: ProcessTree;
    try {
      tree = await spawnTree(command[0]!, command.slice(1), {
        cwd: wd.path,
        env,
        stdio: [input, out, err],
        graceSeconds: grace,
      });
    } catch (e) {
      throw cannotStart(e as NodeJS.ErrnoException, command, prep, env);
    }
    if (stdin !== undefined && 'text' in stdin) {
      const pipe = tree.child.stdin!;
      pipe.on('error', () => undefined); // the program need not read all of it (EPIPE)
      pipe.end(stdin.text);
    }
    return tree;
  } finally {
    for (const fd of fds) closeSync(fd);
  }
}

function cannotStart(
  e: NodeJS.ErrnoException,
  command: readonly string[],
  prep: PreparedExecutable,
  env: NodeJS.ProcessEnv,
): Error {
  const program = command[0]!;
  let why: string;
  if (e.code === 'ENOENT') {
    why = program.includes('/')
      ? `program "${program}" was not found (relative program paths are resolved in the task's working ` +
        `directory ${prep.workdir.path}: give an absolute path)`
      : `program "${program}" was not found on PATH (${env.PATH ?? 'PATH is not set'})` +
        (program === 'mpirun' ? '; tasks with ranks > 1 need Open MPI (Debian: openmpi-bin)' : '');
  } else if (e.code === 'EACCES') {
    why = `program "${program}" is not executable (permission denied)`;
  } else why = `program "${program}" could not be started: ${e.message}`;
  return new ExecutableFailedError(`${prep.where}: ${why}`, null, null, '');
}
