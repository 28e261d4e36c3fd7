/**
 * Task modules: the files a backend's remote side loads to find `defineTask` functions by name. Here
 * on the main side: where they are and which task names they define (so that an unknown name is refused
 * at submit); how Node must be started to load them (tsx for TypeScript); and, on the remote side,
 * loading them. Shared by every backend that runs functions elsewhere (threads, slurm).
 */
import { createHash } from 'node:crypto';
import { readFileSync, realpathSync } from 'node:fs';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { FunctionVersionError, InvalidOptionsError, TaskModuleError } from '../../errors';
import { registeredName, type AnyFunction } from '../../task/spec';

/**
 * Absolute, resolved paths of a backend's task modules (relative ones from `process.cwd()`); throws
 * naming a missing one. `backend` names the option in messages (`threads`, `slurm`).
 */
export function resolveModules(list: unknown, backend: string, options: { allowEmpty?: boolean } = {}): string[] {
  if (
    !Array.isArray(list) ||
    (list.length === 0 && options.allowEmpty !== true) ||
    !list.every((m): m is string => typeof m === 'string' && m.length > 0)
  ) {
    throw new InvalidOptionsError(
      `${backend}({ modules }): expected ${options.allowEmpty === true ? 'an' : 'a non-empty'} array of module ` +
        `paths (absolute, or relative to process.cwd()) that define the tasks with defineTask`,
    );
  }
  return list.map((m) => {
    const path = resolve(process.cwd(), m);
    try {
      return require.resolve(path);
    } catch (err) {
      throw new InvalidOptionsError(`${backend}({ modules }): module ${m} not found (looked for ${path})`, [], {
        cause: err,
      });
    }
  });
}

/**
 * The task names the modules define, found by loading them here (synchronously), or undefined where
 * this process cannot load them so (an ES module, one with top-level await where Node can require ES modules, or
 * TypeScript without tsx): then the remote side
 * reports an unknown name when the task runs.
 */
