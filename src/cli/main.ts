#!/usr/bin/env node
/** The `scalems` command. Each subcommand is one entry of `COMMANDS`. */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { ScalemsError } from '../errors';
import {
  CliError,
  EXIT_FAILURE,
  EXIT_OK,
  EXIT_USAGE,
  UsageError,
  messageOf,
  type CliIo,
  type Command,
} from './command';
import { graphCommand } from './graph';
import { logsCommand } from './logs';
import { serveCommand } from './serve';
import { statusCommand } from './status';
import { workerCommand } from './worker';

export const COMMANDS: Readonly<Record<string, Command>> = {
  status: statusCommand,
  graph: graphCommand,
  logs: logsCommand,
  serve: serveCommand,
  worker: workerCommand,
};

/** This package's version, from its package.json (found upwards from here: dist/src/cli or src/cli). */
export function packageVersion(): string {
  for (let dir = __dirname; ; dir = dirname(dir)) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'scalems' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      // not here: one level up
    }
    if (dirname(dir) === dir) return 'unknown';
  }
}

function help(): string {
  const width = Math.max(...Object.keys(COMMANDS).map((n) => n.length)) + 2;
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(width)}${c.summary}`);
  return (
    `usage: scalems <command> [options]\n       scalems --version\n\ncommands:\n${lines.join('\n')}\n\n` +
    `Run \`scalems <command> --help\` for the options of one.\n`
  );
}

/** `node:util` parseArgs rejects unknown options and missing values with `ERR_PARSE_ARGS_*` codes. */
function isParseArgsError(error: unknown): error is Error {
  const code = typeof error === 'object' && error !== null ? (error as { code?: unknown }).code : undefined;
  return typeof code === 'string' && code.startsWith('ERR_PARSE_ARGS');
}

/** Runs `scalems <argv...>` and resolves to the exit code. Never throws. */
export async function main(
  argv: readonly string[],
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, cwd: process.cwd() },
): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const topic = name === 'help' && args[0] !== undefined ? COMMANDS[args[0]] : undefined;
    if (name === undefined) {
      io.stderr.write(help());
      return EXIT_USAGE;
    }
    io.stdout.write(topic?.usage ?? help());
    return EXIT_OK;
  }
  if (name === '--version' || name === '-V' || name === 'version') {
    io.stdout.write(`scalems ${packageVersion()}\n`);
    return EXIT_OK;
  }
  const command = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (command === undefined) {
    io.stderr.write(`scalems: unknown command "${name}"\n\n${help()}`);
    return EXIT_USAGE;
  }
  if (args.includes('--help') || args.includes('-h')) {
    io.stdout.write(command.usage);
    return EXIT_OK;
  }
  try {
    return await command.run(args, io);
  } catch (error) {
    if (error instanceof UsageError || isParseArgsError(error)) {
      io.stderr.write(`scalems ${name}: ${error.message}\n(see \`scalems ${name} --help\`)\n`);
      return EXIT_USAGE;
    }
    // Our own errors say what is wrong and what to do: the message is enough. Anything else is a bug
    // or an environment problem: the stack helps, with --verbose.
    const known = error instanceof CliError || error instanceof ScalemsError;
    io.stderr.write(`scalems ${name}: ${messageOf(error)}\n`);
    const stack = (error as { stack?: unknown } | undefined)?.stack;
    if (!known && typeof stack === 'string' && args.includes('--verbose')) io.stderr.write(`${stack}\n`);
    return EXIT_FAILURE;
  }
}

if (require.main === module) {
  // `scalems status | head`: the reader has gone, which ends the output, not with a stack trace
  for (const stream of [process.stdout, process.stderr])
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code !== 'EPIPE') throw error;
      process.exit(process.exitCode ?? 0);
    });
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
