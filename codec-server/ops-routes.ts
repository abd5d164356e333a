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
import type { Keyring } from '../src/keyring/keyring.ts';
import { sha256 } from './auth/static-tokens.ts';
import { credentialOf, unauthenticated } from './auth/unauthenticated.ts';
import type { Metrics } from './metrics.ts';
import { contextOf } from './request-context.ts';

/**
 * Operations endpoints, outside the codec path prefix: `/healthz` (the process serves requests),
 * `/readyz` (the keystore answers and still holds this KEK's check value), `/metrics` (Prometheus,
 * optionally behind a token).
 */
export function opsRouter(deps: { keyring: Keyring; config: ServerConfig; metrics: Metrics }): Router {
  const { keyring, config, metrics } = deps;
  const router = Router();

  router.get('/healthz', (_req: Request, res: Response) => {
    contextOf(res).route = 'healthz';
    res.json({ status: 'ok' });
  });

  router.get('/readyz', async (_req: Request, res: Response) => {
    contextOf(res).route = 'readyz';
    const keystore = keyring.keystore;
    try {
      await keystore.ping();
      const info = await keystore.getKekInfo();
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
      res
        .status(503)
        .json({ status: 'not ready', keystore: keystore.kind, code: reason.code, message: reason.message });
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
      res.type(metrics.registry.contentType).send(await metrics.registry.metrics());
    });
  }
  return router;
}
