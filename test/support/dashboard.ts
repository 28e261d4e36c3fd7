/**
 * Test support for `scalems serve` (test/dashboard*.test.ts): running the CLI in-process until told to stop, plain
 * HTTP requests, and an SSE reader that keeps every message a connection received.
 */
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import { main } from '../../src/cli/main';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

/** Runs `scalems <argv>` in-process in `cwd` to its end. */
export async function cli(cwd: string, argv: string[], signal?: AbortSignal): Promise<CliRun> {
  const run: CliRun = { code: -1, out: '', err: '' };
  run.code = await main(argv, {
    cwd,
    stdout: { write: (s: string) => (run.out += s) },
    stderr: { write: (s: string) => (run.err += s) },
    ...(signal === undefined ? {} : { signal }),
  });
  return run;
}

/** `scalems status --json` of a workflow directory: its counts and total. */
export async function statusJson(dir: string): Promise<{ total: number; counts: Record<string, number> }> {
  const run = await cli(dir, ['status', dir, '--json']);
  if (run.code !== 0) throw new Error(`scalems status failed: ${run.err}`);
  return JSON.parse(run.out) as { total: number; counts: Record<string, number> };
}

/** Starts `scalems serve <args>` in-process; resolves with its URL once printed, and a stop that awaits its end. */
export async function serveCli(
  cwd: string,
  args: string[],
): Promise<{ url: string; out: () => string; stop: () => Promise<CliRun> }> {
  const abort = new AbortController();
  const run: CliRun = { code: -1, out: '', err: '' };
  const done = main(['serve', ...args], {
    cwd,
    stdout: { write: (s: string) => (run.out += s) },
    stderr: { write: (s: string) => (run.err += s) },
    signal: abort.signal,
  }).then((code) => {
    run.code = code;
    return run;
  });
  for (let waited = 0; !/http:\/\/\S+/.test(run.out); waited += 20) {
    if (run.code !== -1 || waited > 10_000)
      throw new Error(`scalems serve did not start (code ${run.code}): ${run.out} ${run.err}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  return {
    url: /http:\/\/\S+/.exec(run.out)![0],
    out: () => run.out,
    stop: async () => {
      abort.abort();
      return done;
    },
  };
}

export interface Response {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly body: string;
}

/** A GET of `url` with `headers`. */
export function get(url: string, headers: Record<string, string> = {}): Promise<Response> {
  return new Promise((resolve, reject) => {
    http
      .get(url, { headers }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      })
      .on('error', reject);
  });
}

export interface SseMessage {
  readonly event: string;
  readonly data: string;
}

/** An open SSE connection: every message received so far, in order. */
export interface EventReader {
  readonly status: number;
  readonly headers: http.IncomingHttpHeaders;
  readonly messages: SseMessage[];
  /** Resolves with the first message (from the start) that `test` accepts; rejects after `timeoutMs`. */
  waitFor(test: (m: SseMessage) => boolean, timeoutMs?: number): Promise<SseMessage>;
  close(): void;
}

export function openEvents(url: string): Promise<EventReader> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, (res) => {
      const messages: SseMessage[] = [];
      let buffer = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        buffer += chunk;
        for (let end = buffer.indexOf('\n\n'); end >= 0; end = buffer.indexOf('\n\n')) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let event = 'message';
          const data: string[] = [];
          for (const line of block.split('\n')) {
            if (line.startsWith('event: ')) event = line.slice(7);
            else if (line.startsWith('data: ')) data.push(line.slice(6));
          }
          if (data.length > 0) messages.push({ event, data: data.join('\n') });
        }
      });
      resolve({
        status: res.statusCode ?? 0,
        headers: res.headers,
        messages,
        async waitFor(test, timeoutMs = 10_000) {
          for (let waited = 0; ; waited += 20) {
            const found = messages.find(test);
            if (found !== undefined) return found;
            if (waited > timeoutMs)
              throw new Error(
                `no such message within ${timeoutMs} ms; got: ${messages.map((m) => m.event).join(', ')}`,
              );
            await new Promise((r) => setTimeout(r, 20));
          }
        },
        close: () => req.destroy(),
      });
    });
    req.on('error', reject);
  });
}

/**
 * Builds the dashboard's page with the package's own build script into a fresh directory (so a test never serves a
 * stale `dist/`), and into `dist/dashboard` when that is missing (where `scalems serve` run from the sources looks).
 */
export function buildPage(): string {
  const root = path.resolve(__dirname, '..', '..');
  const script = path.join(root, 'scripts', 'build-dashboard.mjs');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'scalems-page-'));
  execFileSync(process.execPath, [script, dir], { stdio: 'inherit' });
  if (!fs.existsSync(path.join(root, 'dist', 'dashboard', 'app.js')))
    execFileSync(process.execPath, [script], { stdio: 'inherit' });
  return dir;
}
