import type { Operation } from '../../src/config/server-config.ts';

/**
 * Who made a request and what they may do. Produced by an {@link Authenticator} at the start of a
 * request; every route asks it before touching a key.
 */
export interface Identity {
  kind: 'jwt' | 'token' | 'anonymous';
  /** For audit records: the JWT `sub`, the token's configured name, or `anonymous` (dev mode). */
  subject: string;
  /** Whether this identity may run `operation` on `namespace`. */
  can(namespace: string, operation: Operation): boolean;
}

/**
 * Turns request credentials into an {@link Identity}. Throws an `HttpError` 401
 * (`ERR_UNAUTHENTICATED`, with `WWW-Authenticate`) when credentials are missing or invalid.
 */
export interface Authenticator {
  authenticate(request: { authorization: string | undefined }): Promise<Identity>;
}
