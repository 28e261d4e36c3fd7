/** Loading the optional peer dependencies (the Node-only heavy packages) where they are used. */
import { MissingDependencyError } from './errors';

/**
 * Loads an optional peer dependency through `load` (the caller's `require`, so that this file stays free
 * of Node): a missing package throws `MissingDependencyError`; any other failure to load it (a native module built
 * for another Node) is thrown as it is. Node caches the module: calling it at each use costs a cache look-up.
 */
export function optionalDependency<T>(
  packageName: string,
  version: string,
  feature: string,
  load: () => T,
  hint?: string,
): T {
  try {
    return load();
  } catch (error) {
    const { code, message } = (error ?? {}) as { code?: unknown; message?: unknown };
    const missing = code === 'MODULE_NOT_FOUND' && typeof message === 'string' && message.includes(`'${packageName}'`);
    if (!missing) throw error;
    const install = `npm install ${packageName}@${version}`;
    throw new MissingDependencyError(
      `${feature} needs the package ${packageName}, which is not installed (it is an optional peer dependency of ` +
        `scalems). Install it: ${install}${hint === undefined ? '' : `; ${hint}`}.`,
      packageName,
      install,
      { cause: error },
    );
  }
}
