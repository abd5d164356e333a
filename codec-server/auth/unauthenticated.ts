import { HttpError } from '../http-error.ts';

/** The one 401 every authenticator throws: says what is expected, never why a credential failed in detail. */
export function unauthenticated(message: string): HttpError {
  return new HttpError(401, 'ERR_UNAUTHENTICATED', message, {
    'WWW-Authenticate': 'Bearer realm="temporal-keyring"',
  });
}

/** The credential in an `Authorization` header: the part after `Bearer `, or the raw value (CLI `--codec-auth`). */
export function credentialOf(authorization: string | undefined): string | undefined {
  const value = authorization?.trim();
  if (!value) return undefined;
  const match = /^bearer\s+(.+)$/i.exec(value);
  return (match ? match[1]! : value).trim() || undefined;
}
