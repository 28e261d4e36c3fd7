/**
 * Who may read the dashboard. It shows everything a task was given (arguments, `env` values in clear) and wrote, so
 * by default it listens on 127.0.0.1 only and answers only requests addressed to that name (a page of another site
 * that points a DNS name at 127.0.0.1 gets 403: DNS rebinding). Listening on another address is asked for explicitly
 * (`--host`). Either way every request must carry a token (given, or made here), as `?token=` or an
 * `Authorization: Bearer` header, or it gets 401: 127.0.0.1 is reachable by every account of the machine (a shared
 * login node), and the store it shows is readable by its owner only.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { isIP } from 'node:net';
import type { IncomingMessage } from 'node:http';
import { InvalidOptionsError } from '../../errors';

export const DEFAULT_HOST = '127.0.0.1';
const MIN_TOKEN = 16;

/** Whether `host` is a loopback address (or `localhost`): only this machine can reach it. */
export function isLoopback(host: string): boolean {
  const h = host.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || (isIP(h) === 4 && h.startsWith('127.'));
}

export interface AccessOptions {
  /** the address to listen on. @default '127.0.0.1' */
  readonly host?: string;
  /** the port; 0 takes a free one. @default 0 */
  readonly port?: number;
  /** the token every request must carry (made when absent) */
  readonly token?: string;
}

export interface Access {
  readonly host: string;
  readonly port: number;
  readonly token: string;
  /** whether the token was made here (to be printed with the address) */
  readonly madeToken: boolean;
}

/** Checks the options; throws `InvalidOptionsError` naming every problem. */
export function resolveAccess(options: AccessOptions): Access {
  const problems: string[] = [];
  const host = options.host ?? DEFAULT_HOST;
  const port = options.port ?? 0;
  if (host.trim() === '' || /[\s/]/.test(host))
    problems.push(`host: expected an address to listen on (such as 127.0.0.1), got ${JSON.stringify(host)}`);
  if (!Number.isInteger(port) || port < 0 || port > 65535)
    problems.push(`port: expected a whole number from 0 (any free port) to 65535, got ${String(port)}`);
  const token = options.token;
  if (token !== undefined && (token.length < MIN_TOKEN || !/^[A-Za-z0-9._~-]+$/.test(token)))
    problems.push(
      `token: expected at least ${MIN_TOKEN} characters of A-Z, a-z, 0-9, '.', '_', '~', '-' (it goes in a URL), ` +
        `got ${token.length} characters${/^[A-Za-z0-9._~-]*$/.test(token) ? '' : ' with others among them'}`,
    );
  if (problems.length > 0)
    throw new InvalidOptionsError(`scalems serve: invalid options: ${problems.join('; ')}.`, problems);
  // also on loopback: before, any other account of the machine could read the dashboard there without one
  const made = token === undefined;
  return { host, port, token: made ? randomBytes(24).toString('base64url') : token, madeToken: made };
}

/** The token a request carries, if any. */
function tokenOf(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers.authorization;
  if (header !== undefined && /^Bearer /i.test(header)) return header.slice(7).trim();
  return url.searchParams.get('token') ?? undefined;
}

const equal = (a: string, b: string): boolean => {
  const [x, y] = [Buffer.from(a), Buffer.from(b)];
  return x.length === y.length && timingSafeEqual(x, y);
};

/** The status a request is refused with (401 no or wrong token, 403 a name this server is not), or undefined. */
export function refusal(access: Access, port: number, req: IncomingMessage, url: URL): 401 | 403 | undefined {
  if (isLoopback(access.host)) {
    const host = (req.headers.host ?? '').toLowerCase();
    const names = ['127.0.0.1', 'localhost', '[::1]', access.host.toLowerCase()].map((n) => `${n}:${port}`);
    if (!names.includes(host)) return 403;
  }
  const given = tokenOf(req, url);
  return given !== undefined && equal(given, access.token) ? undefined : 401;
}
