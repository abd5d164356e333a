import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import pino from 'pino';
import type { PayloadFormat } from '../src/codec/payload-format.ts';
import type { ServerConfig } from '../src/config/server-config.ts';
import type { EsdkEngine } from '../src/esdk/engine.ts';
import type { Keyring } from '../src/keyring/keyring.ts';
import type { Clock } from '../src/runtime/clock.ts';
import { type AppDeps, createApp, type PinoLogger } from './app.ts';
import type { Authenticator } from './auth/identity.ts';
import { Metrics } from './metrics.ts';
import { tlsOptions } from './tls.ts';

export interface StartServerOptions {
  /** Validated with `parseServerConfig`. */
  config: ServerConfig;
  keyring: Keyring;
  /** Closes the keyring and its keystore; called once, after the last request finished. */
  closeKeyring?: () => Promise<void>;
  logger?: PinoLogger;
  clock?: Clock;
  engine?: EsdkEngine;
  /** See `AppDeps.payloadFormat`. */
  payloadFormat?: PayloadFormat;
  metrics?: Metrics;
  auth?: Authenticator;
  /** See `AppDeps.codecFor`. */
  codecFor?: AppDeps['codecFor'];
  /** See `AppDeps.rotationPolicy`. */
  rotationPolicy?: AppDeps['rotationPolicy'];
}

export interface RunningServer {
  /** Base URL, e.g. `http://127.0.0.1:8888` (the codec endpoint is this plus `pathPrefix`). */
  url: string;
  server: http.Server | https.Server;
  /**
   * Graceful stop: no new connections, in-flight requests finish (up to `shutdownTimeoutMs`, then
   * connections are cut), then the keyring and keystore close and logs are flushed. Idempotent.
   */
  close(): Promise<void>;
}

/**
 * Starts the codec server: the app from `createApp` on HTTP, or HTTPS (optionally mutual TLS) when
 * `config.tls` is set. The `serve` command calls this; so can applications embedding the server.
 */
export async function startServer(options: StartServerOptions): Promise<RunningServer> {
  const { config } = options;
  const logger = options.logger ?? pino();
  const app = createApp({
    keyring: options.keyring,
    config,
    clock: options.clock,
    logger,
    metrics: options.metrics ?? new Metrics({ defaultMetrics: true }),
    auth: options.auth,
    engine: options.engine,
    payloadFormat: options.payloadFormat,
    codecFor: options.codecFor,
    rotationPolicy: options.rotationPolicy,
  });
  const { timeouts } = config;
  // Slow and idle clients are cut (docs/codec-server.md, "Timeouts"): a connection that has not
  // sent complete headers within `headersMs`, or a complete request within `requestMs`, gets a
  // 408 and is closed; an idle keep-alive connection closes after `keepAliveMs`; a TLS handshake
  // must finish within `handshakeMs`.
  const httpOptions: http.ServerOptions = {
    headersTimeout: timeouts.headersMs,
    requestTimeout: Math.max(timeouts.requestMs, timeouts.headersMs),
    keepAliveTimeout: timeouts.keepAliveMs,
    connectionsCheckingInterval: timeouts.checkIntervalMs,
  };
  const server = config.tls
    ? https.createServer(
        { ...httpOptions, ...(await tlsOptions(config.tls)), handshakeTimeout: timeouts.handshakeMs },
        app,
      )
    : http.createServer(httpOptions, app);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(config.port, config.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const host = config.host.includes(':') ? `[${config.host}]` : config.host;
  const url = `${config.tls ? 'https' : 'http'}://${host}:${port}`;
  logger.info(
    { url, pathPrefix: config.pathPrefix, tls: Boolean(config.tls), mtls: Boolean(config.tls?.clientCa) },
    'codec server listening',
  );

  let closing: Promise<void> | undefined;
  const close = () => {
    closing ??= (async () => {
      logger.info({}, 'codec server shutting down');
      const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          server.closeAllConnections();
          resolve();
        }, config.shutdownTimeoutMs);
        timer.unref();
      });
      await Promise.race([stopped, deadline]);
      clearTimeout(timer);
      await options.closeKeyring?.();
      logger.info({}, 'codec server stopped');
      logger.flush?.();
    })();
    return closing;
  };
  return { url, server, close };
}
