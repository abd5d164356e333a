import type { JWTVerifyGetKey } from 'jose';
import type { ServerConfig } from '../../src/config/server-config.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import type { Authenticator, Identity } from './identity.ts';
import { JwtVerifier } from './jwt.ts';
import { StaticTokens } from './static-tokens.ts';
import { credentialOf, unauthenticated } from './unauthenticated.ts';

export type { Authenticator, Identity } from './identity.ts';

/** In dev mode without configured auth: everyone may encode and decode (the admin API checks loopback). */
export const anonymousIdentity: Identity = {
  kind: 'anonymous',
  subject: 'anonymous',
  can: (_namespace, operation) => operation !== 'admin',
};

/**
 * The authenticator the server uses, from its config: static tokens are tried first (a cheap hash
 * lookup), then the JWT verifier. Credentials only ever come from the `Authorization` header; a
 * token in the query string is never looked at.
 *
 * With no method configured (allowed only in dev mode) every request is anonymous.
 */
export function createAuthenticator(
  config: ServerConfig,
  clock: Clock,
  options: { jwks?: JWTVerifyGetKey } = {},
): Authenticator {
  const tokens = new StaticTokens(config.auth.tokens);
  const jwt = config.auth.jwt ? new JwtVerifier(config.auth.jwt, clock, options.jwks) : undefined;
  if (!jwt && tokens.size === 0) {
    return { authenticate: async () => anonymousIdentity };
  }
  return {
    async authenticate({ authorization }) {
      const credential = credentialOf(authorization);
      if (!credential) throw unauthenticated('missing credentials: send Authorization: Bearer <token>');
      const byToken = tokens.match(credential);
      if (byToken) return byToken;
      if (jwt && credential.split('.').length === 3) return jwt.verify(credential);
      throw unauthenticated('invalid credentials');
    },
  };
}
