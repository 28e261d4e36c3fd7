/**
 * The native forker (`native/forker.c`), if scalems was installed with it: a small C program each spawner starts, which
 * starts the spawner's programs with posix_spawn. Node's spawn forks the spawner (a Node process: its page tables are
 * copied) and holds its one thread until the child has exec'd; the forker copies no page tables, and the spawner's
 * thread goes on meanwhile. Built as the package is installed (`native/build.cjs`); where it was not (no C compiler,
 * not Linux, `npm install --ignore-scripts`), or `SCALEMS_FORKER=node` is set, the spawners fork with Node: slower per
 * program, and a program killed by a signal Node has no name for (32-64) is reported as exit code 0 (the backend
 * conformance suite runs on both).
 */
import { accessSync, constants, existsSync } from 'node:fs';
import { join } from 'node:path';

/**
 * The environment variable that makes the spawners fork with Node (`SCALEMS_FORKER=node`), or use the forker at this
 * path (one built elsewhere, `cc -O2 -o <path> native/forker.c`).
 */
export const FORKER_VARIABLE = 'SCALEMS_FORKER';

let found: string | undefined;
let warned = false;

/** The forker's path, or '' for none (the spawner then forks with Node). */
export function forkerPath(): string {
  const chosen = process.env[FORKER_VARIABLE];
  if (chosen === 'node') return '';
  if (chosen !== undefined && chosen !== '') return chosen;
  if (found === undefined) {
    found = '';
    try {
      accessSync(join(packageRoot(), 'native', 'scalems-forker'), constants.X_OK);
      found = join(packageRoot(), 'native', 'scalems-forker');
    } catch {
      // not built
    }
  }
  if (found === '' && process.platform === 'linux' && !warned) {
    // npm shows nothing an install script prints unless it fails: the install's own line is rarely seen
    warned = true;
    process.emitWarning(
      "scalems's native forker (native/scalems-forker) was not built where scalems is installed (no C compiler " +
        "then, or its install script did not run): programs are started with Node's spawn, slower per program, and " +
        'a program killed by a signal numbered 32 to 64 is reported by Node as exit code 0, so its task succeeds. ' +
        `Build it: node native/build.cjs in ${packageRoot()} (needs cc); or set ` +
        `${FORKER_VARIABLE}=node to choose Node's spawn.`,
      { type: 'ScalemsWarning', code: 'SCALEMS_NO_FORKER' },
    );
  }
  return found;
}

/** The package's directory: three levels up from src/runtime/executable (jest), four from dist/src/runtime/... */
function packageRoot(): string {
  const source = join(__dirname, '..', '..', '..');
  return existsSync(join(source, 'native', 'forker.c')) ? source : join(source, '..');
}
