// Builds the native forker (forker.c: programs started with posix_spawn instead of Node's fork) as scalems is
// installed: the package's "install" script. It never fails the install: where there is no C compiler ($CC, or cc), or
// the system is not Linux, or it does not compile, the spawners fork with Node (src/runtime/executable/forker.ts): slower
// per program, and blind to deaths by signals 32-64 (docs/processes.md). `node native/build.cjs` builds it again.
'use strict';
const { execFileSync } = require('node:child_process');
const { renameSync, rmSync } = require('node:fs');
const { join } = require('node:path');

const out = join(__dirname, 'scalems-forker');
if (process.platform !== 'linux') process.exit(0);
const cc = process.env.CC || 'cc';
const tmp = `${out}.${process.pid}`;
try {
  execFileSync(cc, ['-O2', '-o', tmp, join(__dirname, 'forker.c')], { stdio: ['ignore', 'ignore', 'pipe'] });
  renameSync(tmp, out);
} catch (e) {
  rmSync(tmp, { force: true });
  const why =
    e.code === 'ENOENT'
      ? `no C compiler (${cc})`
      : String(e.stderr || e.message)
          .trim()
          .split('\n')[0];
  console.warn(
    `scalems: the native forker was not built (${why}); programs are started with Node's spawn instead: ` +
      'slower per program, and a program killed by a signal numbered 32 to 64 is taken for a success (Node reports exit ' +
      'code 0). Install a C compiler and run `node native/build.cjs` in the scalems package to build it.',
  );
}
