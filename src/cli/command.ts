/** Where a command writes, and the directory it runs in: injectable so commands can be tested in-process. */
export interface CliIo {
  /** (bytes for output copied as it is: `scalems logs` into a pipe or a file) */
  readonly stdout: { write(chunk: string | Uint8Array): unknown };
  readonly stderr: { write(text: string): unknown };
  readonly cwd: string;
  /** ends a command that runs until stopped (`scalems serve`); without it, SIGINT or SIGTERM does */
  readonly signal?: AbortSignal;
}

/** One `scalems <name>` subcommand: an entry in the table of `main.ts`. */
export interface Command {
  /** One line for `scalems --help`. */
  readonly summary: string;
  /** The full help text (`scalems <name> --help`). */
  readonly usage: string;
  /** Runs with the arguments after the subcommand name; resolves to the exit code. */
  run(args: readonly string[], io: CliIo): Promise<number>;
}

/** A mistake on the command line: printed with a pointer to `--help`, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A problem with what the command was pointed at (no store, unreadable store...): message only, exit code 1. */
export class CliError extends Error {
  override readonly name = 'CliError';
}

/**
 * The whole number an option's text is (decimal digits only: not '', ' ', '0x2' or '1e3', which Number() takes),
 * at least `min`; else a UsageError naming the option. Undefined when the option was not given.
 */
export function wholeNumber(name: string, text: string | undefined, min: number, what = ''): number | undefined {
  if (text === undefined) return undefined;
  const n = /^\d+$/.test(text) ? Number(text) : NaN;
  if (!Number.isSafeInteger(n) || n < min)
    throw new UsageError(`--${name} expects a whole number from ${min}${what}, got "${text}"`);
  return n;
}

export const EXIT_OK = 0;
export const EXIT_FAILURE = 1;
export const EXIT_USAGE = 2;

/** The message of anything thrown (errors from other realms included). */
export function messageOf(error: unknown): string {
  const message = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : undefined;
  return typeof message === 'string' ? message : String(error);
}
