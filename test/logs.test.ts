// `scalems logs`: a task's stdout and stderr from its attempt directories, after a real processes() run.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../src/cli/main';
import { call, executable, executor, inProcess, launch, openWorkflow } from 'scalems';
import { processes, sqliteStore } from 'scalems/node';

/** Runs `scalems <argv>` in-process in `cwd`; `tty` makes its stdout look like a terminal. */
async function cli(cwd: string, argv: string[], tty = false): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await main(argv, {
    cwd,
    stdout: { write: (s: string) => (out += s), ...(tty ? { isTTY: true } : {}) },
    stderr: { write: (s: string) => (err += s) },
  });
  return { code, out, err };
}

let root: string;
let ids: { hello: string; flaky: string; fn: string };
beforeAll(async () => {
  root = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-logs-'));
  const wf = await openWorkflow({
    name: 'run',
    store: sqliteStore(path.join(root, '.scalems', 'run', 'state.sqlite')),
  });
  const rt = launch(wf, processes({ root: path.join(root, '.scalems') }));
  const ex = executor(rt);
  const lines = Array.from({ length: 50 }, (_, i) => `line ${i + 1}`).join('\\n');
  const hello = ex.submit(
    executable(['sh', '-c', `printf '${lines}\\n'; echo 'warning: low' >&2; printf '\\033[2Jred\\n' >&2`], {
      label: 'hello',
    }),
  );
  // fails on its first attempt (no marker yet), succeeds on its second
  const flaky = ex.submit(
    executable(
      [
        'sh',
        '-c',
        'if [ -e ../../marker ]; then echo second; else touch ../../marker; echo first; echo bad >&2; exit 3; fi',
      ],
      { label: 'flaky', requirements: { retries: 1 } },
    ),
  );
  const fn = executor(launch(wf, inProcess())).submit({ ...call((n: number) => n + 1, 1), label: 'plain' });
  await Promise.allSettled([hello, flaky, fn]);
  ids = { hello: hello.id, flaky: flaky.id, fn: fn.id };
  await rt.shutdown();
  await wf.close();
}, 60_000);
afterAll(() => fs.rmSync(root, { recursive: true, force: true }));

it('into a pipe or a file, copies the bytes as the program wrote them, UTF-8 or not (--stdout, --tail)', async () => {
  // decoded as text, each byte that is not UTF-8 came out as U+FFFD: `logs x --stdout > out.bin` was another file
  const own = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-logs-bytes-'));
  const wf = await openWorkflow({
    name: 'bytes',
    store: sqliteStore(path.join(own, '.scalems', 'bytes', 'state.sqlite')),
  });
  const rt = launch(wf, processes({ root: path.join(own, '.scalems') }));
  // bytes that are not UTF-8, on two lines, the last without its newline
  await executor(rt).submit(executable(['sh', '-c', "printf 'a\\377\\376\\200 b\\nlast\\351'"], { label: 'bin' }));
  await rt.shutdown();
  await wf.close();
  const bytesOf = async (argv: string[], tty = false): Promise<Buffer> => {
    const chunks: Buffer[] = [];
    const code = await main(argv, {
      cwd: own,
      stdout: { write: (c: string | Uint8Array) => chunks.push(Buffer.from(c)), ...(tty ? { isTTY: true } : {}) },
      stderr: { write: () => undefined },
    });
    expect(code).toBe(0);
    return Buffer.concat(chunks);
  };
  const written = Buffer.from([0x61, 0xff, 0xfe, 0x80, 0x20, 0x62, 0x0a, 0x6c, 0x61, 0x73, 0x74, 0xe9]);
  expect(await bytesOf(['logs', 'bin', '--stdout'])).toEqual(written);
  // the last line, as written (without a newline)
  expect(await bytesOf(['logs', 'bin', '--stdout', '--tail', '1'])).toEqual(
    Buffer.from([...'last'].map((c) => c.charCodeAt(0)).concat(0xe9)),
  );
  expect(await bytesOf(['logs', 'bin', '--stdout', '--tail', '5'])).toEqual(written);
  // both, under headers: the next header starts a line of its own after a last line without its newline, as tail's
  for (const tail of [[], ['--tail', '1']]) {
    const both = (await bytesOf(['logs', 'bin', ...tail])).toString('latin1');
    expect(both).toMatch(/last\xe9\n==> stderr of task "bin"/);
  }
  // on a terminal: text, what is not UTF-8 shown as U+FFFD
  expect((await bytesOf(['logs', 'bin', '--stdout'], true)).toString('utf8')).toBe('a\ufffd\ufffd\ufffd b\nlast\ufffd');
  fs.rmSync(own, { recursive: true, force: true });
});

