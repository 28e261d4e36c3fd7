/** Finding the workflows the CLI is pointed at: the `.scalems/<name>/state.sqlite` stores under a directory. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { TaskRecord } from '../store/state';
import { checkTaskRecord } from '../store/record-check';
import { sqliteStore } from '../store/sqlite';
import { TASK_KEY_PREFIX } from '../store/slot';
import { WORKFLOW_KEY, workflowNameIn } from '../store/store';
import { CliError, UsageError } from './command';

export const STORE_FILE = 'state.sqlite';
export const WORKFLOWS_DIR = '.scalems';

/** A workflow's store file; the workflow is named after the directory holding it (`.scalems/<name>/state.sqlite`). */
export interface WorkflowLocation {
  readonly name: string;
  readonly file: string;
}

/** The result of looking for stores: exactly one, or the several found under a `.scalems` directory. */
export type Located =
  { readonly one: WorkflowLocation } | { readonly root: string; readonly several: readonly WorkflowLocation[] };

/**
 * What is at `p`, if anything; a path this user may not look into is a `CliError` saying so (before: "does not
 * exist", or Node's raw EACCES).
 */
function statOf(p: string): fs.Stats | undefined {
  try {
    return fs.statSync(p, { throwIfNoEntry: false });
  } catch (error) {
    throw unreadable(p, error);
  }
}

function unreadable(p: string, error: unknown): unknown {
  const code = (error as NodeJS.ErrnoException | null)?.code;
  if (code !== 'EACCES' && code !== 'EPERM') return error;
  return new CliError(
    `${p} cannot be read by this user (permission denied): a workflow's directory and store are readable by the ` +
      'user who ran it only (0700, 0600). Run this as that user.',
  );
}

const isDir = (p: string): boolean => statOf(p)?.isDirectory() ?? false;
const isFile = (p: string): boolean => statOf(p)?.isFile() ?? false;
const at = (file: string): WorkflowLocation => ({ name: path.basename(path.dirname(file)), file });

/**
 * The workflows directly under `dir`: every `<dir>/<name>/state.sqlite`, sorted by name (also one that is not a file:
 * reading it says what is in the way).
 */
function workflowsUnder(dir: string): WorkflowLocation[] {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (error) {
    throw unreadable(dir, error);
  }
  return entries
    .filter((entry) => entry.isDirectory() && statOf(path.join(dir, entry.name, STORE_FILE)) !== undefined)
    .map((entry) => ({ name: entry.name, file: path.join(dir, entry.name, STORE_FILE) }))
    .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}

/**
 * Finds the store(s) that `target` designates: a store file; a workflow directory (`.scalems/<name>`);
 * a directory of workflows (`.scalems`); or a project directory holding `.scalems`. Without a target,
 * `.scalems` under `cwd`.
 */
export function locate(target: string | undefined, cwd: string): Located {
  const given = path.resolve(cwd, target ?? WORKFLOWS_DIR);
  if (statOf(given) === undefined) {
    throw new CliError(
      target === undefined
        ? `no workflow store here: ${given} does not exist. Run this in the directory the workflow ran in, ` +
            `or pass a workflow directory (.scalems/<name>) or its ${STORE_FILE}.`
        : `${given} does not exist.`,
    );
  }
  const inTheWay = (file: string): CliError =>
    new CliError(`${file} is not a store file (a directory, or another kind of file): move it out of the way.`);
  if (!isDir(given)) return { one: at(given) };
  if (path.basename(given) === STORE_FILE) throw inTheWay(given);
  const own = path.join(given, STORE_FILE);
  if (isFile(own)) return { one: at(own) };
  // (it was said not to be there)
  if (statOf(own) !== undefined) throw inTheWay(own);
  let root = given;
  let found = workflowsUnder(root);
  if (found.length === 0 && isDir(path.join(given, WORKFLOWS_DIR))) {
    root = path.join(given, WORKFLOWS_DIR);
    found = workflowsUnder(root);
  }
  if (found.length === 1 && !isFile(found[0]!.file)) throw inTheWay(found[0]!.file);
  if (found.length === 0) {
    throw new CliError(
      `no workflow store in ${given}: ` +
        `expected ${path.join(given, STORE_FILE)} or ${path.join(given, '<name>', STORE_FILE)}.`,
    );
  }
  return found.length === 1 ? { one: found[0]! } : { root, several: found };
}

/**
 * The one workflow `target` designates (see `locate`). Where it designates several, a `CliError` lists them and shows
 * the command again with the first one's directory: `command(dir)` is that command line.
 */
export function locateOne(target: string | undefined, cwd: string, command: (dir: string) => string): WorkflowLocation {
  const located = locate(target, cwd);
  if ('one' in located) return located.one;
  throw new CliError(
    `${located.root} holds ${located.several.length} workflows ` +
      `(${located.several.map((w) => w.name).join(', ')}): ` +
      `name one, e.g. \`${command(path.join(located.root, located.several[0]!.name))}\``,
  );
}

/** The optional directory argument of a command that takes at most one. */
export function oneDirectory(positionals: readonly string[]): string | undefined {
  if (positionals.length > 1)
    throw new UsageError(`expected at most one directory, got ${positionals.length}: ${positionals.join(' ')}`);
  return positionals[0];
}

/**
 * Reads every task record of a store, and the name the workflow was last opened with (stores of an earlier version do
 * not say), read-only and without taking its lock (so a store held by a running workflow can be inspected). Throws
 * the store's typed errors (corrupt, other version) as is.
 */
export async function readWorkflow(file: string): Promise<{ name: string | undefined; records: TaskRecord[] }> {
  const store = sqliteStore(file, { readonly: true });
  try {
    const records: TaskRecord[] = [];
    let name: string | undefined;
    for (const [key, value] of await store.entries<unknown>()) {
      if (key === WORKFLOW_KEY) name = workflowNameIn(value);
      if (!key.startsWith(TASK_KEY_PREFIX)) continue;
      checkTaskRecord(file, key, value);
      records.push(value);
    }
    return { name, records };
  } finally {
    await store.close();
  }
}

/** Every task record of a store (see `readWorkflow`). */
export async function readRecords(file: string): Promise<TaskRecord[]> {
  return (await readWorkflow(file)).records;
}
