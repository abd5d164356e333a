import type { ServerResponse } from 'node:http';
import type { AuditRecord } from './audit.ts';
import type { Identity } from './auth/identity.ts';

/** What a request accumulates on its way through the app. */
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

const CONTEXT = Symbol('temporal-keyring.requestContext');
type WithContext = ServerResponse & { [CONTEXT]?: RequestContext };

/**
 * The request's context, kept on the response under a symbol of this module: the lean codec path
 * (codec-route.ts) and Express routes share it, and Express's `res.locals` exists only on the latter.
 */
export function contextOf(res: ServerResponse): RequestContext {
  const holder = res as WithContext;
  let ctx = holder[CONTEXT];
  if (!ctx) {
    ctx = { route: 'not_found' };
    holder[CONTEXT] = ctx;
  }
  return ctx;
}

export function isLoopback(address: string | undefined): boolean {
  if (!address) return false;
  return address === '::1' || address.startsWith('127.') || address.startsWith('::ffff:127.');
}
