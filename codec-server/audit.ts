import type { Logger } from '../src/runtime/logger.ts';
import type { Identity } from './auth/identity.ts';

/**
 * One audit record per encode/decode request, on the logger child `{ channel: "audit" }`: who,
 * which namespace, how many payloads, which key versions, and the outcome. Never payload content,
 * never credentials. The request's access line carries it (request-log.ts), so that a codec
 * request writes one line.
 */
export interface AuditRecord {
  requestId: string;
  operation: 'encode' | 'decode';
  identity: Pick<Identity, 'kind' | 'subject'> | undefined;
  namespace: string | undefined;
  payloads: number;
  /** Versions named by the encrypted payloads (decode: the input; encode: the output), ascending. */
  keyVersions: number[];
  outcome: 'ok' | 'error';
  status: number;
  /** The error's stable code: the only field to count, alert or act on. */
  code?: string;
  /**
   * Unauthenticated: what a payload that failed to decrypt claims about itself (for example the
   * namespace its header names). Anyone can forge it; it helps a person, it proves nothing.
   */
  hint?: string;
}

export function auditLogger(logger: Logger): Logger {
  const child = (logger as Logger & { child?: (bindings: object) => Logger }).child;
  return typeof child === 'function' ? child.call(logger, { channel: 'audit' }) : logger;
}
