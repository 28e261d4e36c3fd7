/**
 * What the `slurm()` driver and its agents (one per node of the allocation, `agent.ts`) say to each other over one TCP
 * connection per agent: one JSON object per line. Both sides import it; nothing in it opens a socket.
 *
 *   agent → driver   hello (first, with the allocation's token), beat (every HEARTBEAT_MS), done (an attempt's
 *                    outcome), unwell (the node can run nothing more: its slurmd does not answer)
 *   driver → agent   run (an attempt, as `AttemptData`), stop (an attempt, with the reason), bye (release)
 *
 * A line that is not JSON, or not one of these messages, is an `AgentProtocolError`: the peer is not (or no longer)
 * a scalems agent or driver of this version, and the connection is closed.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import * as t from 'io-ts';
import { isLeft } from 'fp-ts/lib/Either';
import { AgentProtocolError } from '../../errors';
import type { RecordedError } from '../../recorded-error';
import { describeErrors } from '../../task/requirements';

/** ms between an agent's heartbeats; an agent silent for HEARTBEATS_MISSED of them is taken for dead */
export const HEARTBEAT_MS = 1000;
export const HEARTBEATS_MISSED = 3;
/** a line longer than this is refused (a task's arguments and result travel in one line) */
export const MAX_LINE_BYTES = 256 * 1024 * 1024;
/** the environment variables an agent finds its driver and token in (not argv: others can read a command line) */
export const ADDRESS_VARIABLE = 'SCALEMS_AGENT_ADDRESS';
export const TOKEN_VARIABLE = 'SCALEMS_AGENT_TOKEN';
/**
 * ... and the allocation's cores per node (`n1=2,n2=4`): a step started from outside the allocation (`srun
 * --jobid`) sees only its own CPUs in Slurm's variables.
 */
export const LAYOUT_VARIABLE = 'SCALEMS_AGENT_LAYOUT';

/** The allocation's cores on each of its nodes, by node name. */
export type Layout = ReadonlyMap<string, number>;

export const formatLayout = (layout: Layout): string => [...layout].map(([node, n]) => `${node}=${n}`).join(',');

export function parseLayout(text: string): Layout {
  const layout = new Map<string, number>();
  for (const part of text.split(',')) {
    const m = /^([^=]+)=(\d+)$/.exec(part);
    if (m !== null) layout.set(m[1]!, Number(m[2]));
  }
  return layout;
}

const Recorded = t.intersection([t.type({ name: t.string, message: t.string }), t.partial({ code: t.string })]);

const Hello = t.type({
  t: t.literal('hello'),
  token: t.string,
  node: t.string,
  pid: t.number,
  cores: t.number,
  memoryMB: t.number,
  gpus: t.number,
});
export type Hello = t.TypeOf<typeof Hello>;

export const AgentMessage = t.union([
  Hello,
  t.type({ t: t.literal('beat') }),
  t.intersection([
    t.type({ t: t.literal('done'), key: t.string, ok: t.boolean }),
    t.partial({ value: t.unknown, error: Recorded }),
  ]),
  t.type({ t: t.literal('unwell'), reason: t.string }),
  // the answer to `withdraw`: ok, it was withdrawn before it started (no `done` follows); else it runs here
  t.type({ t: t.literal('withdrawn'), key: t.string, ok: t.boolean }),
]);
export type AgentMessage = t.TypeOf<typeof AgentMessage>;

export const DriverMessage = t.union([
  t.type({ t: t.literal('run'), key: t.string, data: t.unknown }),
  t.type({ t: t.literal('stop'), key: t.string, reason: Recorded }),
  t.type({ t: t.literal('bye') }),
  // withdraw the attempt if it still waits for a core there (the driver moves it to a node with one free)
  t.type({ t: t.literal('withdraw'), key: t.string }),
]);
export type DriverMessage = t.TypeOf<typeof DriverMessage>;

/** An attempt's outcome as the agent sends it. */
export const doneMessage = (key: string, outcome: { value: unknown } | { error: RecordedError }): AgentMessage => ({
  t: 'done',
  key,
  ...('error' in outcome ? { ok: false, error: outcome.error } : { ok: true, value: outcome.value }),
});

/** One line of `codec`, or an `AgentProtocolError` saying what `from` sent. */
export function decodeLine<A>(codec: t.Type<A, unknown, unknown>, line: string, from: string): A {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    throw new AgentProtocolError(`${from} sent a line that is not JSON: ${JSON.stringify(line.slice(0, 80))}`);
  }
  if (codec.is(value)) return value;
  const decoded = codec.decode(value);
  if (isLeft(decoded)) {
    const problems = [...new Set(describeErrors('message', decoded.left))].slice(0, 3);
    throw new AgentProtocolError(`${from} sent a message this version does not know: ${problems.join('; ')}`);
  }
  return decoded.right;
}

/** Compares a presented token with the allocation's without telling, by its time, how much of it matched. */
export function tokenMatches(presented: string, token: string): boolean {
  const digest = (s: string): Buffer => createHash('sha256').update(s).digest();
  return timingSafeEqual(digest(presented), digest(token));
}

/**
 * Splits a byte stream into lines and hands each to `onLine`; a line over MAX_LINE_BYTES is an
 * `AgentProtocolError` given to `onError` (and the rest is dropped).
 */
export function lineReader(onLine: (line: string) => void, onError: (err: Error) => void): (chunk: Buffer) => void {
  let pending: Buffer[] = [];
  let length = 0;
  let failed = false;
  return (chunk) => {
    if (failed) return;
    let at = 0;
    for (let nl = chunk.indexOf(10, at); nl >= 0; nl = chunk.indexOf(10, at)) {
      const part = chunk.subarray(at, nl);
      const line = pending.length === 0 ? part.toString('utf8') : Buffer.concat([...pending, part]).toString('utf8');
      pending = [];
      length = 0;
      at = nl + 1;
      if (line !== '') onLine(line);
    }
    if (at < chunk.length) {
      pending.push(chunk.subarray(at));
      length += chunk.length - at;
      if (length > MAX_LINE_BYTES) {
        failed = true;
        onError(new AgentProtocolError(`a message longer than ${MAX_LINE_BYTES} bytes was refused`));
      }
    }
  };
}

/** A message as its line. */
export const line = (message: AgentMessage | DriverMessage): string => `${JSON.stringify(message)}\n`;
