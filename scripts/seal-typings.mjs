// After tsc (npm run build): the classes whose instances only the library makes get `private constructor();` in
// their typings (`protected` for one the library extends). Their constructors are @internal, and stripInternal leaves such a class with none in its .d.ts,
// which TypeScript reads as a public constructor of no arguments: `new Workflow()` type-checked, then threw a raw
// TypeError. Each class must be found where it is listed (a renamed or moved one fails the build, not the seal).
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const dist = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'src');
/** typings file (under dist/src) → the classes in it that users get from the library, never construct */
const sealed = {
  'runtime/workflow.d.ts': { Workflow: 'private' },
  'runtime/executor.d.ts': { Executor: 'private' },
  'runtime/runtime.d.ts': { Runtime: 'private' },
  'runtime/task.d.ts': { Task: 'private' },
  // Workflow's base
  'store/graph.d.ts': { TaskGraph: 'protected' },
};

for (const [file, classes] of Object.entries(sealed)) {
  const path = join(dist, file);
  let text = readFileSync(path, 'utf8');
  for (const [name, access] of Object.entries(classes)) {
    const head = new RegExp(`^export declare class ${name}\\b[^{]*\\{\\n`, 'm').exec(text);
    if (head === null) throw new Error(`seal-typings: no class ${name} in dist/src/${file}`);
    const at = head.index + head[0].length;
    const line = `    ${access} constructor();\n`;
    if (!text.slice(at).startsWith(line)) text = `${text.slice(0, at)}${line}${text.slice(at)}`;
  }
  writeFileSync(path, text);
}
