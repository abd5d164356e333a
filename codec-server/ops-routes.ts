import { timingSafeEqual } from 'node:crypto';
import { type Request, type Response, Router } from 'express';
import type { ServerConfig } from '../src/config/server-config.ts';
import {
  isKeyringError,
  KekMismatchError,
  KekUnavailableError,
  KeystoreUnavailableError,
  SealedError,
} from '../src/errors.ts';
import { errorSummary, type Keyring } from '../src/keyring/keyring.ts';
import type { Logger } from '../src/runtime/logger.ts';
import { sha256 } from './auth/static-tokens.ts';
import { credentialOf, unauthenticated } from './auth/unauthenticated.ts';
import { toHttpError } from './error-mapping.ts';
import { withDeadline } from './keystore-deadline.ts';
import type { Metrics } from './metrics.ts';
import { contextOf } from './request-context.ts';

/**
 * Operations endpoints, outside the codec path prefix: `/healthz` (the process serves requests),
 * `/readyz` (the keystore answers and still holds this KEK's check value), `/metrics` (Prometheus,
 * optionally behind a token).
 */
export function opsRouter(deps: {
  keyring: Keyring;
  config: ServerConfig;
  metrics: Metrics;
  /** Where the reason of a failed readiness check goes in full (callers get a path-free one). */
  logger: Logger;
}): Router {
  const { keyring, config, metrics, logger } = deps;
  const router = Router();

  router.get('/healthz', (_req: Request, res: Response) => {
    contextOf(res).route = 'healthz';
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req: Request, res: Response) => {
    contextOf(res).route = 'readyz';
    const keystore = keyring.keystore;
    try {
      const info = await withDeadline(
        keystore.ping().then(() => keystore.getKekInfo()),
        config.keystoreCheckTimeoutMs,
        'the readiness check',
      );
      if (!info?.checks.some((c) => c.kekId === keyring.kekId)) {
        throw new KekMismatchError('the keystore holds no check value for the KEK this server uses');
      }
      // A sealed KEK, or an HSM whose token went away, cannot unwrap new keys.
      const kek = keyring.keks[0];
      if (kek?.sealed) throw new SealedError();
      const unavailable = await kek?.health?.();
      if (unavailable !== undefined) throw new KekUnavailableError(unavailable);
      res.json({ status: 'ready', keystore: keystore.kind, kekId: keyring.kekId, kek: kek?.kind ?? 'local' });
    } catch (error) {
      const reason = isKeyringError(error)
        ? error
        : new KeystoreUnavailableError('the keystore did not answer', { cause: error });
      metrics.errors.inc({ code: reason.code });
      logger.warn({ reqId: contextOf(res).requestId, err: errorSummary(reason) }, 'not ready');
      // Unauthenticated: the public message only, never the keystore's paths or host.
      const { message } = toHttpError(reason).body;
      res.status(503).json({ status: 'not ready', keystore: keystore.kind, code: reason.code, message });
    }
  });

  if (config.metrics.enabled) {
    const expected = config.metrics.tokenSha256 ? Buffer.from(config.metrics.tokenSha256, 'hex') : undefined;
    router.get('/metrics', async (req: Request, res: Response) => {
      contextOf(res).route = 'metrics';
      if (expected) {
        const presented = credentialOf(req.headers.authorization);
        if (!presented || !timingSafeEqual(sha256(presented), expected)) {
          throw unauthenticated('the metrics endpoint needs Authorization: Bearer <metrics token>');
        }
      }
      res.type(metrics.registry.contentType).send(await metrics.text());
    });
  }
  return router;
}
