import { createRemoteJWKSet, type JWTVerifyGetKey, errors as joseErrors, jwtVerify } from 'jose';
import type { JwtConfig, Operation } from '../../src/config/server-config.ts';
import type { Clock } from '../../src/runtime/clock.ts';
import { HttpError } from '../http-error.ts';
import type { Identity } from './identity.ts';
import { parsePermissions, roleAllows } from './permissions.ts';
import { unauthenticated } from './unauthenticated.ts';

/**
 * Verifies access tokens (JWTs) from the identity provider the Web UI logs in with, as passed by
 * the UI's "pass access token" option. Keys come from the provider's JWKS (`jose`'s remote key set:
 * cached, refreshed on unknown `kid`); issuer, audience, algorithm allow-list and expiry are
 * checked against the injected clock. The `Authorization-Extras` header (the ID token) is not used.
 */
export class JwtVerifier {
  readonly #config: JwtConfig;
  readonly #clock: Clock;
  readonly #keys: JWTVerifyGetKey;

  constructor(config: JwtConfig, clock: Clock, keys?: JWTVerifyGetKey) {
    this.#config = config;
    this.#clock = clock;
    this.#keys =
      keys ??
      createRemoteJWKSet(new URL(config.jwksUrl), { timeoutDuration: 5_000, cooldownDuration: 30_000 });
  }

  /** The identity in a token; throws 401 when the token is not valid here. */
  async verify(token: string): Promise<Identity> {
    let payload: Record<string, unknown>;
    try {
      ({ payload } = await jwtVerify(token, this.#keys, {
        issuer: this.#config.issuer,
        audience: this.#config.audience,
        algorithms: this.#config.algorithms,
        clockTolerance: this.#config.clockToleranceSeconds,
        currentDate: new Date(this.#clock.now()),
        requiredClaims: ['exp'],
      }));
    } catch (error) {
      // The identity provider's keys could not be fetched: not the caller's fault, and retrying
      // may help. (jose wraps no network error: anything that is not a JOSEError is one.)
      if (
        error instanceof joseErrors.JWKSTimeout ||
        error instanceof joseErrors.JWKSInvalid ||
        !(error instanceof joseErrors.JOSEError)
      ) {
        throw new HttpError(
          503,
          'ERR_AUTH_UNAVAILABLE',
          "the identity provider's signing keys (JWKS) could not be fetched",
        );
      }
      // Only a coarse reason: enough to debug a setup, nothing about the token's content.
      const reason =
        error instanceof joseErrors.JWTExpired
          ? 'token expired'
          : error instanceof joseErrors.JWTClaimValidationFailed
            ? `token claim "${error.claim}" is not accepted`
            : error instanceof joseErrors.JOSEAlgNotAllowed
              ? 'token algorithm not allowed'
              : 'token is not valid';
      throw unauthenticated(`invalid bearer token: ${reason}`);
    }
    const roles = parsePermissions(payload[this.#config.namespaceClaim]);
    const subject = typeof payload.sub === 'string' ? payload.sub : 'unknown';
    return {
      kind: 'jwt',
      subject,
      can: (namespace: string, operation: Operation) => roleAllows(roles.get(namespace), operation),
    };
  }
}
