/**
 * Server-Sent Events to the pages of `scalems serve`: each connection gets one `snapshot` (every task), then the
 * `delta`s broadcast after it (the tasks that changed). No library: SSE is a response that stays open, lines of
 * `event:` and `data:` separated by blank lines, and a comment now and then so proxies keep it open.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';

/** A page that reads more slowly than the workflow changes is dropped past this backlog (it reconnects: a snapshot). */
const MAX_BACKLOG = 64 * 1024 * 1024;
const KEEPALIVE_MS = 15_000;

/** One SSE message: `data` is JSON text on one line (JSON.stringify escapes line breaks inside strings). */
export const sseMessage = (event: string, data: string): string => `event: ${event}\ndata: ${data}\n\n`;

export class EventHub {
  private readonly clients = new Set<ServerResponse>();
  private readonly keepalive = setInterval(() => this.send(': keepalive\n\n'), KEEPALIVE_MS).unref();

  get size(): number {
    return this.clients.size;
  }

  /**
   * Opens the stream on `res`, whose first message is `first` (built now, so no delta can fall between), with the
   * server's own `headers` besides.
   */
  open(req: IncomingMessage, res: ServerResponse, first: string, headers: Readonly<Record<string, string>> = {}): void {
    res.writeHead(200, {
      ...headers,
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-store',
      connection: 'keep-alive',
    });
    res.write(`retry: 2000\n\n${first}`);
    this.clients.add(res);
    const drop = (): void => void this.clients.delete(res);
    req.on('close', drop);
    res.on('close', drop);
  }

  /** Sends one message to every page. */
  broadcast(event: string, data: string): void {
    this.send(sseMessage(event, data));
  }

  close(): void {
    clearInterval(this.keepalive);
    for (const res of this.clients) res.end();
    this.clients.clear();
  }

  private send(text: string): void {
    for (const res of this.clients) {
      if (res.writableLength > MAX_BACKLOG) {
        this.clients.delete(res);
        res.destroy();
        continue;
      }
      res.write(text);
    }
  }
}
