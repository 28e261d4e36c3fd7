/**
 * Whether this process was interrupted (SIGINT, SIGTERM, SIGHUP with no handler of the program's own) and is ending
 * the process trees of its tasks before it dies (`executable/process-tree.ts`). From then on, the executors start
 * nothing and record no outcome of the work running then: that work is being ended by this process, not failing or
 * finishing by itself (a program killed in the sweep is no failure of its task, nor one that exits 0 on SIGTERM a
 * success), and a retry would start a program after the user asked for the end. Its tasks stay as the store last
 * had them: a resume runs them again. Kept apart from the Node-only code: the executor reads it in any runtime.
 */
let interrupted = false;

/** @internal */
export function isInterrupted(): boolean {
  return interrupted;
}

/** @internal Said by the handler that ends this process's work on an interrupt. */
export function markInterrupted(): void {
  interrupted = true;
}
