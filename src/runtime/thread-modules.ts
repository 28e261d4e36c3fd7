/**
 * The task modules of a `threads()` backend, seen from the main thread: where they are, which task
 * names they export, and what a worker thread needs to load them.
 */
import { resolve } from 'node:path';
import { registeredName } from '../task/spec';

/**
 * Absolute, resolved paths of a backend's task modules (relative ones from `process.cwd()`); throws
 * naming a missing one. `backend` names the option in messages (`threads`, `slurm`).
 */
export function resolveModules(list: unknown, backend: string, options: { allowEmpty?: boolean } = {}): string[] {
  if (!Array.isArray(list) || (list.length === 0 && options.allowEmpty !== true) || !list.every((m): m is string => typeof m === 'string' && m.length > 0)) {
    throw new TypeError(`${backend}({ modules }): expected ${options.allowEmpty === true ? 'an' : 'a non-empty'} array of module paths (absolute, or relative to process.cwd()) that define the tasks with defineTask`);
  }
  return list.map((m) => {
    const path = resolve(process.cwd(), m);
    try {
      return require.resolve(path);
    } catch (err) {
      throw new TypeError(`${backend}({ modules }): module ${m} not found (looked for ${path})`, { cause: err });
    }
  });
}

/**
 * The task names each module exports, found by loading the modules here (synchronously), or
 * undefined where this thread cannot load them (an ES module, or TypeScript without tsx): then the
 * workers report unknown names when the task runs.
 */
export function probeModules(modules: readonly string[]): Set<string> | undefined {
  const names = new Set<string>();
  for (const path of modules) {
    let moduleExports: unknown;
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports -- loading the user's task modules, synchronously
      moduleExports = require(path);
    } catch (err) {
      const code = (err as { code?: unknown }).code;
      if (code === 'ERR_REQUIRE_ESM' || code === 'ERR_UNKNOWN_FILE_EXTENSION' || (isTypeScript(path) && err instanceof SyntaxError)) return undefined;
      throw new TypeError(`threads({ modules }): module ${path} failed to load: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    collectTaskNames(moduleExports, names);
    if (typeof moduleExports === 'object' && moduleExports !== null) collectTaskNames((moduleExports as { default?: unknown }).default, names);
  }
  return names;
}

function collectTaskNames(moduleExports: unknown, names: Set<string>): void {
  if (typeof moduleExports === 'function') {
    const name = registeredName(moduleExports as (...args: never[]) => unknown);
    if (name !== undefined) names.add(name);
  }
  if ((typeof moduleExports !== 'object' && typeof moduleExports !== 'function') || moduleExports === null) return;
  for (const key of Object.keys(moduleExports)) {
    const value: unknown = (moduleExports as Record<string, unknown>)[key];
    if (typeof value === 'function') {
      const name = registeredName(value as (...args: never[]) => unknown);
      if (name !== undefined) names.add(name);
    }
  }
}

export const isTypeScript = (path: string): boolean => /\.[cm]?ts$/.test(path);

/**
 * Worker threads do not inherit the parent's loaders here: TypeScript (this library run from source,
 * or `.ts` task modules) is loaded with tsx's CommonJS hook, which works inside worker threads.
 */
export function workerExecArgv(modules: readonly string[], workerFile: string): string[] {
  const argv = process.execArgv.includes('--enable-source-maps') ? ['--enable-source-maps'] : [];
  if (!isTypeScript(workerFile) && !modules.some(isTypeScript)) return argv;
  let tsx: string;
  try {
    tsx = require.resolve('tsx/cjs', { paths: [process.cwd(), __dirname] });
  } catch (err) {
    const ts = modules.find(isTypeScript) ?? workerFile;
    throw new TypeError(`threads(): ${ts} is TypeScript, and worker threads load TypeScript with tsx, which is not installed: npm install --save-dev tsx, or compile the module to JavaScript`, {
      cause: err,
    });
  }
  return [...argv, '--require', tsx];
}
