// The logger: off by default; on with SCALEMS_LOG (or DEBUG=scalems:*) or openWorkflow({ log }).
import {
  call,
  executor,
  inProcess,
  InvalidOptionsError,
  launch,
  memoryStore,
  openWorkflow,
  type LogLevel,
  type LogSink,
  type Store,
} from 'scalems';

const double = (n: number): number => n * 2;
const boom = (n: number): number => {
  throw new RangeError(`value ${n} out of range`);
};

/** Runs a small workflow: a success, a retried failure, a failure with a dependent, a cancellation. */
async function run(options: { log?: LogLevel | { level: LogLevel; sink: LogSink } } = {}): Promise<void> {
  const wf = await openWorkflow({ store: memoryStore(), name: 'logged', ...options });
  const rt = launch(wf, inProcess());
  const ex = executor(rt);
  const a = ex.submit(double, 1);
  const b = ex.submit({ ...call(boom, 2), label: 'bad', requirements: { retries: 1 } });
  const c = ex.submit(double, b);
  const d = ex.submit((): Promise<number> => new Promise(() => undefined));
  await Promise.allSettled([a, b, c]);
  d.cancel('enough');
  await Promise.allSettled([d]);
  await rt.shutdown();
  await wf.close();
}

function capture(): { lines: Array<[string, string]>; sink: LogSink } {
  const lines: Array<[string, string]> = [];
  return { lines, sink: (level, line) => lines.push([level, line]) };
}

let saved: { SCALEMS_LOG?: string; DEBUG?: string };
let stderr: jest.SpyInstance;
let written: string[];
beforeEach(() => {
  saved = { SCALEMS_LOG: process.env.SCALEMS_LOG, DEBUG: process.env.DEBUG };
  delete process.env.SCALEMS_LOG;
  delete process.env.DEBUG;
  written = [];
  stderr = jest.spyOn(process.stderr, 'write').mockImplementation(((text: string) => {
    written.push(String(text));
    return true;
  }) as typeof process.stderr.write);
  jest.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
});
afterEach(() => {
  jest.restoreAllMocks();
  for (const [k, v] of Object.entries(saved)) {
    if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  }
});

const ours = (): string[] => written.filter((w) => w.startsWith('[scalems]'));

it('is off by default: nothing is written', async () => {
  await run();
  expect(stderr).not.toHaveBeenCalledWith(expect.stringContaining('[scalems]'));
  expect(ours()).toEqual([]);
});

it('SCALEMS_LOG=warn writes the failures to stderr: the root failure, not its dependents', async () => {
  process.env.SCALEMS_LOG = 'warn';
  await run();
  const lines = ours();
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(
    /^\[scalems\] \S+Z warn {2}workflow logged: task "bad" \(boom, boom-\w+\) failed after 2 attempts \(the last ran \d+ ms\): RangeError: value 2 out of range\n$/,
  );
});

it('SCALEMS_LOG=info adds retries, cancellations, executors opened and closed, the workflow opened and closed', async () => {
  process.env.SCALEMS_LOG = 'info';
  await run();
  const text = ours().join('');
  expect(text).toContain('opened on memory with 0 task records');
  expect(text).toMatch(/executor executor-\d+ opened on inProcess\(\): \d+ cores/);
  expect(text).toMatch(/task "bad" \(boom, [^)]+\) attempt 1 failed after \d+ ms, retrying: RangeError: value 2/);
  expect(text).toMatch(/failed after 0 attempts: UpstreamFailedError/);
  expect(text).toMatch(/cancelled after \d+ ms: TaskCancelledError: enough/);
  expect(text).toMatch(/executor executor-\d+ closed/);
  expect(text).toContain('workflow logged: closed');
  expect(text).not.toContain(' debug ');
});

it('DEBUG=scalems:* logs every task event', async () => {
  process.env.DEBUG = 'express:*,scalems:*';
  await run();
  const text = ours().join('');
  expect(text).toMatch(/debug workflow logged: task \(double, [^)]+\) submitted on executor-\d+/);
  expect(text).toMatch(/started, attempt 1 on executor-\d+/);
  expect(text).toMatch(/succeeded after \d+ ms, attempt 1/);
});

it('openWorkflow({ log }) switches it on (or off) whatever the environment says, and takes a sink', async () => {
  process.env.SCALEMS_LOG = 'debug';
  await run({ log: 'off' });
  expect(ours()).toEqual([]);
  delete process.env.SCALEMS_LOG;
  const { lines, sink } = capture();
  await run({ log: { level: 'warn', sink } });
  expect(lines.map(([level]) => level)).toEqual(['warn']);
  expect(ours()).toEqual([]);
  await expect(openWorkflow({ store: memoryStore(), log: 'verbose' as LogLevel })).rejects.toThrow(InvalidOptionsError);
});

it('logs a store write problem once, as an error, while writes keep failing', async () => {
  const inner = memoryStore();
  let full = true;
  const store: Store = {
    ...inner,
    description: 'flaky-disk',
    setMany: async (entries) => {
      if (full) throw new Error('ENOSPC: no space left on device');
      return inner.setMany(entries);
    },
  };
  const { lines, sink } = capture();
  const wf = await openWorkflow({ store, name: 'disk', log: { level: 'error', sink } });
  const ex = executor(launch(wf, inProcess()));
  await ex.submit(double, 1);
  await expect(wf.flushed()).rejects.toThrow('ENOSPC');
  await expect(wf.flushed()).rejects.toThrow('ENOSPC');
  expect(lines).toHaveLength(1);
  expect(lines[0]![0]).toBe('error');
  expect(lines[0]![1]).toContain('writing to its store failed (records are kept and written again): ENOSPC');
  full = false;
  await wf.close();
  expect(lines).toHaveLength(1);
});
