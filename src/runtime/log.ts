/**
 * The logger: off by default; switched on by `SCALEMS_LOG=debug|info|warn|error` (or `DEBUG=scalems:*`) in the
 * environment (a browser: `localStorage.SCALEMS_LOG`), or by `openWorkflow({ log })`. No dependency: what it needs
 * is a level test and a line, and it must run in a browser as well as on Node.
 */

/** How much is logged: `warn` failures and store problems; `info` also retries, cancellations, executors opened and
 * closed; `debug` every task event. */
export type LogLevel = 'debug' | 'info' | 'warn' | 'error' | 'off';

/** Where log lines go. @default one line each to stderr on Node, the console's method of the level in a browser */
export type LogSink = (level: Exclude<LogLevel, 'off'>, line: string) => void;

/** `openWorkflow({ log })`: a level, or a level and where the lines go. */
export type LogOptions = LogLevel | { readonly level: LogLevel; readonly sink?: LogSink };

const RANK: Readonly<Record<LogLevel, number>> = { debug: 10, info: 20, warn: 30, error: 40, off: 99 };

export const LOG_LEVELS: readonly LogLevel[] = ['debug', 'info', 'warn', 'error', 'off'];

export const isLogLevel = (value: unknown): value is LogLevel =>
  typeof value === 'string' && (LOG_LEVELS as readonly string[]).includes(value);

interface Host {
  readonly process?: {
    readonly env?: Readonly<Record<string, string | undefined>>;
    readonly stderr?: { write(text: string): unknown };
  };
  readonly localStorage?: { getItem(key: string): string | null };
  readonly console?: Partial<Record<'debug' | 'info' | 'warn' | 'error', (line: string) => void>>;
}

const host = globalThis as Host;

/**
 * The level the environment asks for: `SCALEMS_LOG` (a level name), else `debug` if `DEBUG` names scalems
 * (`scalems`, `scalems:*`, `*`), else `off`. An unknown `SCALEMS_LOG` value is taken as `info` rather than ignored.
 */
export function levelFromEnvironment(
  env: Readonly<Record<string, string | undefined>> | undefined = envOf(),
): LogLevel {
  const asked = env?.SCALEMS_LOG?.trim().toLowerCase();
  if (asked !== undefined && asked !== '') {
    if (isLogLevel(asked)) return asked;
    return ['0', 'false', 'no', 'none'].includes(asked) ? 'off' : 'info';
  }
  const debug = env?.DEBUG;
  if (debug !== undefined && debug.split(/[\s,]+/).some((d) => /^(\*|scalems(:\*|\*)?)$/.test(d))) return 'debug';
  return 'off';
}

function envOf(): Readonly<Record<string, string | undefined>> | undefined {
  const env = host.process?.env;
  if (env !== undefined) return env;
  try {
    const asked = host.localStorage?.getItem('SCALEMS_LOG');
    return asked === null || asked === undefined ? undefined : { SCALEMS_LOG: asked };
  } catch {
    return undefined; // storage refused (privacy settings): no logging
  }
}

const defaultSink: LogSink = (level, line) => {
  const stderr = host.process?.stderr;
  if (stderr !== undefined) stderr.write(line + '\n');
  else host.console?.[level]?.(line);
};

/** A workflow's logger: one test of the level per call when off; lines `[scalems] <time> <level> <workflow>: …`. */
export class Logger {
  private readonly rank: number;
  readonly level: LogLevel;
  private readonly sink: LogSink;

  constructor(
    private readonly scope: string,
    options: LogOptions | undefined = undefined,
  ) {
    const level =
      options === undefined ? levelFromEnvironment() : typeof options === 'string' ? options : options.level;
    this.level = level;
    this.rank = RANK[level];
    this.sink = (typeof options === 'object' ? options.sink : undefined) ?? defaultSink;
  }

  /** True if messages of `level` are logged (test it before building an expensive message). */
  enabled(level: Exclude<LogLevel, 'off'>): boolean {
    return RANK[level] >= this.rank;
  }

  debug(message: string): void {
    if (this.rank <= RANK.debug) this.write('debug', message);
  }

  info(message: string): void {
    if (this.rank <= RANK.info) this.write('info', message);
  }

  warn(message: string): void {
    if (this.rank <= RANK.warn) this.write('warn', message);
  }

  error(message: string): void {
    if (this.rank <= RANK.error) this.write('error', message);
  }

  private write(level: Exclude<LogLevel, 'off'>, message: string): void {
    this.sink(level, `[scalems] ${new Date().toISOString()} ${level.padEnd(5)} ${this.scope}: ${message}`);
  }
}
