/**
 * The HTTP side of `scalems serve` (Node's `http`, no framework: four routes). It polls the store (`StoreSource`) and
 * pushes each change to every open page as an SSE `delta` holding only the changed tasks; a page that connects
 * gets a `snapshot` first.
 */
import * as http from 'node:http';
import type { AddressInfo } from 'node:net';
import { hostname } from 'node:os';
import { messageOf } from '../command';
import { refusal, resolveAccess, type AccessOptions } from './access';
import { loadAssets } from './assets';
import { taskDetail } from './detail';
import type { DeltaMessage, SnapshotMessage } from './protocol';
import { ROUTES } from './protocol';
import { StoreSource } from './source';
import { EventHub, sseMessage } from './sse';

export interface DashboardOptions extends AccessOptions {
  /** the store file (`.scalems/<name>/state.sqlite`) */
  readonly file: string;
  /** the workflow's name when its store does not record one */
  readonly name: string;
  /** how often the store is polled, in ms (at least; slower when a poll takes long). @default 500 */
  readonly pollMs?: number;
  /** where the built page is. @default the package's `dist/dashboard` */
  readonly assetsDir?: string;
}

export interface Dashboard {
  /** `http://<host>:<port>/?token=<token>` */
  readonly url: string;
  readonly token: string;
  readonly madeToken: boolean;
  readonly source: StoreSource;
  /** Polls the store now and pushes what changed (the timer does this on its own). */
  pollNow(): void;
  close(): Promise<void>;
}

/** Every response's headers: the page runs only its own script; nothing it loads can run task text as code. */
const SECURITY_HEADERS = {
  'content-security-policy':
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; " +
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
  'cache-control': 'no-store',
};

/** @internal Starts the dashboard of the workflow whose store is `options.file`. */
export async function startDashboard(options: DashboardOptions): Promise<Dashboard> {
  const access = resolveAccess(options);
  const assets = loadAssets(options.assetsDir, access.token);
  const source = await StoreSource.open(options.file, options.name);
  const hub = new EventHub();
  const pollMs = options.pollMs ?? 500;
  let problem: string | undefined;

  const snapshot = (): string => {
    const message: SnapshotMessage = {
      workflow: source.workflow,
      store: source.file,
      seq: source.seq,
      now: Date.now(),
      tasks: source.all(),
    };
    return (
      sseMessage('snapshot', JSON.stringify(message)) +
      (problem === undefined ? '' : sseMessage('problem', JSON.stringify(problem)))
    );
  };

  const poll = (): number => {
    const started = performance.now();
    try {
      const changes = source.changes();
      if (problem !== undefined) hub.broadcast('problem', JSON.stringify(null));
      problem = undefined;
      if (changes !== undefined) {
        const message: DeltaMessage = { seq: source.seq, now: Date.now(), ...changes };
        hub.broadcast('delta', JSON.stringify(message));
      }
    } catch (error) {
      // a store being replaced or damaged while watched: say so on the page, keep what was shown, try again
      const text = `cannot read the store: ${messageOf(error)}`;
      if (text !== problem) hub.broadcast('problem', JSON.stringify(text));
      problem = text;
    }
    return performance.now() - started;
  };
  let timer: NodeJS.Timeout | undefined;
  const schedule = (took: number): void => {
    // a poll of a large store takes tens of ms: poll at most a fifth of the time
    timer = setTimeout(() => schedule(poll()), Math.max(pollMs, 4 * took));
  };

  const server = http.createServer((req, res) => {
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://dashboard');
    } catch {
      // a request target no URL can be made of ('http://[', '//['): it crashed the server, before any check
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('bad request\n');
      return;
    }
    const refused = refusal(access, port, req, url);
    if (refused !== undefined) {
      res.writeHead(refused, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end(refused === 401 ? 'a token is needed: open the URL scalems serve printed\n' : 'forbidden\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end('only GET and HEAD\n');
      return;
    }
    try {
      route(url, req, res);
    } catch (error) {
      res.writeHead(500, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS });
      res.end(`${messageOf(error)}\n`);
    }
  });

  const route = (url: URL, req: http.IncomingMessage, res: http.ServerResponse): void => {
    const asset = assets.get(url.pathname);
    if (asset !== undefined) {
      res.writeHead(200, { 'content-type': asset.type, ...SECURITY_HEADERS }).end(asset.body);
      return;
    }
    if (url.pathname === ROUTES.events) {
      hub.open(req, res, snapshot(), SECURITY_HEADERS);
      return;
    }
    if (url.pathname.startsWith(ROUTES.task)) {
      const json = { 'content-type': 'application/json; charset=utf-8', ...SECURITY_HEADERS };
      let id: string;
      try {
        id = decodeURIComponent(url.pathname.slice(ROUTES.task.length));
      } catch {
        // a malformed escape (%E0%A4%A): before, a 500 with "URI malformed"
        res.writeHead(400, json).end(JSON.stringify({ error: 'the task id in the path is not well-formed' }));
        return;
      }
      let detail: ReturnType<typeof taskDetail>;
      try {
        detail = taskDetail(source, id);
      } catch (error) {
        // the store unreadable (moved away, being replaced): what the page's banner says, with a status that says
        // to try again; before, a 500 with SQLite's own words
        res.writeHead(503, { ...json, 'retry-after': '1' });
        res.end(JSON.stringify({ error: `cannot read the store: ${messageOf(error)}` }));
        return;
      }
      if (detail === undefined) res.writeHead(404, json).end(JSON.stringify({ error: 'no such task' }));
      else res.writeHead(200, json).end(JSON.stringify(detail));
      return;
    }
    if (url.pathname === '/favicon.ico') {
      res.writeHead(204, SECURITY_HEADERS).end();
      return;
    }
    res.writeHead(404, { 'content-type': 'text/plain; charset=utf-8', ...SECURITY_HEADERS }).end('not found\n');
  };

  let port = access.port;
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(access.port, access.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
  } catch (error) {
    source.close();
    hub.close();
    throw error;
  }
  port = (server.address() as AddressInfo).port;
  schedule(poll());
  // listening on every address (0.0.0.0, ::): the machine's name, which others can open, not the wildcard
  const wildcard = access.host === '0.0.0.0' || access.host === '::' || access.host === '[::]';
  const host = wildcard ? hostname() : access.host;
  const shownHost = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  const base = `http://${shownHost}:${port}/`;
  return {
    url: `${base}?token=${access.token}`,
    token: access.token,
    madeToken: access.madeToken,
    source,
    pollNow: () => void poll(),
    async close() {
      clearTimeout(timer);
      hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      source.close();
    },
  };
}