it('prints stdout then stderr of the last attempt, under headers, found by label', async () => {
  const { code, out, err } = await cli(root, ['logs', 'hello']);
  expect({ code, err }).toEqual({ code: 0, err: '' });
  const attemptDir = path.join(root, '.scalems', 'run', 'tasks', ids.hello, 'attempt-1');
  expect(out).toContain(
    `==> stdout of task "hello" (${ids.hello}), attempt 1 (${path.join(attemptDir, 'stdout')}) <==\nline 1\n`,
  );
  expect(out).toContain('line 50\n==> stderr of task "hello"');
  expect(out).toContain('warning: low\n');
});

it('--stdout / --stderr print one stream as written; --tail N its last lines', async () => {
  const dir = path.join(root, '.scalems', 'run');
  const stdout = await cli(root, ['logs', dir, ids.hello, '--stdout', '--tail', '2']);
  expect(stdout).toEqual({ code: 0, out: 'line 49\nline 50\n', err: '' });
  // before: --tail 0 printed the whole stream
  expect(await cli(root, ['logs', dir, ids.hello, '--stdout', '--tail', '0'])).toEqual({ code: 0, out: '', err: '' });
  const stderr = await cli(root, ['logs', 'hello', '--stderr']);
  expect(stderr.out).toBe('warning: low\n\u001b[2Jred\n'); // not a terminal: the bytes as the program wrote them
});

it('escapes control characters on a terminal (unless --raw)', async () => {
  expect((await cli(root, ['logs', 'hello', '--stderr'], true)).out).toBe('warning: low\n\\u{1b}[2Jred\n');
  expect((await cli(root, ['logs', 'hello', '--stderr', '--raw'], true)).out).toBe('warning: low\n\u001b[2Jred\n');
});

it('the last attempt by default; --attempt N an earlier one; a start of the id names the task', async () => {
  expect((await cli(root, ['logs', 'flaky', '--stdout'])).out).toBe('second\n');
  const first = await cli(root, ['logs', ids.flaky.slice(0, -8), '--attempt', '1']);
  expect(first.err).toBe('');
  expect(first.out).toMatch(/attempt 1 .*<==\nfirst\n==> stderr .*<==\nbad\n$/);
  const ambiguous = await cli(root, ['logs', 'executable_s']);
  expect(ambiguous.err).toContain('"executable_s" starts the ids of 2 tasks of workflow run (hello, flaky)');
  const missing = await cli(root, ['logs', 'flaky', '--attempt', '5']);
  expect(missing).toMatchObject({ code: 1, out: '' });
  expect(missing.err).toContain('has no attempt 5; its attempts here: 1, 2');
});

it('a function task has no output files: it says so, exit code 1', async () => {
  const { code, out, err } = await cli(root, ['logs', 'plain']);
  expect({ code, out }).toEqual({ code: 1, out: '' });
  expect(err).toContain('runs the function');
  expect(err).toContain('no output files');
});

it('an unknown task: exit code 1, naming the labels there and the near one', async () => {
  const { code, out, err } = await cli(root, ['logs', 'helo']);
  expect({ code, out }).toEqual({ code: 1, out: '' });
  expect(err).toContain('no task "helo" in workflow run: it has 3 tasks; labels: ');
  expect(err).toContain('Did you mean "hello"?');
  expect((await cli(root, ['logs'])).code).toBe(2);
  expect((await cli(root, ['logs', 'hello', '--tail', '-1'])).code).toBe(2);
  // before: '' and ' ' were --tail 0
  expect((await cli(root, ['logs', 'hello', '--tail', ''])).code).toBe(2);
  expect((await cli(root, ['logs', 'hello', '--tail', ' '])).err).toContain('--tail expects a whole number from 0');
});

it('is listed by scalems --help', async () => {
  expect((await cli(root, ['--help'])).out).toMatch(/logs\s+a task's stdout and stderr/);
});
