import type { IncomingMessage, ServerResponse } from 'node:http';
import type { PayloadCodec } from '@temporalio/common';
import express, { type Express, type NextFunction, type Request, type Response } from 'express';
import pino from 'pino';
import { EncryptionCodec } from '../src/codec/encryption-codec.ts';
import type { PayloadFormat } from '../src/codec/payload-format.ts';
import type { ServerConfig } from '../src/config/server-config.ts';
import { InternalError } from '../src/errors.ts';
import type { EsdkEngine } from '../src/esdk/engine.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import type { RotationPolicy } from '../src/rotation/rotation-policy.ts';
import { type Clock, systemClock } from '../src/runtime/clock.ts';
import { adminRouter } from './admin-routes.ts';
import { auditLogger } from './audit.ts';
import { type Authenticator, createAuthenticator } from './auth/authenticator.ts';
import { codecRoute } from './codec-route.ts';
import { corsMiddleware } from './cors.ts';
import { errorAnswer } from './error-answer.ts';
import { HttpError } from './http-error.ts';
import { jsonBodyReader } from './json-body.ts';
import { withDeadline } from './keystore-deadline.ts';
import { Metrics } from './metrics.ts';
import { opsRouter } from './ops-routes.ts';
import { requestLog } from './request-log.ts';
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

/**
 * The codec server as one request listener: `POST [prefix][/{namespace}]/encode|decode` for the
 * Temporal Web UI and CLI, `/healthz`, `/readyz`, `/metrics`, and the key admin API. A factory
 * over its dependencies, so tests run it in-process on a loopback port (`http.createServer(app)`);
 * it also mounts in an Express app (`parent.use('/codec', app)`), as it takes `next`.
 *
 * Two paths, one behaviour. A codec request in the form the Web UI and CLI send is served by
 * codec-route.ts directly; every other request goes to an Express app with the same CORS, request
 * log and host check in front, where the same codec handler is also the route for the codec
 * endpoints' other forms. Both end errors in one place (error-answer.ts). Why two: Express's
 * routing alone cost more CPU than everything else in a one-payload `/decode` (docs/performance.md).
 */
export type CodecServerApp = ((
  req: IncomingMessage,
  res: ServerResponse,
  next?: (error?: unknown) => void,
) => void) & {
  /** The Express app serving everything but the codec requests' usual form. */
  readonly express: Express;
};

export function createApp(deps: AppDeps): CodecServerApp {
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
  const codecFor =
    deps.codecFor ??
    ((namespace: string) =>
      new EncryptionCodec({ namespace, keys: keyring, engine: deps.engine, format: deps.payloadFormat }));

  // What every request passes before its route, on either path. CORS first: every answer,
  // errors included, must carry its headers.
  const cors = corsMiddleware(config.cors);
  const log = requestLog(logger, { audit, metrics });
  // Without auth, a loopback-only server is still reachable from web pages through DNS rebinding
  // (evil.example resolving to 127.0.0.1): only loopback Host names are served.
  const checkHost = config.dev && !config.auth.jwt && config.auth.tokens.length === 0;
  const admit = (req: IncomingMessage, res: ServerResponse): void => {
    log.begin(req, res);
    if (checkHost && !isLoopbackHost(req.headers.host)) {
      throw new HttpError(
        403,
        'ERR_FORBIDDEN',
        'dev mode without auth answers only Host: localhost, 127.0.0.1 or [::1]',
      );
    }
  };
  const answerError = errorAnswer({ metrics, logger });

  const readBody = jsonBodyReader(config.bodyLimit);
  // Sealed keystore (Shamir unseal keys): codec and admin requests answer 503 ERR_SEALED until
  // a threshold of unseal keys is given to {prefix}/admin/unseal.
  const seal = sealRoutes({ keyring, auth, pathPrefix: config.pathPrefix, audit });
  const codec = codecRoute({
    keyring,
    config,
    auth,
    metrics,
    assertUnsealed: seal.assertUnsealed,
    codecFor,
    readBody,
  });

  const app = express();
  app.disable('x-powered-by');
  app.set('etag', false);
  app.set('query parser', 'simple');
  app.use(cors);
  app.use((req: Request, res: Response, next: NextFunction) => {
    admit(req, res);
    next();
  });

  const rewrap = rewrapRoute({
    keyring,
    auth,
    audit,
    namespaceOf: (req) => codec.namespaceOf(req, param(req, 'namespace')),
    requireKeys: codec.requireKeys,
    readJson: async (req, res) => {
      req.body = await readBody(req, res);
    },
  });
  const codecHandler = async (req: Request, res: Response, next: NextFunction) => {
    const op = param(req, 'op');
    if (op !== 'encode' && op !== 'decode' && op !== 'download') return next();
    await codec.handle(req, res, { op, namespace: param(req, 'namespace') });
  };
  app.use(seal.router);
  app.post(`${config.pathPrefix}/rewrap`, seal.gate, rewrap);
  app.post(`${config.pathPrefix}/:namespace/rewrap`, seal.gate, rewrap);
  app.post(`${config.pathPrefix}/:op`, codecHandler);
  app.post(`${config.pathPrefix}/:namespace/:op`, codecHandler);
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
  app.use((error: unknown, _req: Request, res: Response, _next: NextFunction) => answerError(error, res));

  const listener = (req: IncomingMessage, res: ServerResponse, next?: (error?: unknown) => void) => {
    const target = codec.match(req);
    if (!target) {
      app(req as Request, res as Response, next ?? (() => undefined));
      return;
    }
    try {
      // Synchronous for a POST with static options (cors answers only preflights itself).
      let passed = false;
      cors(req as Request, res as Response, (error?: unknown) => {
        if (error) throw error;
        passed = true;
      });
      if (!passed) throw new InternalError('CORS did not pass a codec request on');
      admit(req, res);
    } catch (error) {
      answerError(error, res);
      return;
    }
    codec.handle(req, res, target).catch((error: unknown) => answerError(error, res));
  };
  return Object.assign(listener, { express: app });
}

/** A named route parameter (Express types allow arrays, for wildcards). */
function param(req: Request, name: string): string | undefined {
  const value = req.params[name];
  return typeof value === 'string' ? value : undefined;
}

/** `localhost`, `127.x.x.x` or `[::1]`, with any port. */
export function isLoopbackHost(host: string | undefined): boolean {
  if (!host) return false;
  const name = host.startsWith('[') ? host.slice(0, host.indexOf(']') + 1) : host.split(':')[0]!;
  return name === 'localhost' || name === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(name);
}
