import type { Response } from 'express';
import type { AuditRecord } from './audit.ts';
import type { Identity } from './auth/identity.ts';

/** What a request accumulates on its way through the app (kept in `res.locals`). */
export interface RequestContext {
  /** Metrics label of the matched route. */
  route: string;
  /** Set by the request log before any route runs. */
  requestId?: string;
  identity?: Identity;
  namespace?: string;
  /** When the request log started timing the request; cleared once its line is written. */
  started?: bigint;
  /** A codec request's audit record: the request's log line carries it (request-log.ts). */
  audit?: AuditRecord;
}

export function contextOf(res: Response): RequestContext {
  const locals = res.locals as { ctx?: RequestContext };
  locals.ctx ??= { route: 'not_found' };
  return locals.ctx;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
