#!/usr/bin/env node
/**
 * `scalems-task`: runs ONE registered function task in this process: what the slurm() backend starts
 * in a job step.
 *
 *   scalems-task --modules <module> [--modules <module> ...] --name <task name> --args <args.json>
 *                --result <result.json> [--id <task id>] [--label <label>] [--attempt <n>] [--workdir <dir>]
 *
 * It loads the modules (which register their tasks with `defineTask`), looks the function up by NAME
 * in that registry (never `eval`: an unknown name is an `UnknownTaskError`), reads the JSON array of
 * arguments, changes into the working directory, calls the function with `currentTask()` set, and
 * writes `{ "ok": true, "value": ... }` or `{ "ok": false, "error": {...} }` to the result file (written
 * whole, then renamed into place). Exit code 0 when the task succeeded, 1 when it failed, 2 for a
 * usage error. SIGTERM (scancel) aborts `currentTask().signal`; the task then has a moment to return.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { installNode } from '../node/context';
import { NoAmbientScopeError, TaskCancelledError, UnknownTaskError, UnserializableValueError } from '../errors';
import { invocable, lookupTask } from '../task/spec';
import { runInScope } from '../runtime/context';
import type { RunningTaskScope, TaskContext } from '../runtime/executor';
import { recordError } from '../runtime/outcome';
import { jsonProblem, type StepResult } from '../runtime/slurm-json';

/** Milliseconds a task has to return after SIGTERM aborted its signal, before this process exits. */
const CANCEL_GRACE_MS = 2000;

export interface TaskEntryArgs {
  readonly modules: readonly string[];
  readonly name: string;
  readonly args: string;
  readonly result: string;
  readonly id: string;
  readonly label: string | undefined;
  readonly attempt: number;
  readonly workdir: string | undefined;
}

export const USAGE = 'usage: scalems-task --modules <module> [--modules <module> ...] --name <task> --args <args.json> --result <result.json> [--id <id>] [--label <label>] [--attempt <n>] [--workdir <dir>]';

/** Parses the command line; throws a TypeError naming the problem. */
export function parseTaskEntryArgs(argv: readonly string[]): TaskEntryArgs {
  const modules: string[] = [];
  const one = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const flag = argv[i]!;
    const value = argv[i + 1];
    if (!flag.startsWith('--')) throw new TypeError(`unexpected argument "${flag}"`);
    if (value === undefined) throw new TypeError(`${flag} needs a value`);
    i++;
    if (flag === '--modules' || flag === '--module') modules.push(value);
    else if (['--name', '--args', '--result', '--id', '--label', '--attempt', '--workdir'].includes(flag)) one.set(flag.slice(2), value);
    else throw new TypeError(`unknown option ${flag}`);
  }
  for (const key of ['name', 'args', 'result']) if (!one.has(key)) throw new TypeError(`--${key} is required`);
  const attempt = Number(one.get('attempt') ?? '1');
  if (!Number.isInteger(attempt) || attempt < 1) throw new TypeError(`--attempt must be a positive integer, got ${one.get('attempt')}`);
  return {
    modules,
    name: one.get('name')!,
    args: one.get('args')!,
    result: one.get('result')!,
    id: one.get('id') ?? one.get('name')!,
    label: one.get('label'),
    attempt,
    workdir: one.get('workdir'),
  };
}

async function loadModules(modules: readonly string[]): Promise<void> {
  for (const m of modules) {
    const path = resolve(m);
    try {
      if (/\.mjs$/.test(path)) await import(pathToFileURL(path).href);
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS (and .ts through tsx) task modules
      else require(path);
    } catch (err) {
      throw new TypeError(`scalems-task: module ${path} failed to load: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
  }
}

function writeResult(path: string, result: StepResult): void {
  const tmp = `${path}.${process.pid}.tmp`;
  writeFileSync(tmp, JSON.stringify(result));
  renameSync(tmp, path);
}

/** Runs the task the arguments describe and writes its result file. Resolves to the exit code. */
export async function runTaskEntry(a: TaskEntryArgs): Promise<number> {
  installNode();
  const controller = new AbortController();
  const onTerm = (signal: NodeJS.Signals): void => {
    controller.abort(new TaskCancelledError(`task ${a.label ?? a.name} (${a.id}) was cancelled: its job step got ${signal}`));
    setTimeout(() => process.exit(signal === 'SIGTERM' ? 143 : 130), CANCEL_GRACE_MS).unref();
  };
  process.once('SIGTERM', onTerm);
  process.once('SIGINT', onTerm);
  let result: StepResult;
  try {
    await loadModules(a.modules);
    const fn = lookupTask(a.name);
    if (fn === undefined) {
      throw new UnknownTaskError(
        `no task named "${a.name}" is defined by the modules given to slurm({ modules }) (${a.modules.join(', ') || 'none'}): define it with defineTask("${a.name}", fn) in one of them`,
      );
    }
    const args: unknown = JSON.parse(readFileSync(a.args, 'utf8'));
    if (!Array.isArray(args)) throw new TypeError(`scalems-task: ${a.args} must hold a JSON array of arguments`);
    if (a.workdir !== undefined) process.chdir(a.workdir);
    const context: TaskContext = {
      id: a.id,
      label: a.label,
      signal: controller.signal,
      attempt: a.attempt,
      submit: () => {
        throw new NoAmbientScopeError('currentTask().submit() is not available inside a Slurm job step: return data from the task and submit follow-up work from the main program');
      },
      ...(a.workdir !== undefined ? { workdir: resolve(a.workdir) } : {}),
    };
    const scope: RunningTaskScope = { id: a.id, context, awaitOther: (settled) => settled };
    const value: unknown = await runInScope({ task: scope }, () => invocable(fn)(...(args as unknown[])));
    const problem = jsonProblem(value, 'the result');
    if (problem !== undefined) {
      throw new UnserializableValueError(`task ${a.label ?? a.name} (${a.id}) returned a value that cannot be sent back from its Slurm job step as JSON: ${problem}. Return plain data.`);
    }
    result = value === undefined ? { ok: true } : { ok: true, value };
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
