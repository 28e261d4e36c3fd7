/**
 * The native forker (`native/forker.c`), if scalems was installed with it: a small C program each spawner starts, which
 * starts the spawner's programs with posix_spawn. Node's spawn forks the spawner (a Node process: its page tables are
 * copied) and holds its one thread until the child has exec'd; the forker copies no page tables, and the spawner's
 * thread goes on meanwhile. Built as the package is installed (`native/build.cjs`); where it was not (no C compiler,
 * not Linux, `npm install --ignore-scripts`), or `SCALEMS_FORKER=node` is set, the spawners fork with Node, which is
 * slower per program and otherwise the same (the backend conformance suite runs on both).
 */
import { accessSync, constants } from 'node:fs';
import { join } from 'node:path';

/**
 * The environment variable that makes the spawners fork with Node (`SCALEMS_FORKER=node`), or use the forker at this
 * path (one built elsewhere, `cc -O2 -o <path> native/forker.c`).
 */
export const FORKER_VARIABLE = 'SCALEMS_FORKER';

let found: string | undefined;

/** The forker's path, or '' for none (the spawner then forks with Node). */
export function forkerPath(): string {
  const chosen = process.env[FORKER_VARIABLE];
  if (chosen === 'node') return '';
  if (chosen !== undefined && chosen !== '') return chosen;
  if (found === undefined) {
    // the package's root is three levels up from src/runtime/executable (jest), four from dist/src/runtime/executable
    const candidates = [join(__dirname, '..', '..', '..'), join(__dirname, '..', '..', '..', '..')];
    found = '';
    for (const root of candidates) {
      const path = join(root, 'native', 'scalems-forker');
      try {
        accessSync(path, constants.X_OK);
        found = path;
        break;
      } catch {
        // not there
      }
    }
  }
  return found;
}
