#!/usr/bin/env node
/**
 * `scalems-task`: runs ONE registered function task in this process: what the slurm() backend starts
 * in a job step. A thin entry over the remote runner (`runtime/remote/runner.ts`): its transport is
 * files and signals.
 *
 *   scalems-task --modules <module> [--digest <sha256>] [--modules <module> ...] --name <task name> --args <args.json>
 *                --result <result.json> [--id <task id>] [--label <label>] [--attempt <n>] [--workdir <dir>]
 *                [--version <the function's version where the task was submitted: another one is not run>]
 *
 * It reads the JSON array of arguments, changes into the working directory, runs the task through the
 * runner (modules loaded, the function found by NAME, never `eval`), and writes the outcome
 * (`{ "ok": true, "value": ... }` or `{ "ok": false, "error": {...} }`) to the result file (written
 * whole, then renamed into place). Exit code 0 when the task succeeded, 1 when it failed, 2 for a
 * usage error. SIGTERM (scancel) aborts `currentTask().signal`; the task then has a moment to return.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { InvalidTaskDescriptionError, TaskCancelledError } from '../errors';
import { recordError } from '../recorded-error';
import { RemoteRunner, RunStop } from '../runtime/remote/runner';
import { jsonWire, type RemoteOutcome } from '../runtime/remote/wire';
import { readDigestFlag, type DigestsRead, type ModuleDigests } from '../runtime/remote/modules';

/** Milliseconds a task has to return after SIGTERM aborted its signal, before this process exits. */
const CANCEL_GRACE_MS = 2000;

export interface TaskEntryArgs {
  readonly modules: readonly string[];
  /**
   * each module's digest as the driver read it (`--digest` after its `--modules`): one changed since is not loaded;
   * and those of the files that defined tasks there (`--defined`)
   */
  readonly digests?: ModuleDigests;
  readonly name: string;
  readonly args: string;
  readonly result: string;
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  readonly workdir: string | undefined;
  /** the function's version where the task was submitted (`--version`) */
  readonly version: string | undefined;
}

export const USAGE =
  'usage: scalems-task --modules <module> [--modules <module> ...] --name <task> --args <args.json> --result ' +
  '<result.json> [--id <id>] [--label <label>] [--attempt <n>] [--workdir <dir>] [--version <v>] ' +
  '[--digest <digest> after a module] [--defined <digest>:<file> ...]';

/** Parses the command line; throws a TypeError naming the problem. */
export function parseTaskEntryArgs(argv: readonly string[]): TaskEntryArgs {
  const modules: string[] = [];
  const digests: DigestsRead = { modules: [], defining: {} };
  const one = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!flag.startsWith('--')) throw new TypeError(`unexpected argument "${flag}"`);
    if (value === undefined) throw new TypeError(`${flag} needs a value`);
    i++;
    if (flag === '--modules' || flag === '--module') {
      modules.push(value);
      digests.modules.push(undefined);
    } else if (readDigestFlag(flag, value, digests)) continue;
    else if (['--name', '--args', '--result', '--id', '--label', '--attempt', '--workdir', '--version'].includes(flag))
      one.set(flag.slice(2), value);
    else throw new TypeError(`unknown option ${flag}`);
  }
  for (const key of ['name', 'args', 'result']) if (!one.has(key)) throw new TypeError(`--${key} is required`);
  const attempt = Number(one.get('attempt') ?? '1');
  if (!Number.isInteger(attempt) || attempt < 1)
    throw new TypeError(`--attempt must be a positive integer, got ${one.get('attempt')}`);
  return {
    modules,
    digests,
    name: one.get('name')!,
    args: one.get('args')!,
    result: one.get('result')!,
    id: one.get('id') ?? one.get('name')!,
    label: one.get('label'),
    attempt,
    workdir: one.get('workdir'),
    version: one.get('version'),
  };
}

function writeResult(path: string, result: RemoteOutcome): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(result));
  renameSync(tmp, path);
}

/** Runs the task the arguments describe and writes its result file. Resolves to the exit code. */
export async function runTaskEntry(a: TaskEntryArgs): Promise<number> {
  const stop = new RunStop();
  const onTerm = (signal: NodeJS.Signals): void => {
    stop.abort(new TaskCancelledError(`task ${a.label ?? a.name} (${a.id}) was cancelled: its job step got ${signal}`));
    setTimeout(() => process.exit(signal === 'SIGTERM' ? 143 : 130), CANCEL_GRACE_MS).unref();
  };
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onTerm);
  const runner = new RemoteRunner({
    modules: a.modules.map((m) => resolve(m)),
    ...(a.digests !== undefined && { digests: a.digests }),
    where: 'a Slurm job step',
    modulesOption: 'slurm({ modules })',
    wire: jsonWire,
  });
  let result: RemoteOutcome;
  try {
    const args: unknown = JSON.parse(readFileSync(a.args, 'utf8'));
    if (!Array.isArray(args))
      throw new InvalidTaskDescriptionError(`scalems-task: ${a.args} must hold a JSON array of arguments`);
    const workdir = a.workdir !== undefined ? resolve(a.workdir) : undefined;
    if (workdir !== undefined) process.chdir(workdir);
    const req = { name: a.name, args, id: a.id, label: a.label, attempt: a.attempt, version: a.version };
    result = await runner.run(req, stop, { workdir });
  } catch (err) {
    result = { ok: false, error: recordError(err) };
  }
  writeResult(a.result, result);
  return result.ok ? 0 : 1;
}

if (require.main === module) {
  let parsed: TaskEntryArgs;
  try {
    parsed = parseTaskEntryArgs(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`scalems-task: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  runTaskEntry(parsed).then(
    (code) => process.exit(code),
    (err: unknown) => {
      process.stderr.write(`scalems-task: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
      process.exit(1);
    },
  );
}
