/**
 * The content of the host files an executable reads, as text that joins its identity (`BackendExecutor.identity`):
 * a changed input file makes a new task, never a stale result served from the store.
 */
import { createHash } from 'node:crypto';
import { closeSync, existsSync, openSync, readSync, readdirSync, statSync, type BigIntStats } from 'node:fs';
import { join, resolve, sep } from 'node:path';
import { isTaskRef } from '../../task/hash';
import { isFileRef, type ExecutableDescription } from '../../task/executable';
import type { TaskSpec } from '../../task/spec';

/** Files up to this size are read again at each submit; larger ones are read again only when their stat changes. */
const SMALL = 1 << 20;
/** Directories nested deeper than this are not followed. */
const MAX_DEPTH = 64;

/**
 * `name=digest;` for each input (in name order) and for stdin, that is a file on the host: upstream outputs and
 * tasks are identified by the upstream task's id instead. A missing file is recorded as missing (the task fails
 * when it runs; once the file exists, it is another task).
 */
export function inputsIdentity(spec: TaskSpec, hostCwd: string): string {
  if (spec.kind !== 'executable') return '';
  const d = spec.args[0] as ExecutableDescription;
  let text = '';
  const inputs = d.inputs ?? {};
  for (const name of Object.keys(inputs).sort()) {
    const path = hostPath(inputs[name], hostCwd, false);
    if (path !== undefined) text += `${JSON.stringify(name)}=${contentDigest(path)};`;
  }
  const stdin = hostPath(d.stdin, hostCwd, true);
  if (stdin !== undefined) text += `${STDIN}=${contentDigest(stdin)};`;
  return text;
}

/**
 * The host files an executable reads that its identity does not cover by content. Each input (and its stdin) given as
 * a task whose result is a path or `FileRef` (`args` as recorded, `resolved` with the upstream results in), outside
 * `own` (the workflow's directory, whose files count by the task that made them, as `outputOf` does): path → digest of
 * their content now. And a stdin that is a FIFO or a device, however given: what the program reads from it cannot be
 * known (its digest is its kind). Kept in the task's record, compared by `changedReads` before it is served;
 * undefined if none.
 */
export function upstreamReads(
  args: readonly unknown[],
  resolved: readonly unknown[],
  hostCwd: string,
  own: string,
): Record<string, string> | undefined {
  const recorded = args[0] as ExecutableDescription;
  const given = resolved[0] as ExecutableDescription;
  let read: Record<string, string> | undefined;
  const add = (source: unknown, stdin: boolean): void => {
    const path = hostPath(source, hostCwd, stdin);
    if (path === undefined || path === own || path.startsWith(own + sep)) return;
    (read ??= {})[path] = contentDigest(path);
  };
  if (recorded.inputs !== undefined)
    for (const [name, source] of Object.entries(recorded.inputs))
      if (isTaskRef(source)) add(given.inputs?.[name], false);
  if (isTaskRef(recorded.stdin)) add(given.stdin, true);
  else {
    // (its kind only: a regular file is not read again here, its identity has its content)
    const stdin = hostPath(given.stdin, hostCwd, true);
    const kind = stdin === undefined ? undefined : specialKind(stdin);
    if (kind !== undefined) (read ??= {})[stdin!] = kind;
  }
  return read;
}

/**
 * Of the files a task read (`upstreamReads`: path → digest), those whose content is not what it was, or cannot be
 * known (a FIFO or a device: always).
 */
export function changedReads(read: Readonly<Record<string, string>>): string[] {
  return Object.keys(read).filter((path) => read[path]!.startsWith(SPECIAL) || contentDigest(path) !== read[path]);
}

/** How `contentDigest` names a file that is neither a regular file nor a directory (a FIFO, a device, a socket). */
const SPECIAL = 'special:';

/** `contentDigest`'s text for `path` if it is such a file (links followed), else undefined. */
function specialKind(path: string): string | undefined {
  try {
    const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
    return stat === undefined || stat.isFile() || stat.isDirectory() ? undefined : `${SPECIAL}${stat.mode.toString(8)}`;
  } catch {
    return undefined; // unreadable: the attempt fails where it is staged
  }
}

/** The names of the files (name → path) that are not there any more. */
export function missingFiles(files: Readonly<Record<string, string>>): string[] {
  return Object.keys(files).filter((name) => !existsSync(files[name]!));
}

/**
 * The inputs (and `<stdin>`) whose content differs from `atSubmit` (what `inputsIdentity` said when the task was
 * submitted), given where each is on the host now. Those the text does not name (upstream outputs) are not looked at.
 */
export function changedInputs(
  atSubmit: string,
  paths: Readonly<Record<string, string>>,
  stdinPath: string | undefined,
): string[] {
  const changed: string[] = [];
  for (const [name, digest] of parseIdentity(atSubmit)) {
    const path = name === STDIN ? stdinPath : paths[name];
    if (path !== undefined && contentDigest(path) !== digest) changed.push(name);
  }
  return changed;
}

