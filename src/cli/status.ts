/** `scalems status`: counts per state and the failed tasks (root causes first) of a workflow, read from its store. */
import * as path from 'node:path';
import { parseArgs } from 'node:util';
import type { RecordedError } from '../recorded-error';
import { TASK_STATES, type TaskRecord, type TaskStateName } from '../store/state';
import {
  DEFAULT_PREFIX,
  DEFAULT_QUEUE,
  connectionFromUrl,
  describeConnection,
  meetingName,
  type Meeting,
  type RedisConnection,
} from '../runtime/bullmq/protocol';
import { bullmqReport, formatBullmqReport, type BullmqReport } from './bullmq-status';
import {
  CliError,
  EXIT_FAILURE,
  EXIT_OK,
  UsageError,
  messageOf,
  wholeNumber,
  type CliIo,
  type Command,
} from './command';
import { locate, oneDirectory, readWorkflow, type WorkflowLocation } from './locate';
import { printableBlock, printableLine } from './printable';

/** What `scalems status --json` prints for one workflow. */
export interface StatusSummary {
  readonly workflow: string;
  readonly store: string;
  readonly total: number;
  readonly counts: Record<TaskStateName, number>;
  /** every failed task: those that failed themselves first, then those whose input failed; each by finish time */
  readonly failed: ReadonlyArray<{
    readonly id: string;
    readonly label?: string;
    readonly name: string;
    readonly attempts: number;
    readonly error?: RecordedError;
  }>;
}

const UPSTREAM_FAILED = 'UPSTREAM_FAILED';

/** Counts per state and the failed tasks, root causes first. */
export function summarise(where: WorkflowLocation, records: readonly TaskRecord[], withStacks = false): StatusSummary {
  const counts = Object.fromEntries(TASK_STATES.map((s) => [s, 0])) as Record<TaskStateName, number>;
  for (const r of records) counts[r.state]++;
  const rank = (r: TaskRecord): number => (r.error?.code === UPSTREAM_FAILED ? 1 : 0);
  const failed = records
    .filter((r) => r.state === 'failed')
    .sort(
      (a, b) =>
        rank(a) - rank(b) ||
        (a.finishedAt ?? 0) - (b.finishedAt ?? 0) ||
        (a.label ?? a.id).localeCompare(b.label ?? b.id, 'en', { numeric: true }),
    )
    .map((r) => {
      const error = r.error === undefined || withStacks ? r.error : withoutStack(r.error);
      return {
        id: r.id,
        ...(r.label === undefined ? {} : { label: r.label }),
        name: r.name,
        attempts: r.attempts,
        ...(error === undefined ? {} : { error }),
      };
    });
  return { workflow: where.name, store: where.file, total: records.length, counts, failed };
}

function withoutStack(error: RecordedError): RecordedError {
  const { stack: _stack, cause, ...rest } = error;
  return cause === undefined ? rest : { ...rest, cause: withoutStack(cause) };
}

/** "12 tasks: 10 succeeded, 2 failed" */
export function countsLine(summary: Pick<StatusSummary, 'total' | 'counts'>): string {
  const parts = TASK_STATES.filter((s) => summary.counts[s] > 0).map((s) => `${summary.counts[s]} ${s}`);
  return `${summary.total} task${summary.total === 1 ? '' : 's'}${parts.length > 0 ? `: ${parts.join(', ')}` : ''}`;
}

const pad = (text: string, width: number): string => text + ' '.repeat(Math.max(0, width - text.length));

/** The summary of the workflow at `where`, under the name it was opened with (recorded in its store). */
async function summaryOf(where: WorkflowLocation, verbose: boolean): Promise<StatusSummary> {
  const { name, records } = await readWorkflow(where.file);
  return summarise({ ...where, name: name ?? where.name }, records, verbose);
}

