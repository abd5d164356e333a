import express, { type Request, type Response, Router } from 'express';
import { z } from 'zod';
import type { ServerConfig } from '../src/config/server-config.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import { KEY_STATES } from '../src/model/key-version.ts';
import { validateNamespace } from '../src/model/namespace.ts';
import { DEFAULT_ROTATION_POLICY, type RotationPolicy } from '../src/rotation/rotation-policy.ts';
import { namespaceStatus } from '../src/rotation/usage-status.ts';
import type { Logger } from '../src/runtime/logger.ts';
import type { Authenticator } from './auth/identity.ts';
import { registerExportRoutes } from './export-routes.ts';
import { HttpError, malformed } from './http-error.ts';
import { contextOf, isLoopback } from './request-context.ts';

/**
 * Key administration over HTTP, mounted at `/admin`:
 * - `GET  /admin/namespaces/{ns}/keys`: versions with state and usage, and `rotation`: the rate,
 *   the projected limit and the next step, from the same plan as `keys status` and the rotator;
 * - `POST /admin/namespaces/{ns}/keys/rotate`
 *   `{"mode": "immediate" | "prepublish", "force": false, "expectedActiveVersion": n}` (body
 *   optional);
 * - `POST /admin/namespaces/{ns}/keys/{version}/state` `{"state": "inactive" | ..., "force": false}`.
 *
 * Every rule is the lifecycle owner's (`keyring.manager`): activating a prepublished version
 * before its propagation delay is refused (409) unless `"force": true`; of concurrent changes
 * decided on the same state one is performed and the others answer `performed: false` (200).
 * Every POST needs `Content-Type: application/json`.
 *
 * Needs the `admin` permission on the namespace (JWT `<ns>:admin`, or a token with `admin`). In
 * dev mode without auth, allowed from loopback addresses only.
 */
export function adminRouter(deps: {
  keyring: Keyring;
  auth: Authenticator;
  config: ServerConfig;
  /** The audit logger: every key change is recorded there. */
  audit: Logger;
  /** A namespace's rotation policy, for the `rotation` part of the key listing. Default: the built-in one. */
  rotationPolicy?: (namespace: string) => RotationPolicy;
  /** Bounds the keystore reads of `GET` routes (`server.keystoreCheckTimeoutMs`). Default: none. */
  readDeadline?: <T>(read: Promise<T>) => Promise<T>;
}): Router {
  const bounded = deps.readDeadline ?? (<T>(read: Promise<T>) => read);
  const { keyring, auth, audit } = deps;
  const record = (_req: Request, res: Response, action: string, details: object) => {
    const identity = contextOf(res).identity;
    audit.info(
      {
        audit: {
          requestId: contextOf(res).requestId ?? '',
          action,
          identity: identity && { kind: identity.kind, subject: identity.subject },
          ...details,
        },
      },
      `admin ${action}`,
    );
  };
  const router = Router();
  const json = express.json({ limit: '16kb', strict: true, type: () => true });

  async function authorize(req: Request, res: Response): Promise<string> {
    contextOf(res).route = 'admin';
    const identity = await auth.authenticate({ authorization: req.headers.authorization });
    const namespace = validateNamespace(req.params.namespace);
    const allowed =
      identity.kind === 'anonymous' ? isLoopback(req.socket.remoteAddress) : identity.can(namespace, 'admin');
    if (!allowed)
      throw new HttpError(403, 'ERR_FORBIDDEN', `not allowed to administer keys of namespace "${namespace}"`);
    contextOf(res).identity = identity;
    return namespace;
  }

  async function body<T>(req: Request, res: Response, schema: z.ZodType<T>): Promise<T> {
    // Always JSON, even without a body: a browser must preflight it, so a page of another origin
    // cannot make a "simple" cross-site POST that rotates keys (CSRF).
    if (!/^application\/([\w.-]+\+)?json\s*(;|$)/i.test(req.headers['content-type'] ?? '')) {
      throw new HttpError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
    }
    const hasBody =
      Number(req.headers['content-length'] ?? 0) > 0 || req.headers['transfer-encoding'] !== undefined;
    if (hasBody) {
      await new Promise<void>((resolve, reject) =>
        json(req, res, (err?: unknown) => (err ? reject(err) : resolve())),
      );
    }
    const parsed = schema.safeParse(hasBody ? req.body : {});
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw malformed(`${issue.path.join('.') || 'body'}: ${issue.message}`);
    }
    return parsed.data;
  }

  router.get('/namespaces/:namespace/keys', async (req: Request, res: Response) => {
    const namespace = await authorize(req, res);
    const withUsage = await bounded(
      keyring.versions(namespace).then((versions) =>
        Promise.all(
          versions.map(async (v) => {
            const usage = await keyring.keystore.getUsage(namespace, v.version);
            return { ...v, usage: { reserved: usage.reserved, used: usage.used } };
          }),
        ),
      ),
    );
    // The same plan as `keys status` and the rotator (planNamespace), times in ISO 8601.
    const policy = (deps.rotationPolicy ?? (() => DEFAULT_ROTATION_POLICY))(namespace);
    const status = await bounded(namespaceStatus(keyring.keystore, namespace, policy, keyring.clock.now()));
    const iso = (ms: number | undefined) => (ms === undefined ? null : new Date(ms).toISOString());
    const active = status.versions.find((v) => v.state === 'active');
    const rotation = {
      rate: status.rate ?? null,
      limitReached: active?.limitReached ?? false,
      limitAt: iso(active?.limitAt),
      nextRotation: status.nextRotation ? { ...status.nextRotation, at: iso(status.nextRotation.at) } : null,
    };
    res.json({ namespace, versions: withUsage, rotation });
  });

  const rotateBody = z.strictObject({
    mode: z.enum(['immediate', 'prepublish']).default('immediate'),
    force: z.boolean().default(false),
    expectedActiveVersion: z.number().int().positive().max(Number.MAX_SAFE_INTEGER).optional(),
  });
  router.post('/namespaces/:namespace/keys/rotate', async (req: Request, res: Response) => {
    const namespace = await authorize(req, res);
    const { mode, force, expectedActiveVersion } = await body(req, res, rotateBody);
    const result = await keyring.manager.rotate(namespace, {
      mode,
      force,
      ...(expectedActiveVersion === undefined ? {} : { expectedActiveVersion }),
    });
    record(req, res, 'rotate', {
      namespace,
      mode,
      force,
      performed: result.performed,
      version: result.current.version,
    });
    res.json(result);
  });

  const stateBody = z.strictObject({
    state: z.enum(KEY_STATES as [string, ...string[]]),
    force: z.boolean().default(false),
  });
  router.post('/namespaces/:namespace/keys/:version/state', async (req: Request, res: Response) => {
    const namespace = await authorize(req, res);
    const version = Number(req.params.version);
    if (!/^[1-9][0-9]{0,15}$/.test(String(req.params.version)) || !Number.isSafeInteger(version)) {
      throw malformed('version must be a positive integer');
    }
    const { state, force } = await body(req, res, stateBody);
    const result = await keyring.manager.setState(namespace, version, state as (typeof KEY_STATES)[number], {
      force,
    });
    record(req, res, 'set-state', { namespace, version, state, force, performed: result.performed });
    // The version as it is now, and whether this request changed it.
    res.json({ ...result.current, performed: result.performed });
  });

  registerExportRoutes(router, { keyring, authorize, body, record });

  return router;
}
