/** `scalems serve`: a live dashboard of a workflow, read from its store without its lock. */
import { parseArgs } from 'node:util';
import { InvalidOptionsError } from '../../errors';
import { CliError, EXIT_OK, UsageError, messageOf, wholeNumber, type CliIo, type Command } from '../command';
import { locateOne, oneDirectory } from '../locate';
import { printableLine } from '../printable';
import { startDashboard } from './server';

const USAGE = `usage: scalems serve [dir] [--port N] [--host ADDR] [--token T] [--poll MS]

Serves a live dashboard of a workflow: counts and progress, the task graph, a task stream per executor
slot, each task's attempts, error and output. It reads the store read-only and without its lock (a running
workflow may hold it), pushes each change to the open pages, and prints the address; it opens no browser.
Ctrl-C stops it.
  dir       a workflow directory (.scalems/<name>) or its state.sqlite (default: the one workflow under
            .scalems in the current directory)
  --port N  the port (default: a free one)
  --host    the address to listen on (default 127.0.0.1: this machine only)
  --token   the token every request must carry (at least 16 characters of A-Z a-z 0-9 . _ ~ -), or
            SCALEMS_SERVE_TOKEN; else one is made and printed in the URL. A request without it gets 401,
            also on 127.0.0.1, which every account of the machine can reach. The dashboard shows
            everything tasks were given, env values included.
  --poll    how often to read the store, in ms (default 500)
`;

/** The longest timer Node keeps (longer ones fire at once). */
const MAX_POLL_MS = 2 ** 31 - 1;

/** Resolves when `signal` aborts, or on SIGINT/SIGTERM when there is none. */
function stopped(signal: AbortSignal | undefined): Promise<void> {
  if (signal !== undefined)
    return new Promise((resolve) => {
      if (signal.aborted) resolve();
      else signal.addEventListener('abort', () => resolve(), { once: true });
    });
  return new Promise((resolve) => {
    const stop = (): void => {
      process.off('SIGINT', stop).off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop).on('SIGTERM', stop);
  });
}

export const serveCommand: Command = {
  summary: 'a live dashboard of a workflow in the browser (prints its address)',
  usage: USAGE,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        token: { type: 'string' },
        poll: { type: 'string' },
      },
    });
    const dir = oneDirectory(positionals);
    const port = wholeNumber('port', values.port, 0);
    const pollMs = wholeNumber('poll', values.poll, 0);
    // (a timer longer than 2^31 - 1 ms fires at once, and then every millisecond)
    if (pollMs !== undefined && (pollMs < 50 || pollMs > MAX_POLL_MS))
      throw new UsageError(`--poll expects 50 to ${MAX_POLL_MS} ms, got ${pollMs}`);
    const token = values.token ?? (process.env.SCALEMS_SERVE_TOKEN || undefined);
    const located = locateOne(dir, io.cwd, (one) => `scalems serve ${one}`);
    let dashboard;
    try {
      dashboard = await startDashboard({
        file: located.file,
        name: located.name,
        ...(values.host === undefined ? {} : { host: values.host }),
        ...(port === undefined ? {} : { port }),
        ...(token === undefined ? {} : { token }),
        ...(pollMs === undefined ? {} : { pollMs }),
      });
    } catch (error) {
      if (error instanceof InvalidOptionsError) throw new UsageError(error.problems.join('; '));
      const code = (error as { code?: unknown }).code;
      const advice: Record<string, string> = {
        EADDRINUSE: 'another program listens there: give another --port, or none (a free one is taken)',
        EADDRNOTAVAIL: 'this machine has no such address: give one of its addresses to --host',
        EACCES: 'ports below 1024 need privileges: give a --port above 1023, or none',
      };
      if (typeof code === 'string' && Object.hasOwn(advice, code))
        throw new CliError(
          `cannot listen on ${values.host ?? '127.0.0.1'}:${port ?? 0}: ${messageOf(error)}; ${advice[code]!}`,
        );
      throw error;
    }
    const { source } = dashboard;
    io.stdout.write(
      printableLine(`scalems serve: workflow ${source.workflow} (${source.size} tasks, ${source.file})`) +
        `\n${dashboard.url}\n` +
        (dashboard.madeToken ? 'The token in this URL was made for this run: share it only with who may read.\n' : '') +
        'Ctrl-C stops it.\n',
    );
    await stopped(io.signal);
    await dashboard.close();
    return EXIT_OK;
  },
};
