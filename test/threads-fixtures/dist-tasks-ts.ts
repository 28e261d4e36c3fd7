// A TypeScript task module for the compiled library (dist/), as a user's project would have it: the
// workers load it through tsx. See test/threads-example.test.ts.
import { join } from 'node:path';

// the compiled library, as an installed package would be
type Scalems = typeof import('scalems');
const { defineTask, currentTask } = require(join(__dirname, '..', '..', 'dist', 'src', 'node', 'auto.js')) as Scalems;

export const double = defineTask('dist.double', (x: number) => ({ value: 2 * x, label: currentTask().label }));
