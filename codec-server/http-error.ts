/**
 * Errors that exist only at the HTTP boundary of the codec server (bad requests, authentication),
 * as opposed to the library's {@link KeyringError}s. Both carry a stable `code`; `error-mapping.ts`
 * turns either into a status and a `{ code, message }` body.
 */
export type HttpErrorCode =
  | 'ERR_MALFORMED_REQUEST'
  | 'ERR_UNSUPPORTED_MEDIA_TYPE'
  | 'ERR_PAYLOAD_TOO_LARGE'
  | 'ERR_NAMESPACE_REQUIRED'
  | 'ERR_NOT_FOUND'
  | 'ERR_NOT_SUPPORTED'
  | 'ERR_UNAUTHENTICATED'
  | 'ERR_FORBIDDEN'
  | 'ERR_AUTH_UNAVAILABLE'
  | 'ERR_INTERNAL'
  | 'ERR_NOT_SEALABLE';

export class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: HttpErrorCode,
    message: string,
    /** Extra response headers (e.g. `WWW-Authenticate`). */
    readonly headers: Record<string, string> = {},
  ) {
    super(message);
    this.name = 'HttpError';
  }
}

export const malformed = (message: string) => new HttpError(400, 'ERR_MALFORMED_REQUEST', message);