/** The human-readable report of one workflow. */
export function formatStatus(summary: StatusSummary, options: { verbose?: boolean; limit?: number } = {}): string {
  const out: string[] = [printableLine(`workflow ${summary.workflow}  (${summary.store})`)];
  const width = Math.max(...TASK_STATES.map((s) => s.length), 'total'.length) + 2;
  for (const s of TASK_STATES) if (summary.counts[s] > 0) out.push(`  ${pad(s, width)}${summary.counts[s]}`);
  out.push(`  ${pad('total', width)}${summary.total}`);
  const failed = summary.failed;
  if (failed.length === 0) return out.join('\n') + '\n';

  const upstream = failed.filter((f) => f.error?.code === UPSTREAM_FAILED).length;
  out.push('', `failed tasks (${failed.length}${upstream > 0 ? `, ${upstream} because an input failed` : ''}):`);
  const limit = options.limit === undefined || options.limit <= 0 ? failed.length : options.limit;
  const shown = failed.slice(0, limit);
  if (options.verbose) {
    for (const f of shown) {
      const id = f.label === undefined ? '' : `, id ${f.id}`;
      out.push(printableLine(`  ${f.label ?? f.id}  (task ${f.name}${id}, attempts ${f.attempts})`));
      out.push(...describeError(f.error).map((line) => `      ${printableBlock(line)}`));
    }
  } else {
    const rows = [
      ['TASK', 'NAME', 'ATTEMPTS', 'ERROR'],
      ...shown.map((f) => [
        clip(printableLine(f.label ?? f.id)),
        clip(printableLine(f.name)),
        String(f.attempts),
        errorLine(f.error),
      ]),
    ];
    // a loop, not Math.max(...): that spread of more than about 120 000 rows overflowed the stack
    const widths = [0, 1, 2].map((c) => rows.reduce((w, row) => Math.max(w, row[c]!.length), 0) + 2);
    for (const row of rows)
      out.push(`  ${row.map((cell, c) => (c < 3 ? pad(cell, widths[c]!) : cell)).join('')}`.trimEnd());
  }
  if (shown.length < failed.length) out.push(`  ... and ${failed.length - shown.length} more (--limit 0 shows all)`);
  return out.join('\n') + '\n';
}

/** The widest a label or name is shown in the table (one label of 100 000 characters made every row that wide). */
const MAX_CELL = 60;

/** `text`, cut to `MAX_CELL` characters with an ellipsis (`--verbose` and `--json` show it whole). */
const clip = (text: string): string => (text.length > MAX_CELL ? `${text.slice(0, MAX_CELL - 1)}…` : text);

/**
 * One line for the table: the message's first line and, for a message of several (an executable's, which ends with
 * the end of its stderr), its last non-empty one: where the program said what went wrong.
 */
function errorLine(error: RecordedError | undefined): string {
  if (error === undefined) return '(no error recorded)';
  const lines = error.message.split('\n');
  const last = lines
    .slice(1)
    .reverse()
    .find((l) => l.trim() !== '');
  return printableLine(`${error.name}: ${lines[0]}${last === undefined ? '' : ` … ${last.trim()}`}`);
}

/** The full message, code, details and stack of a recorded error, as lines. */
function describeError(error: RecordedError | undefined): string[] {
  if (error === undefined) return ['(no error recorded)'];
  const head = `${error.name}: ${error.message}`;
  const lines =
    error.stack !== undefined && error.stack.startsWith(head)
      ? error.stack.split('\n')
      : [...head.split('\n'), ...(error.stack?.split('\n') ?? [])];
  if (error.code !== undefined) lines.push(`code: ${error.code}`);
  if (error.details !== undefined && Object.keys(error.details).length > 0)
    lines.push(`details: ${JSON.stringify(error.details)}`);
  if (error.cause !== undefined) lines.push('caused by:', ...describeError(error.cause).map((line) => `  ${line}`));
  return lines;
}

const USAGE = `usage: scalems status [dir] [--json] [--verbose] [--limit N] [--redis <url> [--prefix P] [--queue Q]]

Shows the state of a workflow from its store, read-only (a running workflow may hold it).
  dir        a workflow directory (.scalems/<name>), its state.sqlite, or a directory of
             workflows (default: .scalems under the current directory). When it holds
             several workflows, each is listed with its counts.
  --json     print a machine-readable summary (all failed tasks, full messages)
  --verbose  show the full error message, code, details and stack of each failed task
  --limit N  show at most N failed tasks (default 20; 0 shows all)
  --redis    also show the bullmq() queues at this Redis (redis://...; or set SCALEMS_REDIS_URL): the live
             workers, the tasks waiting and running per task shape, and why tasks wait that no live worker fits
  --prefix, --queue  the queues' bullmq({ prefix, queue }) (default scalems, tasks)
`;

