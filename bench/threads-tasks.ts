// The trivial task of bench/threads.ts: registered for threads() by name, and piscina's handler
// (the default export) for the direct comparison. The same function either way.
import { defineTask } from 'scalems';

export const inc = defineTask('bench.threads.inc', (n: number): number => n + 1);

export default inc;