export function probeModules(modules: readonly string[], backend: string): Set<string> | undefined {
  const names = new Set<string>();
  for (const path of modules) {
    // tsx compiles a TypeScript ES module again for require(): a second copy, whose defineTask calls would clash
    // with the first's (loaded by the program's own import); the remote side reports an unknown name instead. So it
    // does a JavaScript ES module where its CommonJS hook is on (the program run with tsx): Node's own require() of
    // an ES module would give the program's copy
    if (isEsmTypeScript(path) || (isEsmJavaScript(path) && tsxHooked())) return undefined;
    let moduleExports: unknown;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- the user's task modules, synchronously
      moduleExports = require(path);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (
        code === 'ERR_REQUIRE_ESM' ||
        code === 'ERR_REQUIRE_ASYNC_MODULE' || // an ES module with top-level await: only import() loads it
        code === 'ERR_UNKNOWN_FILE_EXTENSION' ||
        (isTypeScript(path) && err instanceof SyntaxError)
      )
        return undefined;
      throw new TaskModuleError(
        `${backend}({ modules }): module ${path} failed to load ` +
          `here: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
    collectTaskNames(moduleExports, names);
    if (typeof moduleExports === 'object' && moduleExports !== null)
      collectTaskNames((moduleExports as { default?: unknown }).default, names);
  }
  return names;
}

function collectTaskNames(moduleExports: unknown, names: Set<string>): void {
  if ((typeof moduleExports !== 'object' && typeof moduleExports !== 'function') || moduleExports === null) return;
  for (const value of [moduleExports, ...Object.values(moduleExports)]) {
    if (typeof value !== 'function') continue;
    const name = registeredName(value as AnyFunction);
    if (name !== undefined) names.add(name);
  }
}

const isTypeScript = (path: string): boolean => /\.[cm]?ts$/.test(path);

/** A TypeScript file Node and tsx load as an ES module: `.mts`, or `.ts` in a package of `"type": "module"`. */
function isEsmTypeScript(path: string): boolean {
  if (/\.mts$/.test(path)) return true;
  return /\.ts$/.test(path) && inModulePackage(path);
}

/** A JavaScript ES module: `.mjs`, or `.js` in a package of `"type": "module"`. */
function isEsmJavaScript(path: string): boolean {
  if (/\.mjs$/.test(path)) return true;
  return /\.js$/.test(path) && inModulePackage(path);
}

/** Whether tsx's CommonJS hook is on in this process (it compiles what require() loads, ES modules too). */
const tsxHooked = (): boolean => {
  const extensions = (require as { extensions?: object }).extensions;
  return extensions !== undefined && '.ts' in extensions;
};

/** Whether the nearest package.json above `path` says `"type": "module"`. */
function inModulePackage(path: string): boolean {
  for (let dir = dirname(path); ; dir = dirname(dir)) {
    try {
      return (JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { type?: unknown }).type === 'module';
    } catch {
      // no (readable) package.json here: the nearest one above decides
    }
    if (dirname(dir) === dir) return false;
  }
}

/**
 * The Node options that let a new thread or process load `files`: none for JavaScript; tsx's CommonJS
 * hook when one of them is TypeScript (this library run from source, or `.ts` task modules). Worker
 * threads and child processes do not inherit the parent's loaders.
 */
export function loaderArgs(files: readonly string[], backend: string, where: string): string[] {
  const ts = files.find(isTypeScript);
  if (ts === undefined) return [];
  try {
    return ['--require', require.resolve('tsx/cjs', { paths: [process.cwd(), __dirname] })];
  } catch (err) {
    throw new InvalidOptionsError(
      `${backend}(): ${ts} is TypeScript, and ${where} load TypeScript with tsx, which is not installed: npm ` +
        `install --save-dev tsx, or compile to JavaScript`,
      [],
      { cause: err },
    );
  }
}

/**
 * What the remote side of this process checks before it runs tasks (see `moduleDigests`, `loadModules`): the code it
 * loads must be the code this process has, since a task's default version is the source of its function as this
 * process loaded it.
 */
export interface ModuleDigests {
  /** each listed module's digest (undefined: it could not be read) */
  readonly modules: ReadonlyArray<string | undefined>;
  /**
   * Each file that was being loaded here when a task was defined (`recordDefiningFiles`: the defining module, what
   * imported it, ...), by its real path, with its digest as it was loaded. A module listed for the remote side may
   * reach the code of its tasks through others (`export { f } from './impl'`), which its own digest does not cover.
   */
  readonly defining: Readonly<Record<string, string>>;
}

/** `ModuleDigests` as a node entry's command line gives them, filled flag by flag (`readDigestFlag`). */
export type DigestsRead = { modules: Array<string | undefined>; defining: Record<string, string> };

/**
 * Reads a flag of a node entry's command line (`nodeEntryCommand`) that carries digests: `--digest <d>`, of the module
 * named just before (one is pushed for each `--modules` as undefined), or `--defined <d>:<path>`. False for another.
 */
export function readDigestFlag(flag: string, value: string, read: DigestsRead): boolean {
  if (flag === '--digest' && read.modules.length > 0) read.modules[read.modules.length - 1] = value;
  else if (flag === '--defined' && /^[0-9a-f]+:./.test(value))
    read.defining[value.slice(value.indexOf(':') + 1)] = value.slice(0, value.indexOf(':'));
  else return false;
  return true;
}

/**
 * The digests of the modules and of the files that defined tasks, as this process has them: a module as it was loaded
 * here (or as it reads now, if no task was defined while it loaded); a module edited before a pool loads it would run
 * other code under the identity of the old, and store its result as the old code's.
 */
export function moduleDigests(modules: readonly string[]): ModuleDigests {
  const defining: Record<string, string> = {};
  for (const [file, digest] of definingDigests) if (digest !== undefined) defining[file] = digest;
  return {
    modules: modules.map((m) => {
      const path = resolve(m);
      return definingDigests.get(realPath(path)) ?? fileDigest(path);
    }),
    defining,
  };
}

/**
 * The digest of each file that was being loaded (on the stack) when a `defineTask` call ran, as it read then: the
 * code this process has. A module loaded here, then edited before a backend reads it (`moduleDigests`), would
 * otherwise give the remote side the digest of the edited file, which it then loads: the new code, run under the
 * identity of the old.
 */
const definingDigests = new Map<string, string | undefined>();

/** At most this many frames of a `defineTask` call's stack are looked at (the module, what required it, ...). */
const DEFINING_FRAMES = 32;

/** Records the files on the stack of a `defineTask` call (`define`: the function that called this) not seen yet. */
export function recordDefiningFiles(define: AnyFunction): void {
  for (const file of stackFiles(define)) if (!definingDigests.has(file)) definingDigests.set(file, fileDigest(file));
}

/** The files of the frames below `below` on the stack now: absolute paths, without Node's own. */
function stackFiles(below: AnyFunction): string[] {
  const prepare = Error.prepareStackTrace;
  const limit = Error.stackTraceLimit;
  const holder: { stack?: unknown } = {};
  try {
    Error.stackTraceLimit = DEFINING_FRAMES;
    Error.prepareStackTrace = (_error, sites) => sites;
    Error.captureStackTrace(holder, below);
    const sites = holder.stack; // read while the override is in place: it is formatted on first read
    if (!Array.isArray(sites)) return [];
    const files = new Set<string>();
    for (const site of sites as NodeJS.CallSite[]) {
      const name = site.getFileName();
      if (name === undefined || name === null) continue;
      if (name.startsWith('file://')) files.add(fileURLToPath(name));
      else if (isAbsolute(name)) files.add(name);
    }
    return [...files];
  } catch {
    return [];
  } finally {
    Error.prepareStackTrace = prepare;
    Error.stackTraceLimit = limit;
  }
}

/** `path` with its symbolic links resolved, as a module's file name is; itself if that fails. */
function realPath(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path;
  }
}

function fileDigest(path: string): string | undefined {
  try {
    return createHash('sha256').update(readFileSync(path)).digest('hex');
  } catch {
    return undefined;
  }
}

/**
 * Loads the modules on the remote side, in order: ES modules (`.mjs`) through `import()`, others
 * (CommonJS, and `.ts` through tsx) through `require`. A module that fails is a `TaskModuleError`
 * naming it and `where` it failed. With `digests` (see `moduleDigests`), a module whose file no longer reads as the
 * submitting program read it is not loaded, and a file that defined tasks here as other code than it did there fails
 * the load once loaded: `FunctionVersionError`.
 */
export async function loadModules(modules: readonly string[], where: string, digests?: ModuleDigests): Promise<void> {
  for (const [i, m] of modules.entries()) {
    const path = resolve(m);
    const expected = digests?.modules[i];
    if (expected !== undefined && fileDigest(path) !== expected) throw changedAfterLoad('task module', path, where);
    try {
      if (/\.mjs$/.test(path)) await import(pathToFileURL(path).href);
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- CommonJS (and .ts through tsx) task modules
      else require(path);
    } catch (err) {
      throw new TaskModuleError(
        `task module ${path} failed to load in ${where}: ${err instanceof Error ? err.message : String(err)}`,
        { cause: err },
      );
    }
  }
  if (digests === undefined) return;
  for (const [file, digest] of definingDigests) {
    const expected = digests.defining[file];
    if (expected !== undefined && digest !== undefined && digest !== expected)
      throw changedAfterLoad('the file', file, where, ', which defines tasks,');
  }
}

const changedAfterLoad = (what: string, path: string, where: string, which = ''): FunctionVersionError =>
  new FunctionVersionError(
    `${what} ${path}${which} changed after the program that submits its tasks loaded it, so ${where} did not run ` +
      'them: it would run other code than the tasks were submitted with (their identity is their code as that ' +
      'program has it), and store its results as theirs. Run the program again after a change.',
  );
