// processes(): executables as child processes of this one, each in a working directory of its own;
// `ranks > 1` through `mpirun -np <ranks>`. Cancellation and walltime end the whole process tree.
import { openSync, closeSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join, resolve } from 'node:path';
import { Observable } from 'rxjs';
import { ExecutableFailedError } from '../errors';
import { validateDescription, type ExecutableResult } from '../task/executable';
import type { Backend, BackendExecutor, Job } from './backend';
import { acceptExecutable, resolveSource, type ResolvedSource } from './executable-inputs';
import { launchCommand, rootEnv, type MpiOptions } from './mpi';
import { DEFAULT_GRACE_SECONDS, groupAlive, spawnTree, type ProcessTree } from './process-tree';
import { collectOutputs, fileRef, prepareWorkdir, stageInputs, tail, workflowDirectory, type StagingMode, type Workdir } from './workdir';

export interface ProcessesOptions {
  /** cores an executor may use at once, unless its worker requirements say (default: this machine's, `os.availableParallelism()`) */
  readonly cores?: number;
  /** where workflow directories go (default `<cwd>/.scalems`): tasks run in `<root>/<workflow>/tasks/<id>/attempt-<n>/` */
  readonly root?: string;
  /** seconds between SIGTERM and SIGKILL when a task is cancelled or runs out of walltime (default 3) */
  readonly gracePeriod?: number;
  /** how inputs are put into working directories: `copy` (default; copy-on-write where possible) or `symlink` */
  readonly staging?: StagingMode;
  /** how `ranks > 1` is launched */
  readonly mpi?: MpiOptions;
}

interface Context {
  readonly workflowDir: string;
  readonly hostCwd: string;
  readonly grace: number;
  readonly staging: StagingMode;
  readonly mpi: MpiOptions;
  readonly workerEnv: Readonly<Record<string, string>>;
  /** trees being ended, so that close() can wait until none is left */
  readonly ending: Set<Promise<void>>;
}

/**
 * Runs `executable(argv, ...)` tasks as child processes, never through a shell. Each attempt runs in
 * its own working directory, `<root>/<workflow>/tasks/<task id>/attempt-<n>/`, with its inputs staged
 * in and its stdout and stderr kept there as files. Each program leads its own session and process
 * group: cancelling the task (or exceeding its walltime) sends SIGTERM to the whole tree, then SIGKILL
 * after `gracePeriod` seconds, and the executor's scope is not released until no process of it is left.
 */
export function processes(options: ProcessesOptions = {}): Backend {
  const root = resolve(options.root ?? join(process.cwd(), '.scalems'));
  const hostCwd = process.cwd();
  const grace = options.gracePeriod ?? DEFAULT_GRACE_SECONDS;
  if (!(grace >= 0)) throw new RangeError(`processes({ gracePeriod }): expected a non-negative number of seconds, got ${String(grace)}`);
  if (options.cores !== undefined && !(Number.isInteger(options.cores) && options.cores > 0)) throw new RangeError(`processes({ cores }): expected a positive integer, got ${String(options.cores)}`);
  const staging = options.staging ?? 'copy';
  const ending = new Set<Promise<void>>();
  const settle = async (): Promise<void> => {
    while (ending.size > 0) await Promise.all([...ending]);
  };
  return {
    kind: 'processes',
    open(worker, { workflow }): BackendExecutor {
      const ctx: Context = { workflowDir: workflowDirectory(root, workflow.name), hostCwd, grace, staging, mpi: options.mpi ?? {}, workerEnv: worker.env ?? {}, ending };
      return {
        capacity: { cores: worker.cores ?? options.cores ?? availableParallelism(), gpus: worker.gpus ?? 0, memoryMB: worker.memoryMB ?? Infinity },
        invokes: false,
        accept: (spec) => acceptExecutable(spec, workflow, staging),
        run: (job) => runExecutable(job, ctx),
        close: settle,
      };
    },
    shutdown: settle,
  };
}

