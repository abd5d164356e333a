import type { Payload, PayloadCodec } from '@temporalio/common';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import pino from 'pino';
import { EncryptionCodec, keyVersionOf } from '../src/codec/encryption-codec.ts';
import type { PayloadFormat } from '../src/codec/payload-format.ts';
import type { ServerConfig } from '../src/config/server-config.ts';
import { InternalError, NamespaceMismatchError, NamespaceNotFoundError } from '../src/errors.ts';
import type { EsdkEngine } from '../src/esdk/engine.ts';
import { errorSummary, type Keyring } from '../src/keyring/keyring.ts';
import { validateNamespace } from '../src/model/namespace.ts';
import type { RotationPolicy } from '../src/rotation/rotation-policy.ts';
import { type Clock, systemClock } from '../src/runtime/clock.ts';
import { adminRouter } from './admin-routes.ts';
import { auditLogger } from './audit.ts';
import { type Authenticator, createAuthenticator } from './auth/authenticator.ts';
import { corsMiddleware } from './cors.ts';
import { toHttpError } from './error-mapping.ts';
import { HttpError } from './http-error.ts';
import { jsonBodyReader } from './json-body.ts';
import { withDeadline } from './keystore-deadline.ts';
import { Metrics } from './metrics.ts';
import { opsRouter } from './ops-routes.ts';
import { parsePayloadsBody, payloadsToJson } from './payload-json.ts';
import { contextOf } from './request-context.ts';
import { requestLog, setAudit } from './request-log.ts';
import { rewrapRoute } from './rewrap-route.ts';
import { sealRoutes } from './seal-routes.ts';

/** A pino logger (the app uses `child` for the audit channel); tests pass `pino({ level: 'silent' })`. */
export type PinoLogger = pino.Logger;

export interface AppDeps {
  keyring: Keyring;
  /** Validated with `parseServerConfig`. */
  config: ServerConfig;
  clock?: Clock;
  logger?: PinoLogger;
  /** Per app, so that tests are isolated. Default: a new {@link Metrics}. */
  metrics?: Metrics;
  /** Default: from `config.auth` (`createAuthenticator`). */
  auth?: Authenticator;
  /** ESDK engine of the codec. Default: the codec's default (`fastEngine`). */
  engine?: EsdkEngine;
  /** The payload format `/encode` writes (`/decode` reads both). Default: the codec's default, 1. */
  payloadFormat?: PayloadFormat;
  /** Builds the codec of a namespace. Default: `new EncryptionCodec({ namespace, keys: keyring, engine, format })`. */
  codecFor?: (namespace: string) => PayloadCodec;
  /**
   * Each namespace's rotation policy, for the rotation plan in the admin key listing (the same one
   * `serve` gives its keyring and rotator). Default: the built-in policy.
   */
  rotationPolicy?: (namespace: string) => RotationPolicy;
}

type CodecOperation = 'encode' | 'decode';

/**
 * The codec server as an Express app: `POST [prefix][/{namespace}]/encode|decode` for the Temporal
 * Web UI and CLI, `/healthz`, `/readyz`, `/metrics`, and the key admin API. A factory over its
 * dependencies, so tests run it in-process on a loopback port.
 *
 * Order of checks on a codec request: CORS → authentication (401) → namespace (400) →
 * authorization (403) → namespace has keys (404) → content type (415) → body (413, 400) → codec.
 */
