/**
 * Task working directories on the host: layout, staging of inputs, collection of outputs, and the
 * path checks that keep a task inside its directory. Shared by the process-based backends.
 *
 *   <root>/<workflow>/                  the workflow directory (root defaults to <cwd>/.scalems)
 *   <root>/<workflow>/tasks/<id>/attempt-<n>/   one working directory per attempt: the program's cwd,
 *        stdout, stderr                   with its inputs staged in and its outputs left there
 */
import { constants } from 'node:fs';
import {
  copyFile,
  cp,
  lstat,
  mkdir,
  open,
  readFile,
  readdir,
  readlink,
  realpath,
  rm,
  stat,
  symlink,
} from 'node:fs/promises';
import { dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import { ExecutableFailedError, InvalidOptionsError, PathEscapeError } from '../../errors';
import { isFileRef, type FileRef } from '../../task/executable';
import { show } from '../../task/requirements';

/** One attempt's working directory. All paths are absolute. */
export interface Workdir {
  /** `<workflow>/tasks/<id>`: every attempt of the task is in it */
  readonly taskDir: string;
  /** the program's working directory */
  readonly path: string;
  readonly stdout: string;
  readonly stderr: string;
}

/** How inputs get into a working directory. */
export type StagingMode = 'copy' | 'symlink';

/**
 * Throws `PathEscapeError` unless `path` (resolved against `root`) is `root` or inside it, by its text. Returns the
 * absolute path.
 */
export function assertInside(root: string, path: string, what = 'path'): string {
  const base = resolve(root);
  const full = resolve(base, path);
  if (isWithin(base, full)) return full;
  throw new PathEscapeError(`${what} "${path}" resolves to ${full}, outside ${base}: give a relative path inside it`);
}

/** Whether the absolute path `path` is `base` or inside it, by its text. */
function isWithin(base: string, path: string): boolean {
  const rel = relative(base, path);
  return rel === '' || (!rel.startsWith(`..${sep}`) && rel !== '..' && !isAbsolute(rel));
}

/** Like `assertInside`, after following symbolic links (of `path` and of `root`): for files a program made. */
export async function assertRealInside(root: string, path: string, what = 'path'): Promise<string> {
  const [base, full] = await Promise.all([realpath(root), realpath(resolve(root, path))]);
  if (isWithin(base, full)) return full;
  throw new PathEscapeError(`${what} "${path}" is a link to ${full}, outside the task's working directory ${base}`);
}

/** `<root>/<workflow name>`, refusing names that would put it elsewhere. */
export function workflowDirectory(root: string, workflowName: string): string {
  if (workflowName.length === 0 || workflowName === '.' || workflowName.includes('/') || workflowName.includes('\\')) {
    throw new PathEscapeError(
      `workflow name "${workflowName}" cannot name a directory under ${root}: use a name without "/"`,
    );
  }
  return assertInside(root, workflowName, 'workflow directory');
}

/** Makes a fresh working directory for this attempt of the task (an old one of the same attempt is removed). */
export async function prepareWorkdir(
  workflowDir: string,
  job: { readonly id: string; readonly attempt: number },
): Promise<Workdir> {
  const workdir = workdirOf(workflowDir, job);
  const { path } = workdir;
  // mkdir returns the first directory it made, undefined if `path` was there already (a rerun after a crash)
  if ((await mkdir(path, { recursive: true })) === undefined) {
    await rm(path, { recursive: true, force: true });
    await mkdir(path, { recursive: true });
  }
  return workdir;
}

/**
 * Where this attempt of the task works, without making anything (the spawner makes it: `spawner.ts`, the same way as
 * `prepareWorkdir`).
 */
export function workdirOf(workflowDir: string, job: { readonly id: string; readonly attempt: number }): Workdir {
  const tasks = join(workflowDir, 'tasks');
  const taskDir = assertInside(tasks, job.id, 'task directory');
  const path = join(taskDir, `attempt-${job.attempt}`);
  return { taskDir, path, stdout: join(path, 'stdout'), stderr: join(path, 'stderr') };
}

/**
 * Puts each input (name in the working directory → absolute host path) into `workdir`. `copy` (the
 * default) copies files and directories, as a copy-on-write clone where the filesystem can: the task
 * can never change an upstream's output or the user's file. `symlink` links instead (no copying of big
 * files; the program must not write to its inputs).
 */
export async function stageInputs(
  workdir: string,
  inputs: Readonly<Record<string, string>>,
  mode: StagingMode = 'copy',
  where = '',
): Promise<void> {
  // the tasks' directories of the workflow: an input there is an upstream task's output
  const tasks = dirname(dirname(workdir));
  await Promise.all(
    Object.entries(inputs).map(async ([name, source]) => {
      const dest = assertInside(workdir, name, 'input');
      const refuse = (why: string): ExecutableFailedError =>
        new ExecutableFailedError(
          `${where === '' ? '' : `${where}: `}input "${name}": ${source} ${why}; the program was not started`,
          null,
          null,
          '',
        );
      let info;
      try {
        info = await stat(source);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code ?? String(err);
        const upstream = code === 'ENOENT' ? upstreamOf(tasks, source) : undefined;
        throw refuse(
          `cannot be read (${code})` +
            (upstream === undefined
              ? ''
              : `: it is an output of task ${upstream}, gone from disk since it ran; submit that task again ` +
                '(it runs again, its files being gone), then this one'),
        );
      }
      // a FIFO would be read until its writer closes it (forever, if none): a program that reads one gets a link
      if (mode === 'copy' && !info.isFile() && !info.isDirectory())
        throw refuse(`is not a regular file or a directory (a FIFO, socket or device), which cannot be copied in`);
      await mkdir(dirname(dest), { recursive: true });
      try {
        if (mode === 'symlink') await symlink(source, dest);
        // links followed (dereference): a link to a directory, or a link inside one, copied as a link, let the
        // program write through it into the user's files
        else if (info.isDirectory())
          await cp(source, dest, { recursive: true, preserveTimestamps: true, dereference: true });
        else await copyFile(source, dest, constants.COPYFILE_FICLONE);
      } catch (err) {
        const e = err as NodeJS.ErrnoException;
        throw refuse(`cannot be ${mode === 'symlink' ? 'linked' : 'copied'} in (${e.code ?? e.message})`);
      }
    }),
  );
}

/** The id of the task whose directory under `tasks` holds `path`, if one does. */
function upstreamOf(tasks: string, path: string): string | undefined {
  const rel = relative(tasks, path);
  if (rel === '' || rel.startsWith('..') || isAbsolute(rel)) return undefined;
  const id = rel.split(sep)[0]!;
  return id === '' ? undefined : id;
}

/**
 * The declared outputs found in `workdir` (as file references) and the names of those missing. Links out of it throw
 * `PathEscapeError`, and so do directories that hold one (at any depth).
 */
export async function collectOutputs(
  workdir: string,
  outputs: readonly string[],
): Promise<{ files: Record<string, FileRef>; missing: string[] }> {
  const files: Record<string, FileRef> = {};
  const missing: string[] = [];
  let base: string | undefined; // the working directory's real path, once an output is there
  for (const name of outputs) {
    const path = assertInside(workdir, name, 'output');
    try {
      await lstat(path);
    } catch {
      missing.push(name);
      continue;
    }
    try {
      await assertRealInside(workdir, name, 'output');
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new PathEscapeError(`output "${name}" is a dangling link in the task's working directory ${workdir}`);
      }
      // (a link through a file, a loop of links: the raw realpath error was the task's)
      if (code === 'ENOTDIR' || code === 'ELOOP')
        throw new PathEscapeError(
          `output "${name}" is a link that cannot be followed (${code}) in the task's working directory ${workdir}`,
        );
      throw err;
    }
    base ??= await realpath(workdir);
    // (through /proc, the real path above is where it leads for this process: `/proc/self/cwd/...`)
    const leads = await whereTextLeads(base, name, base);
    if (leads?.out === true)
      throw new PathEscapeError(
        `output "${name}" is a link to ${leads.target}, outside the task's working directory ${base}, or one that ` +
          'leads through /proc (where it leads depends on who follows it)',
      );
    if ((await stat(path)).isDirectory()) await assertNoLinkOut(base, path, name);
    files[name] = fileRef(path);
  }
  return { files, missing };
}

