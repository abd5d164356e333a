import { randomUUID } from 'node:crypto';
import type { NextFunction, Request, Response } from 'express';
import type pino from 'pino';
import { contextOf } from './request-context.ts';

/** An incoming `X-Request-Id` is kept only if it is this tame: it goes into logs and headers. */
const SAFE_REQUEST_ID = /^[A-Za-z0-9._-]{1,64}$/;

/**
 * Request ids and the access log: every request gets an id (a sane incoming `X-Request-Id`, else a
 * UUID), echoed in the `X-Request-Id` answer header and kept in the request context, and one log
 * line when the answer is finished (or the client went away), in pino-http's shape:
 * `{ req: { id, method, path, remoteAddress }, res: { statusCode }, responseTime }`. Only those
 * fields: headers (Authorization!) and query strings are never logged.
 *
 * Levels: error for 5xx and aborted answers, warn for 4xx, info otherwise; 501 (a feature this
 * server does not have, such as `/download`) is info, so that callers cannot flood the error log.
 *
 * Pipeline position: CORS → this → metrics → routes.
 *
 * Why not pino-http: it builds a child logger per request, serializing the request into the child's
 * bindings before anything is known about the answer. Under load on `/decode` that was the largest
 * single cost of the codec server after the crypto (bench/suites/server.ts, docs/performance.md);
 * this writes the same line from values at hand, with no per-request logger.
 */
export function requestLog(logger: pino.Logger) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const started = process.hrtime.bigint();
    const incoming = req.headers['x-request-id'];
    const id = typeof incoming === 'string' && SAFE_REQUEST_ID.test(incoming) ? incoming : randomUUID();
    res.setHeader('X-Request-Id', id);
    contextOf(res).requestId = id;
    const done = () => {
      res.removeListener('close', done);
      res.removeListener('finish', done);
      const status = res.statusCode;
      const level =
        !res.writableFinished || ((status >= 500 || status < 100) && status !== 501)
          ? 'error'
          : status >= 400 && status !== 501
            ? 'warn'
            : 'info';
      if (!logger.isLevelEnabled(level)) return;
      const entry = {
        req: {
          id,
          method: req.method,
          path: pathOf(req.originalUrl),
          remoteAddress: req.socket.remoteAddress,
        },
        res: { statusCode: status },
        responseTime: Number(process.hrtime.bigint() - started) / 1e6,
      };
      logger[level](entry, res.writableFinished ? 'request completed' : 'request aborted');
    };
    res.once('finish', done);
    res.once('close', done);
    next();
  };
}

function pathOf(url: string): string {
  const q = url.indexOf('?');
  return q === -1 ? url : url.slice(0, q);
}
