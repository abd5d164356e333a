import express, {
  type NextFunction,
  type Request,
  type RequestHandler,
  type Response,
  Router,
} from 'express';
import { z } from 'zod';
import { isKeyringError, SealedError } from '../src/errors.ts';
import { ShamirKek } from '../src/kek/shamir-kek.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import type { Logger } from '../src/runtime/logger.ts';
import type { Authenticator } from './auth/identity.ts';
import { HttpError, malformed } from './http-error.ts';
import { contextOf, isLoopback } from './request-context.ts';

/**
 * Sealing over HTTP, as Vault's `sys/seal-status`, `sys/unseal` and `sys/seal`, under
 * `{prefix}/admin` (and `/admin` when a prefix is set):
 * - `GET  /admin/seal-status` → `{"sealed", "t", "n", "progress", "keystoreId", "kekId", "type"}`;
 * - `POST /admin/unseal` `{"key": "<unseal key>"}` or `{"reset": true}`: no token, the share is
 *   the credential (a sealed server cannot check tokens against anything worth protecting yet);
 *   a malformed, duplicate or foreign share is refused (400, its own code) and not counted;
 * - `POST /admin/seal` (admin permission on every namespace, `*`): zeroes the KEK and every
 *   unwrapped key.
 *
 * Every unseal attempt is audited (outcome, code, progress, client address), never the share.
 * `assertUnsealed` (the codec route) and `gate` (admin and rewrap routes) answer every other
 * request with 503 `ERR_SEALED` while sealed; both run after CORS, so the Web UI can show why.
 */
export function sealRoutes(deps: {
  keyring: Keyring;
  auth: Authenticator;
  pathPrefix: string;
  audit: Logger;
}): { router: Router; gate: RequestHandler; assertUnsealed(): void } {
  const { keyring, auth, audit } = deps;
  const sealable = keyring.keks.find((k): k is ShamirKek => k instanceof ShamirKek);
  const router = Router();
  const json = express.json({ limit: '4kb', strict: true, type: () => true });
  const bases = [...new Set([`${deps.pathPrefix}/admin`, '/admin'])];

  const status = () =>
    sealable
      ? { ...sealable.status(), type: 'shamir' as const }
      : {
          sealed: false,
          t: 0,
          n: 0,
          progress: 0,
          keystoreId: keyring.keystoreId,
          kekId: keyring.kekId,
          type: keyring.keks[0]?.kind ?? 'local',
        };

  const record = (req: Request, res: Response, action: string, details: object) => {
    audit.info(
      {
        audit: {
          requestId: contextOf(res).requestId ?? '',
          action,
          client: req.socket.remoteAddress,
          ...details,
        },
      },
      `admin ${action}`,
    );
  };

  async function readBody(req: Request, res: Response): Promise<unknown> {
    // JSON only, so that a page of another origin cannot send it as a "simple" request.
    if (!/^application\/([\w.-]+\+)?json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
      throw new HttpError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
    }
    await new Promise<void>((resolve, reject) =>
      json(req, res, (err?: unknown) => (err ? reject(err) : resolve())),
    );
    return req.body;
  }

  const unsealBody = z.union([
    z.strictObject({ key: z.string().min(1).max(1024) }),
    z.strictObject({ reset: z.literal(true) }),
  ]);

  for (const base of bases) {
    router.get(`${base}/seal-status`, (_req: Request, res: Response) => {
      contextOf(res).route = 'seal-status';
      res.json(status());
    });

    router.post(`${base}/unseal`, async (req: Request, res: Response) => {
      contextOf(res).route = 'unseal';
      try {
        if (!sealable) {
          throw new HttpError(409, 'ERR_NOT_SEALABLE', "this server's KEK is not sealed with unseal keys");
        }
        const parsed = unsealBody.safeParse(await readBody(req, res));
        if (!parsed.success) throw malformed('body must be {"key": "<unseal key>"} or {"reset": true}');
        const answer = 'reset' in parsed.data ? sealable.reset() : await sealable.submit(parsed.data.key);
        record(req, res, 'reset' in parsed.data ? 'unseal-reset' : 'unseal', {
          outcome: 'ok',
          sealed: answer.sealed,
          progress: answer.progress,
        });
        res.json({ ...answer, type: 'shamir' });
      } catch (error) {
        const code = isKeyringError(error) || error instanceof HttpError ? error.code : 'ERR_INTERNAL';
        record(req, res, 'unseal', { outcome: 'error', code, progress: sealable?.status().progress });
        throw error;
      }
    });

    router.post(`${base}/seal`, async (req: Request, res: Response) => {
      contextOf(res).route = 'seal';
      const identity = await auth.authenticate({ authorization: req.headers.authorization });
      const allowed =
        identity.kind === 'anonymous' ? isLoopback(req.socket.remoteAddress) : identity.can('*', 'admin');
      if (!allowed)
        throw new HttpError(
          403,
          'ERR_FORBIDDEN',
          'sealing needs the admin permission on every namespace (*)',
        );
      contextOf(res).identity = identity;
      if (!sealable) {
        throw new HttpError(409, 'ERR_NOT_SEALABLE', "this server's KEK is not sealed with unseal keys");
      }
      keyring.seal();
      record(req, res, 'seal', {
        identity: { kind: identity.kind, subject: identity.subject },
        outcome: 'ok',
      });
      res.json(status());
    });
  }

  const assertUnsealed = () => {
    if (sealable?.sealed) throw new SealedError();
  };
  const gate: RequestHandler = (_req: Request, _res: Response, next: NextFunction) => {
    assertUnsealed();
    next();
  };
  return { router, gate, assertUnsealed };
}