/**
 * Throws `PathEscapeError` if the directory `dir` (output `name`) holds a link to something outside `base` (the
 * working directory, real path), following its links to directories inside `base`. A task that takes the output copies
 * it with its links followed: a file outside, in it, would be read by that task without counting in its identity, and
 * an edit to it served the old result.
 */
async function assertNoLinkOut(base: string, dir: string, name: string, seen = new Set<string>()): Promise<void> {
  const real = await realpath(dir);
  if (seen.has(real)) return;
  seen.add(real);
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await assertNoLinkOut(base, path, name, seen);
    else if (entry.isSymbolicLink()) {
      const leads = await whereTextLeads(real, await readlink(path), base);
      if (leads === undefined) continue; // a loop: a task that takes the output fails to copy it in, naming it
      if (leads.out)
        throw new PathEscapeError(
          `output "${name}" holds a link, ${path}, to ${leads.target}, outside the task's working ` +
            `directory ${base}: a task that takes the output would read that file without it counting in its ` +
            'identity. Copy the file into the output instead of linking to it',
        );
      if ((await stat(leads.target).catch(() => undefined))?.isDirectory() === true)
        await assertNoLinkOut(base, leads.target, name, seen);
    }
  }
}

/**
 * Where the path `text` leads from the directory `from` (a real path; a link's text from the link's directory),
 * followed as the system follows it: component by component, each link met followed (so `link/..` is the link
 * target's parent, not the link's own directory). `out` if that is outside `base` (a real path), or if it depends on
 * what is outside: a path that passes through anything outside but the directories `base` is in (what is there, or
 * made or changed there later, decides where it leads: `<outside>/m/../../<base>/x`), or one through `/proc`
 * (`/proc/self/cwd` leads wherever the process that follows it runs). A dangling path inside is judged by where its
 * text leads. Undefined for a loop of links.
 */
