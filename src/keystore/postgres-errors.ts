import { isKeyringError, KeystoreConflictError, KeystoreUnavailableError } from '../errors.ts';

/**
 * How the PostgreSQL keystore turns driver errors into the library's errors, and how it prints
 * its connection string (never with the password).
 */

/** Node network errors that mean "the database cannot be reached". */
const NETWORK_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EPIPE',
  // TLS: the server's certificate cannot be verified (a configuration problem, but the effect is
  // the same: this store cannot be reached safely).
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/**
 * SQLSTATEs that mean the server cannot serve us: connection exceptions (class 08), operator
 * intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now, 57014 statement
 * timeout), too many connections, invalid credentials (class 28), missing database.
 */
function isUnavailableSqlState(code: string): boolean {
  return (
    code.startsWith('08') ||
    code.startsWith('28') ||
    code === '57P01' ||
    code === '57P02' ||
    code === '57P03' ||
    code === '53300' ||
    code === '57014' || // statement timeout (queryTimeoutMs)
    code === '3D000'
  );
}

/** Messages pg uses for connection trouble that carries no code. */
const UNAVAILABLE_MESSAGES = [
  'Connection terminated',
  'timeout exceeded when trying to connect',
  'Query read timeout',
  'Client has encountered a connection error',
  'Client was closed and is not queryable',
  'Cannot use a pool after calling end on the pool',
  'The server does not support SSL connections',
  'self-signed certificate',
  'unable to verify the first certificate',
];

export function isUnavailable(error: unknown): boolean {
  if (!error || typeof error !== 'object') return false;
  const { code, message } = error as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && (NETWORK_CODES.has(code) || isUnavailableSqlState(code))) return true;
  if (error instanceof AggregateError) return error.errors.some(isUnavailable);
  return typeof message === 'string' && UNAVAILABLE_MESSAGES.some((m) => message.includes(m));
}

/**
 * Maps an error thrown by pg to ours: connection trouble becomes {@link KeystoreUnavailableError}
 * (naming the redacted URL), a unique violation a {@link KeystoreConflictError} (another writer
 * won a race our locks did not cover); library errors and anything else pass through.
 */
export function toKeystoreError(error: unknown, redactedUrl: string): unknown {
  if (isKeyringError(error)) return error;
  if (isUnavailable(error)) {
    const reason = error instanceof Error && error.message ? error.message : String(error);
    return new KeystoreUnavailableError(`PostgreSQL keystore at ${redactedUrl} is unavailable: ${reason}`, {
      cause: error,
    });
  }
  if (error && typeof error === 'object' && (error as { code?: unknown }).code === '23505') {
    return new KeystoreConflictError(
      `a concurrent change won: ${(error as { constraint?: string }).constraint ?? 'unique constraint'}`,
    );
  }
  return error;
}

/** The connection string with its password (in the userinfo or in parameters) replaced by `***`. */
export function redactConnectionString(connectionString: string): string {
  try {
    const url = new URL(connectionString);
    if (url.password) url.password = '***';
    for (const key of [...url.searchParams.keys()]) {
      if (/pass|secret|key/i.test(key)) url.searchParams.set(key, '***');
    }
    return url.toString();
  } catch {
    return '<unparseable connection string>';
  }
}
