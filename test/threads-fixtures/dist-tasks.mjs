// An ES module of tasks for the compiled library: `scalems` resolves to dist/ (the package's own
// exports), as it would in a user's project. See test/threads-example.test.ts.
import { defineTask } from 'scalems';

export const square = defineTask('dist.square', (x) => x * x);