/** The bullmq() queues to report on, when `--redis` (or SCALEMS_REDIS_URL) says where. */
async function queuesOf(values: {
  redis?: string;
  prefix?: string;
  queue?: string;
}): Promise<BullmqReport | undefined> {
  const url = values.redis ?? process.env.SCALEMS_REDIS_URL;
  if (url === undefined) {
    if (values.prefix !== undefined || values.queue !== undefined)
      throw new UsageError('--prefix and --queue need --redis');
    return undefined;
  }
  let connection: RedisConnection;
  let meeting: Meeting;
  try {
    connection = connectionFromUrl(url, '--redis');
    meeting = {
      prefix: meetingName(values.prefix, '--prefix', DEFAULT_PREFIX),
      queue: meetingName(values.queue, '--queue', DEFAULT_QUEUE),
    };
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  try {
    return await bullmqReport(connection, meeting);
  } catch (err) {
    throw new CliError(`cannot read the bullmq() queues at ${describeConnection(connection)}: ${messageOf(err)}`);
  }
}

export const statusCommand: Command = {
  summary: 'counts per state and the failed tasks of a workflow',
  usage: USAGE,
  async run(args: readonly string[], io: CliIo): Promise<number> {
    const { values, positionals } = parseArgs({
      args: [...args],
      allowPositionals: true,
      options: {
        json: { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        limit: { type: 'string' },
        redis: { type: 'string' },
        prefix: { type: 'string' },
        queue: { type: 'string' },
      },
    });
    const queues = await queuesOf(values);
    const dir = oneDirectory(positionals);
    // (before: '' was 0, all of them, and 0x2 was 2)
    const limit = wholeNumber('limit', values.limit, 0, ' (0 = all)') ?? 20;
    const verbose = values.verbose ?? false;

    // a worker's machine, or a driver on memoryStore(), has no store here: --redis alone reports the queues (before,
    // the report was read, then dropped for the missing store's error)
    let located: ReturnType<typeof locate>;
    try {
      located = locate(dir, io.cwd);
    } catch (error) {
      if (queues === undefined || dir !== undefined || !(error instanceof CliError)) throw error;
      io.stdout.write(values.json ? JSON.stringify({ bullmq: queues }, null, 2) + '\n' : formatBullmqReport(queues));
      return EXIT_OK;
    }
    if ('one' in located) {
      const summary = await summaryOf(located.one, verbose);
      io.stdout.write(
        values.json
          ? JSON.stringify(queues === undefined ? summary : { ...summary, bullmq: queues }, null, 2) + '\n'
          : formatStatus(summary, { verbose, limit }) + (queues === undefined ? '' : '\n' + formatBullmqReport(queues)),
      );
      return EXIT_OK;
    }

    // Several workflows: one line each. A store that cannot be read is reported on its line.
    let code = EXIT_OK;
    const results: Array<StatusSummary | { workflow: string; store: string; error: string }> = [];
    for (const where of located.several) {
      try {
        results.push(await summaryOf(where, verbose));
      } catch (error) {
        code = EXIT_FAILURE;
        results.push({ workflow: where.name, store: where.file, error: messageOf(error) });
      }
    }
    if (values.json) {
      const report = { root: located.root, workflows: results, ...(queues !== undefined ? { bullmq: queues } : {}) };
      io.stdout.write(JSON.stringify(report, null, 2) + '\n');
      return code;
    }
    const width = Math.max(...results.map((r) => r.workflow.length)) + 2;
    const lines = [`${results.length} workflows in ${located.root}:`];
    for (const r of results)
      lines.push(
        printableLine(`  ${pad(r.workflow, width)}${'error' in r ? `cannot be read: ${r.error}` : countsLine(r)}`),
      );
    lines.push(`Run \`scalems status ${path.join(located.root, '<name>')}\` for the failed tasks of one.`);
    io.stdout.write(lines.join('\n') + '\n' + (queues === undefined ? '' : '\n' + formatBullmqReport(queues)));
    return code;
  },
};