async function whereTextLeads(
  from: string,
  text: string,
  base: string,
): Promise<{ target: string; out: boolean } | undefined> {
  // a path outside that is not a directory `base` is in (/proc among them): what is there (made, or changed later)
  // decides the rest
  const strays = (p: string): boolean => !isWithin(base, p) && p !== sep && !base.startsWith(p + sep);
  let hops = 0;
  let strayed = false;
  const follow = async (from: string, text: string): Promise<string | undefined> => {
    let at = isAbsolute(text) ? sep : from; // a real path: no link in it
    const parts = text.split(sep);
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i]!;
      if (part === '' || part === '.') continue;
      if (part === '..') {
        at = dirname(at);
        continue;
      }
      const next = join(at, part);
      if (strays(next)) strayed = true;
      const info = await lstat(next).catch(() => undefined);
      if (info === undefined) return resolve(next, ...parts.slice(i + 1));
      if (!info.isSymbolicLink()) at = next;
      else {
        if (++hops > 40) return undefined;
        const to = await follow(at, await readlink(next));
        if (to === undefined) return undefined;
        at = to;
      }
    }
    return at;
  };
  const target = await follow(from, text);
  if (target === undefined) return undefined;
  return { target, out: strayed || !isWithin(base, target) };
}

export function fileRef(path: string): FileRef {
  const full = resolve(path);
  return { $file: full, name: full.slice(full.lastIndexOf(sep) + 1) };
}

/** The last `maxBytes` of a file as text (from a line start where possible); '' if it cannot be read. */
export async function tail(path: string, maxBytes = 2048): Promise<string> {
  let handle;
  try {
    handle = await open(path, 'r');
    const { size } = await handle.stat();
    const length = Math.min(size, maxBytes);
    const buf = Buffer.alloc(length);
    await handle.read(buf, 0, length, size - length);
    let text = buf.toString('utf8');
    if (length < size) {
      const nl = text.indexOf('\n');
      text = `...${nl >= 0 && nl < text.length - 1 ? text.slice(nl + 1) : text}`;
    }
    return text.trimEnd();
  } catch {
    return '';
  } finally {
    await handle?.close();
  }
}

/** The contents of a file reference (or path) as text. */
export async function readText(ref: FileRef | string, encoding: BufferEncoding = 'utf8'): Promise<string> {
  const path = pathOf(ref, 'readText');
  if (typeof encoding !== 'string' || !Buffer.isEncoding(encoding))
    throw new InvalidOptionsError(
      `readText(ref, encoding?): encoding must be one of Node's text encodings ('utf8', 'latin1', 'base64', ...), ` +
        `got ${show(encoding)}`,
    );
  return readFile(path, encoding);
}

/** The contents of a file reference (or path) as bytes. */
export async function readBytes(ref: FileRef | string): Promise<Buffer> {
  return readFile(pathOf(ref, 'readBytes'));
}

/** The path of a file reference (`result.stdout`, `result.outputs[name]`) or a path; else InvalidOptionsError. */
function pathOf(ref: unknown, call: string): string {
  if (typeof ref === 'string') return ref;
  if (isFileRef(ref)) return ref.$file;
  // (before: Node's ERR_INVALID_ARG_TYPE, saying it received undefined)
  throw new InvalidOptionsError(
    `${call}(file): expected a file reference (an executable's result.stdout, result.outputs.name) or a path, got ` +
      show(ref),
  );
}
