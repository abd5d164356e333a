import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import pino from 'pino';
import { type AppDeps, type CodecServerApp, createApp } from '../../codec-server/app.ts';
import { Metrics } from '../../codec-server/metrics.ts';
import { parseServerConfig, type ServerConfigInput } from '../../src/config/server-config.ts';
import { type KeyEncryptionKey, LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

/** A codec server in-process on a loopback port, over a MemoryKeystore, with captured logs. */
export interface TestServer<K extends Keystore = MemoryKeystore> {
  url: string;
  port: number;
  keyring: Keyring;
  keystore: K;
  /** The app the server runs (`app.express` is its Express part alone). */
  app: CodecServerApp;
  metrics: Metrics;
  clock: ManualClock;
  /** The capturing logger the app (and, with `keyringLogs`, the keyring) writes to. */
  logger: pino.Logger;
  /** Every log line written so far, parsed. */
  logs: Record<string, unknown>[];
  /** Raw log text, to check that secrets never appear. */
  rawLogs(): string;
  close(): Promise<void>;
}

export const TEST_KEK = new LocalKek(Buffer.alloc(32, 7));

export async function startTestServer<K extends Keystore = MemoryKeystore>(
  configInput: ServerConfigInput,
  options: {
    namespaces?: string[];
    clock?: ManualClock;
    deps?: Partial<AppDeps>;
    keystore?: K;
    kek?: KeyEncryptionKey;
    /** Default `debug`. */
    logLevel?: pino.Level;
    /** Capture the keyring's own log lines too. Default false. */
    keyringLogs?: boolean;
  } = {},
): Promise<TestServer<K>> {
  const clock = options.clock ?? new ManualClock(Date.UTC(2026, 0, 1));
  const keystore = options.keystore ?? (new MemoryKeystore() as Keystore as K);
  const config = parseServerConfig(configInput);
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk, _enc, cb) {
      lines.push(...String(chunk).split('\n').filter(Boolean));
      cb();
    },
  });
  const logger = pino({ level: options.logLevel ?? 'debug' }, sink);
  const keyring = await Keyring.open({
    keystore,
    kek: options.kek ?? TEST_KEK,
    clock,
    ...(options.keyringLogs ? { logger } : {}),
    createNamespacesOnFirstUse: config.dev,
  });
  for (const ns of options.namespaces ?? ['default']) await keyring.createNamespace(ns);
  const metrics = new Metrics();
  const app = createApp({ keyring, config, clock, logger, metrics, ...options.deps });
  const server = http.createServer(app).listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    keyring,
    keystore,
    app,
    metrics,
    clock,
    logger,
    get logs() {
      return lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    rawLogs: () => lines.join('\n'),
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
      await keyring.close();
    },
  };
}

export const b64 = (text: string) => Buffer.from(text, 'utf8').toString('base64');
export const unb64 = (text: string) => Buffer.from(text, 'base64').toString('utf8');

/** A payload exactly as the Web UI builds it for /encode. */
export function uiJsonPayload(value: unknown): { metadata: { encoding: string }; data: string } {
  return { metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(value)) };
}

export async function post(
  url: string,
  body: unknown,
  headers: Record<string, string> = {},
): Promise<Response> {
  return fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}