function runExecutable(job: Job, ctx: Context): Observable<ExecutableResult> {
  return new Observable<ExecutableResult>((subscriber) => {
    let stopped = false;
    let tree: ProcessTree | undefined;
    const end = (t: ProcessTree): void => {
      const ending = t.kill(ctx.grace);
      ctx.ending.add(ending);
      void ending.finally(() => ctx.ending.delete(ending));
    };
    const attempt = async (): Promise<ExecutableResult | undefined> => {
      const where = `task ${job.label ?? job.name} (${job.id})`;
      const d = validateDescription(job.args[0], where, { resolved: true });
      const inputs: Record<string, string> = {};
      for (const [name, source] of Object.entries(d.inputs ?? {})) inputs[name] = (resolveSource(source, `${where}: input "${name}"`, ctx.hostCwd, false) as { path: string }).path;
      const stdin = d.stdin === undefined ? undefined : resolveSource(d.stdin, `${where}: stdin`, ctx.hostCwd, true);
      const wd = await prepareWorkdir(ctx.workflowDir, job);
      if (stopped) return undefined;
      await stageInputs(wd.path, inputs, ctx.staging);
      if (stopped) return undefined;
      const command = launchCommand(d.argv, job.requirements, ctx.mpi);
      const env = { ...process.env, ...rootEnv(), ...ctx.workerEnv, ...job.requirements.env, ...d.env };
      const t = await start(command, wd, env, stdin, ctx.grace, where);
      tree = t;
      if (stopped) {
        end(t);
        return undefined;
      }
      const exit = await t.exited;
      if (groupAlive(t.root)) end(t); // the program is done: what it left running in its group goes too
      if (stopped) return undefined;
      const shown = shorten(command.map(quote).join(' '), 160);
      if (exit.code !== 0) {
        const stderrTail = await tail(wd.stderr);
        const how = exit.code !== null ? `exited with code ${exit.code}` : `was killed by signal ${exit.signal ?? 'unknown'}`;
        throw new ExecutableFailedError(
          `${where}: ${shown} ${how}${stderrTail !== '' ? `; end of stderr (${wd.stderr}):\n${stderrTail}` : ` (stderr is empty; stdout: ${wd.stdout})`}`,
          exit.code,
          exit.signal,
          stderrTail,
        );
      }
      const collected = await collectOutputs(wd.path, d.outputs ?? []);
      if (collected.missing.length > 0) {
        throw new ExecutableFailedError(
          `${where}: ${shown} exited with code 0 but did not produce the declared output${collected.missing.length > 1 ? 's' : ''} ${collected.missing.map((m) => `"${m}"`).join(', ')} in ${wd.path}`,
          0,
          null,
          await tail(wd.stderr),
        );
      }
      return { exitCode: 0, stdout: fileRef(wd.stdout), stderr: fileRef(wd.stderr), outputs: collected.files, workdir: wd.path, command };
    };
    attempt().then(
      (result) => {
        if (result === undefined || stopped) return;
        subscriber.next(result);
        subscriber.complete();
      },
      (err: unknown) => {
        if (!stopped) subscriber.error(err);
      },
    );
    return () => {
      // also runs after complete/error, when the program has exited (and its leftovers were handled)
      stopped = true;
      if (tree?.running === true) end(tree);
    };
  });
}

/** Spawns the command with stdout/stderr into the working directory's files; a program that cannot start is an `ExecutableFailedError`. */
async function start(command: readonly string[], wd: Workdir, env: NodeJS.ProcessEnv, stdin: ResolvedSource | undefined, grace: number, where: string): Promise<ProcessTree> {
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
        throw new ExecutableFailedError(`${where}: stdin ${stdin.path} cannot be read (${(e as NodeJS.ErrnoException).code ?? String(e)}); the program was not started`, null, null, '');
      }
      fds.push(input);
    } else if (stdin !== undefined) input = 'pipe';
    let tree: ProcessTree;
    try {
      tree = await spawnTree(command[0]!, command.slice(1), { cwd: wd.path, env, stdio: [input, out, err], graceSeconds: grace });
    } catch (e) {
      throw cannotStart(e as NodeJS.ErrnoException, command, wd, env, where);
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

function cannotStart(e: NodeJS.ErrnoException, command: readonly string[], wd: Workdir, env: NodeJS.ProcessEnv, where: string): Error {
  const program = command[0]!;
  let why: string;
  if (e.code === 'ENOENT') {
    why = program.includes('/')
      ? `program "${program}" was not found (relative program paths are resolved in the task's working directory ${wd.path}: give an absolute path)`
      : `program "${program}" was not found on PATH (${env.PATH ?? 'PATH is not set'})${program === 'mpirun' ? '; tasks with ranks > 1 need Open MPI (Debian: openmpi-bin)' : ''}`;
  } else if (e.code === 'EACCES') {
    why = `program "${program}" is not executable (permission denied)`;
  } else why = `program "${program}" could not be started: ${e.message}`;
  return new ExecutableFailedError(`${where}: ${why}`, null, null, '');
}

/** An argument as a reader would type it (for messages only: nothing is ever run through a shell). */
function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replace(/'/g, `'\\''`)}'`;
}

function shorten(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 3)}...`;
}