export function createApp(deps: AppDeps): Express {
  const { keyring, config } = deps;
  const clock = deps.clock ?? systemClock;
  const logger = deps.logger ?? pino({ level: 'silent' });
  const metrics = deps.metrics ?? new Metrics();
  const auth = deps.auth ?? createAuthenticator(config, clock);
  const audit = auditLogger(logger) as pino.Logger;
  // Every lifecycle change made through this keyring (admin API, rotator) reaches the audit log;
  // an activation forced past its propagation delay at warn.
  keyring.manager?.subscribe((event) => {
    const record = { audit: { ...event, action: `key-${event.action}` } };
    if (event.forced)
      audit.warn(record, `key ${event.action}: activated before its propagation delay (forced)`);
    else audit.info(record, `key ${event.action}`);
  });
  const codecs = new Map<string, PayloadCodec>();
  const codecFor =
    deps.codecFor ??
    ((namespace: string) =>
      new EncryptionCodec({ namespace, keys: keyring, engine: deps.engine, format: deps.payloadFormat }));
  const knownNamespaces = new Set<string>();
  /** prom-client children, bound once per label set (namespaces are authorized ones). */
  const payloadCounters = new Map<string, { inc(value: number): void }>();

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');

  // CORS first: every answer, errors included, must carry the headers.
  app.use(corsMiddleware(config.cors));
  app.use(requestLog(logger, { audit, metrics }));

  if (config.dev && !config.auth.jwt && config.auth.tokens.length === 0) {
    // Without auth, a loopback-only server is still reachable from web pages through DNS
    // rebinding (evil.example resolving to 127.0.0.1): only loopback Host names are served.
    app.use((req: Request, _res: Response, next: NextFunction) => {
      if (!isLoopbackHost(req.headers.host)) {
        throw new HttpError(
          403,
          'ERR_FORBIDDEN',
          'dev mode without auth answers only Host: localhost, 127.0.0.1 or [::1]',
        );
      }
      next();
    });
  }

  const readBody = jsonBodyReader(config.bodyLimit);

  const codecRoute = async (req: Request, res: Response, next: NextFunction) => {
    const op = req.params.op;
    if (op === 'download') {
      // Authenticated like the codec routes, so that anonymous callers cannot fill the logs.
      contextOf(res).route = 'download';
      contextOf(res).identity = await auth.authenticate({ authorization: req.headers.authorization });
      throw new HttpError(
        501,
        'ERR_NOT_SUPPORTED',
        'download is not supported: this codec server does not use external payload storage',
      );
    }
    if (op !== 'encode' && op !== 'decode') return next();
    const operation: CodecOperation = op;
    const ctx = contextOf(res);
    ctx.route = operation;
    const requestId = ctx.requestId ?? '';
    let inputCount = 0;
    let keyVersions: number[] = [];
    try {
      ctx.identity = await auth.authenticate({ authorization: req.headers.authorization });
      const namespace = namespaceOf(req);
      ctx.namespace = namespace;
      if (!ctx.identity.can(namespace, operation)) {
        throw new HttpError(403, 'ERR_FORBIDDEN', `not allowed to ${operation} in namespace "${namespace}"`);
      }
      await requireKeys(namespace);
      if (!req.is('json')) {
        throw new HttpError(415, 'ERR_UNSUPPORTED_MEDIA_TYPE', 'Content-Type must be application/json');
      }
      const input = parsePayloadsBody(await readBody(req, res));
      inputCount = input.length;
      let codec = codecs.get(namespace);
      if (!codec) {
        codec = codecFor(namespace);
        codecs.set(namespace, codec);
      }
      if (operation === 'decode') keyVersions = versionsOf(input);
      const output = operation === 'encode' ? await codec.encode(input) : await codec.decode(input);
      if (output.length !== input.length)
        throw new InternalError('codec returned a different number of payloads');
      if (operation === 'encode') keyVersions = versionsOf(output);
      countPayloads(namespace, operation, operation === 'encode' ? output : input);
      setAudit(res, {
        requestId,
        operation,
        identity: pick(ctx.identity),
        namespace,
        payloads: inputCount,
        keyVersions,
        outcome: 'ok',
        status: 200,
      });
      // Serialized straight from the payloads (no intermediate object tree, no res.json).
      const body = payloadsToJson(output);
      res.writeHead(200, {
        'Content-Type': 'application/json; charset=utf-8',
        'Content-Length': Buffer.byteLength(body),
      });
      res.end(body);
    } catch (error) {
      const answer = toHttpError(error);
      setAudit(res, {
        requestId,
        operation,
        identity: ctx.identity && pick(ctx.identity),
        namespace: ctx.namespace,
        payloads: inputCount,
        keyVersions,
        outcome: 'error',
        status: answer.status,
        code: answer.body.code,
        ...(answer.body.hint === undefined ? {} : { hint: answer.body.hint }),
      });
      throw error;
    }
  };

  // Sealed keystore (Shamir unseal keys): codec and admin requests answer 503 ERR_SEALED until
  // a threshold of unseal keys is given to {prefix}/admin/unseal.
  const seal = sealRoutes({ keyring, auth, pathPrefix: config.pathPrefix, audit });
  const sealGate = (req: Request, res: Response, next: NextFunction) =>
    req.params.op === 'encode' || req.params.op === 'decode' ? seal.gate(req, res, next) : next();

  // Codec routes first, on the app itself: they carry the traffic, and every router passed costs
  // a path match.
  const rewrap = rewrapRoute({
    keyring,
    auth,
    audit,
    namespaceOf,
    requireKeys,
    readJson: async (req, res) => {
      req.body = await readBody(req, res);
    },
  });
  app.use(seal.router);
  app.post(`${config.pathPrefix}/rewrap`, seal.gate, rewrap);
  app.post(`${config.pathPrefix}/:namespace/rewrap`, seal.gate, rewrap);
  app.post(`${config.pathPrefix}/:op`, sealGate, codecRoute);
  app.post(`${config.pathPrefix}/:namespace/:op`, sealGate, codecRoute);
  app.use(opsRouter({ keyring, config, metrics, logger }));
  if (config.admin.enabled) {
    const readDeadline = <T>(read: Promise<T>) =>
      withDeadline(read, config.keystoreCheckTimeoutMs, 'an admin read');
    app.use(
      '/admin',
      seal.gate,
      adminRouter({ keyring, auth, config, audit, rotationPolicy: deps.rotationPolicy, readDeadline }),
    );
  }

  app.use((_req: Request, _res: Response) => {
    throw new HttpError(
      404,
      'ERR_NOT_FOUND',
      'not found: the codec endpoints are POST .../encode and POST .../decode',
    );
  });

  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => {
    const answer = toHttpError(error);
    metrics.errors.inc({ code: answer.body.code });
    // Our messages are safe to log (src/errors.ts); nothing else from the error is.
    if (answer.status >= 500 && answer.status !== 501) {
      logger.error({ reqId: contextOf(res).requestId, err: errorSummary(error) }, 'request failed');
    }
    if (res.headersSent) return;
    res.status(answer.status).set(answer.headers).json(answer.body);
  });

  return app;

  function namespaceOf(req: Request): string {
    // The UI does not substitute `{namespace}` (the CLI does): an endpoint configured for both
    // reaches us with the placeholder itself, and X-Namespace names the namespace.
    const fromPath = req.params.namespace === '{namespace}' ? undefined : req.params.namespace;
    const header = req.headers['x-namespace'];
    const fromHeader = Array.isArray(header) ? header[0] : header;
    if (fromPath !== undefined && fromHeader !== undefined && fromHeader !== '' && fromPath !== fromHeader) {
      throw new NamespaceMismatchError(
        `the namespace in the path ("${fromPath.slice(0, 64)}") and in X-Namespace ("${fromHeader.slice(0, 64)}") differ`,
      );
    }
    const namespace = fromPath ?? fromHeader;
    if (namespace === undefined || namespace === '') {
      throw new HttpError(
        400,
        'ERR_NAMESPACE_REQUIRED',
        'no namespace: send the X-Namespace header or use the path /{namespace}/encode|decode',
      );
    }
    return validateNamespace(namespace);
  }

  function countPayloads(namespace: string, operation: CodecOperation, payloads: readonly Payload[]): void {
    for (const [key_version, n] of payloadsByVersion(payloads)) {
      const key = `${namespace} ${operation} ${key_version}`;
      let counter = payloadCounters.get(key);
      if (!counter) {
        counter = metrics.payloads.labels({ namespace, operation, key_version });
        payloadCounters.set(key, counter);
      }
      counter.inc(n);
    }
  }

  async function requireKeys(namespace: string): Promise<void> {
    // Dev mode creates namespaces on first use; elsewhere an unknown namespace is a clear 404.
    if (config.dev || knownNamespaces.has(namespace)) return;
    const versions = await keyring.versions(namespace);
    if (versions.length === 0) throw new NamespaceNotFoundError(namespace);
    knownNamespaces.add(namespace);
  }
}

/** Payload counts by key version ("none": passed through), one metrics update per version. */
function payloadsByVersion(payloads: readonly Payload[]): Map<string, number> {
  const counts = new Map<string, number>();
  for (const p of payloads) {
    const v = String(keyVersionOf(p) ?? 'none');
    counts.set(v, (counts.get(v) ?? 0) + 1);
  }
  return counts;
}

function versionsOf(payloads: readonly Payload[]): number[] {
  const set = new Set<number>();
  for (const p of payloads) {
    const v = keyVersionOf(p);
    if (v !== undefined) set.add(v);
  }
  return [...set].sort((a, b) => a - b);
}

/** `localhost`, `127.x.x.x` or `[::1]`, with any port. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}

function pick(identity: { kind: 'jwt' | 'token' | 'anonymous'; subject: string }) {
  return { kind: identity.kind, subject: identity.subject };
}
