import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type pino from 'pino';
import type { AuditRecord } from './audit.ts';
import type { Metrics } from './metrics.ts';
import { contextOf, type RequestContext } from './request-context.ts';

/** An incoming `X-Request-Id` is kept only if it is this tame: it goes into logs and headers. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

type Level = 'info' | 'warn' | 'error';

/**
 * Request ids, the access log, the audit record and the HTTP metrics of every request, written
 * once when the answer is finished (or the client went away):
 * - every request gets an id (a sane incoming `X-Request-Id`, else a UUID), echoed in the
 *   `X-Request-Id` answer header and kept in the request context;
 * - one log line in pino-http's shape, `{ req: { id, method, path, remoteAddress }, res: {
 *   statusCode }, responseTime }`. For `/encode` and `/decode` that line is the audit record too:
 *   it goes to the `channel: "audit"` child and carries `audit: {...}` (see audit.ts), so a codec
 *   request costs one line, not two. Only those fields: headers (Authorization!) and query strings
 *   are never logged;
 * - the request counter and the latency histogram, through children bound once per label set.
 *
 * Levels: error for 5xx and aborted answers, warn for 4xx, info otherwise; 501 (a feature this
 * server does not have, such as `/download`) is info, so that callers cannot flood the error log.
 *
 * Pipeline position: CORS → this → routes; `begin` is called once per request, by the lean codec
 * path (codec-route.ts) or by the Express middleware wrapping it (app.ts).
 *
 * Why not pino-http: it builds a child logger per request, serializing the request into the child's
 * bindings before anything is known about the answer. Under load on `/decode` that was the largest
 * single cost of the codec server after the crypto (bench/suites/server.ts, docs/performance.md);
 * this writes the same line from values at hand, with no per-request logger or closure: one
 * handler per app serves every request's `close` event (which a response emits once, after
 * `finish` or when the client went away first).
 */
export interface RequestLog {
  /** Starts the request's id, timing and its one line, written when the response closes. */
  begin(req: IncomingMessage, res: ServerResponse): void;
}

export function requestLog(logger: pino.Logger, deps: { audit: pino.Logger; metrics: Metrics }): RequestLog {
  const { audit, metrics } = deps;
  const counters = new Map<string, { inc(): void }>();
  const timers = new Map<string, { observe(value: number): void }>();

  function done(this: ServerResponse): void {
    const ctx = contextOf(this);
    if (ctx.started === undefined) return;
    const elapsedNs = Number(process.hrtime.bigint() - ctx.started);
    ctx.started = undefined;
    const status = this.statusCode;
    countRequest(ctx.route, this.req.method ?? '', status, elapsedNs / 1e9);
    const finished = this.writableFinished;
    const level: Level =
      !finished || ((status >= 500 || status < 100) && status !== 501)
        ? 'error'
        : status >= 400 && status !== 501
          ? 'warn'
          : 'info';
    const record = ctx.audit;
    const target = record ? audit : logger;
    if (!target.isLevelEnabled(level)) return;
    const req = this.req;
    const entry: Record<string, unknown> = {
      req: {
        id: ctx.requestId,
        method: req.method,
        path: pathOf((req as { originalUrl?: string }).originalUrl ?? req.url ?? ''),
        remoteAddress: req.socket.remoteAddress,
      },
      res: { statusCode: status },
      responseTime: elapsedNs / 1e6,
    };
    if (record) {
      if (!finished) {
        record.outcome = 'error';
        record.code ??= 'ERR_ABORTED';
      }
      entry.audit = record;
    }
    target[level](
      entry,
      record ? `${record.operation} ${record.outcome}` : finished ? 'request completed' : 'request aborted',
    );
  }

  function countRequest(route: string, method: string, status: number, seconds: number): void {
    const key = `${route} ${method} ${status}`;
    let counter = counters.get(key);
    if (!counter) {
      counter = metrics.requests.labels({ route, method, status: String(status) });
      counters.set(key, counter);
    }
    counter.inc();
    let timer = timers.get(route);
    if (!timer) {
      timer = metrics.duration.labels({ route });
      timers.set(route, timer);
    }
    timer.observe(seconds);
  }

  return {
    begin(req: IncomingMessage, res: ServerResponse): void {
      const ctx: RequestContext = contextOf(res);
      if (ctx.started !== undefined) return; // begun already (an app mounted inside another)
      ctx.started = process.hrtime.bigint();
      const incoming = req.headers['x-request-id'];
      const id = typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
      res.setHeader('X-Request-Id', id);
      ctx.requestId = id;
      res.once('close', done);
    },
  };
}

/** Puts the audit record of a codec request where the request's one log line will carry it. */
export function setAudit(res: ServerResponse, record: AuditRecord): void {
  contextOf(res).audit = record;
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
