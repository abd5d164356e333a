import type { NextFunction, Request, Response } from 'express';
import { Rewrapper } from '../src/codec/rewrap.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import type { Logger } from '../src/runtime/logger.ts';
import type { Authenticator } from './auth/identity.ts';
import { toHttpError } from './error-mapping.ts';
import { HttpError } from './http-error.ts';
import { parsePayloadsBody, payloadsToBody } from './payload-json.ts';
import { contextOf } from './request-context.ts';

/**
 * `POST [prefix][/{namespace}]/rewrap {"payloads": [...]}`: re-encrypts a batch of payloads under
 * the namespace's active version (src/codec/rewrap.ts), for archives kept outside Temporal. Same
 * checks and order as `/encode` and `/decode` (authentication, namespace, permission, keys, content
 * type, body), with a permission of its own, `rewrap` (JWT: the namespace's `admin` role).
 * Answers `{"payloads": [...], "rewrapped": n, "activeVersion": v}`; audited like the codec routes.
 */
export function rewrapRoute(deps: {
  keyring: Keyring;
  auth: Authenticator;
  audit: Logger;
  namespaceOf(req: Request): string;
  requireKeys(namespace: string): Promise<void>;
  readJson(req: Request, res: Response): Promise<void>;
}) {
  const rewrappers = new Map<string, Rewrapper>();
  return async (req: Request, res: Response, _next: NextFunction) => {
    const ctx = contextOf(res);
    ctx.route = 'rewrap';
    let payloads = 0;
    let rewrapped = 0;
    try {
      ctx.identity = await deps.auth.authenticate({ authorization: req.headers.authorization });
      const namespace = deps.namespaceOf(req);
      ctx.namespace = namespace;
      if (!ctx.identity.can(namespace, 'rewrap')) {
        throw new HttpError(403, 'ERR_FORBIDDEN', `not allowed to rewrap in namespace "${namespace}"`);
      }
      await deps.requireKeys(namespace);
      if (!req.is('json')) {
        throw new HttpError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
      }
      await deps.readJson(req, res);
      const input = parsePayloadsBody(req.body);
      payloads = input.length;
      let rewrapper = rewrappers.get(namespace);
      if (!rewrapper) {
        rewrapper = new Rewrapper({ keyring: deps.keyring, namespace });
        rewrappers.set(namespace, rewrapper);
      }
      const result = await rewrapper.rewrap(input);
      rewrapped = result.rewrapped;
      res.status(200).json({
        ...payloadsToBody(result.payloads),
        rewrapped: result.rewrapped,
        activeVersion: result.activeVersion,
      });
      audit('ok', 200);
    } catch (error) {
      const answer = toHttpError(error);
      audit('error', answer.status, answer.body.code);
      throw error;
    }

    function audit(outcome: 'ok' | 'error', status: number, code?: string) {
      deps.audit.info(
        {
          audit: {
            requestId: ctx.requestId ?? '',
            operation: 'rewrap',
            identity: ctx.identity && { kind: ctx.identity.kind, subject: ctx.identity.subject },
            namespace: ctx.namespace,
            payloads,
            rewrapped,
            outcome,
            status,
            code,
          },
        },
        `rewrap ${outcome}`,
      );
    }
  };
}
