import type { ServerResponse } from 'node:http';
import type pino from 'pino';
import { errorSummary } from '../src/keyring/keyring.ts';
import { toHttpError } from './error-mapping.ts';
import type { Metrics } from './metrics.ts';
import { contextOf } from './request-context.ts';

/** Writes an error as the request's answer; see {@link errorAnswer}. */
export type ErrorAnswer = (error: unknown, res: ServerResponse) => void;

/**
 * The one error path of the codec server: the lean codec path (codec-route.ts) and Express's error
 * middleware (app.ts) both end here. The status, headers and `{ code, message, hint? }` body come
 * from `toHttpError`; the error is counted by code; a server fault (5xx, but not 501) is logged
 * with the error's summary, which never holds payload content, keys or tokens (src/errors.ts).
 * Once headers are out, only the log and the count remain.
 */
export function errorAnswer(deps: { metrics: Metrics; logger: pino.Logger }): ErrorAnswer {
  const { metrics, logger } = deps;
  const counters = new Map<string, { inc(): void }>();
  return (error, res) => {
    const answer = toHttpError(error);
    const code = answer.body.code;
    let counter = counters.get(code);
    if (!counter) {
      counter = metrics.errors.labels({ code });
      counters.set(code, counter);
    }
    counter.inc();
    if (answer.status >= 500 && answer.status !== 501) {
      logger.error({ reqId: contextOf(res).requestId, err: errorSummary(error) }, 'request failed');
    }
    if (res.headersSent) return;
    const body = JSON.stringify(answer.body);
    res.statusCode = answer.status;
    for (const [name, value] of Object.entries(answer.headers)) res.setHeader(name, value);
    res.setHeader('Content-Type', 'application/json; charset=utf-8');
    res.setHeader('Content-Length', Buffer.byteLength(body));
    res.end(body);
  };
}