const STDIN = '<stdin>';

/** `inputsIdentity`'s text back as [name, digest] pairs (names are JSON strings, `<stdin>` is not). */
function parseIdentity(text: string): Array<[string, string]> {
  const pairs: Array<[string, string]> = [];
  let i = 0;
  while (i < text.length) {
    let name: string;
    if (text[i] === '"') {
      let j = i + 1;
      while (text[j] !== '"') j += text[j] === '\\' ? 2 : 1;
      name = JSON.parse(text.slice(i, j + 1)) as string;
      i = j + 1;
    } else {
      name = STDIN;
      i += STDIN.length;
    }
    const end = text.indexOf(';', i);
    pairs.push([name, text.slice(i + 1, end)]); // after the '='
    i = end + 1;
  }
  return pairs;
}

/** The host path of a source given as a path (a string, except for stdin, where it is text) or a file reference. */
function hostPath(source: unknown, hostCwd: string, stdin: boolean): string | undefined {
  if (typeof source === 'string') return stdin ? undefined : resolve(hostCwd, source);
  if (isFileRef(source)) return resolve(hostCwd, source.$file);
  return undefined;
}

interface Known {
  readonly stat: BigIntStats;
  readonly digest: string;
}

/** digests of large files, by path, valid while the file's stat says it has not changed */
const known = new Map<string, Known>();

/**
 * How long ago a file must have last changed for its digest to be kept. File times move in coarse ticks (the kernel's
 * clock tick on ext4, milliseconds apart; a file server's own clock on NFS), so a file written again within the tick
 * of the stat that was kept, to the same size, keeps the same stat: the kept digest would then be served for other
 * content, and the task filed under the old content's id ("racily clean", in git's words). A file that changed this
 * recently is read again at each submit instead.
 */
const SETTLED_NS = 2_000_000_000n;

const unchanged = (a: BigIntStats, b: BigIntStats): boolean =>
  a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs;

/**
 * A digest of what is at `path` (links followed): a file's bytes; a directory's names, kinds and contents,
 * recursively; `missing` if nothing is there. Special files (FIFOs, devices, sockets) are never read.
 */
function contentDigest(path: string, within: string[] = []): string {
  try {
    return readDigest(path, within);
  } catch (err) {
    // unreadable (EACCES, ...): recorded as such, as a missing file is; the task fails where it is staged
    return `unreadable:${(err as NodeJS.ErrnoException).code ?? 'error'}`;
  }
}

/** `within`: the directories (`dev:ino`) this one is inside, from the input down */
function readDigest(path: string, within: string[]): string {
  const stat = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (stat === undefined) return 'missing';
  if (stat.isDirectory()) {
    // a link back to a directory it is inside: not followed (two such links would be followed 2^depth times)
    const self = `${stat.dev}:${stat.ino}`;
    if (within.includes(self)) return 'dir:loop';
    if (within.length >= MAX_DEPTH) return 'dir:too-deep';
    const hash = createHash('sha256');
    within.push(self);
    try {
      for (const name of readdirSync(path).sort()) hash.update(`${name}\0${contentDigest(join(path, name), within)}\0`);
    } finally {
      within.pop();
    }
    return `dir:${hash.digest('hex').slice(0, 32)}`;
  }
  if (!stat.isFile()) return `${SPECIAL}${stat.mode.toString(8)}`;
  if (stat.size > SMALL) {
    const cached = known.get(path);
    if (cached !== undefined && unchanged(cached.stat, stat)) return cached.digest;
  }
  // an executable bit counts too: a script the program runs behaves otherwise without it
  const digest = `file${(stat.mode & 0o111n) !== 0n ? '+x' : ''}:${hashFile(path)}`;
  // the stat taken after reading: a write while it was read is seen as a change the next time
  const after = statSync(path, { bigint: true, throwIfNoEntry: false });
  if (stat.size > SMALL && after !== undefined && unchanged(stat, after) && settled(after))
    known.set(path, { stat: after, digest });
  return digest;
}

/** The file last changed more than `SETTLED_NS` ago (a time ahead of this clock is not). */
function settled(stat: BigIntStats): boolean {
  const now = BigInt(Date.now()) * 1_000_000n;
  return now - stat.ctimeNs > SETTLED_NS && now - stat.mtimeNs > SETTLED_NS;
}

const buffer = Buffer.allocUnsafe(1 << 20);

function hashFile(path: string): string {
  const hash = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    for (;;) {
      const n = readSync(fd, buffer, 0, buffer.length, null);
      if (n === 0) break;
      hash.update(buffer.subarray(0, n));
    }
  } finally {
    closeSync(fd);
  }
  return hash.digest('hex').slice(0, 32);
}
