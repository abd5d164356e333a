import { request as httpRequest } from 'node:http';
import { connect } from 'node:net';
import type fc from 'fast-check';
import type pino from 'pino';
import { expect } from 'vitest';
import type { AppDeps } from '../../../codec-server/app.ts';
import type { Metrics } from '../../../codec-server/metrics.ts';
import type { ServerConfigInput } from '../../../src/config/server-config.ts';
import { type KeyEncryptionKey, LocalKek } from '../../../src/kek/kek.ts';
import type { Keyring } from '../../../src/keyring/keyring.ts';
import type { Keystore } from '../../../src/keystore/keystore.ts';
import type { ManualClock } from '../../../src/runtime/clock.ts';
import { startTestServer } from '../../codec-server/support.ts';

/**
 * Shared harness of the adversarial suite (part A): the real Express app on a loopback port over a
 * real keyring, every log line captured as text, and HTTP helpers that never hang (each request
 * carries its own timeout) and read answers as raw text so nothing is hidden by parsing.
 */

/** Per-request bound: a request that takes longer is a hang, and fails the test. */
export const REQUEST_TIMEOUT_MS = 10_000;

/**
 * fast-check parameters: seeded (FC_SEED overrides; the seed is printed in fast-check's failure
 * report, so a failure replays with `FC_SEED=<seed>`), bounded run counts, no shrinking time bomb.
 */
export function fcParams(numRuns: number): fc.Parameters<unknown> {
  const seed = process.env.FC_SEED ? Number(process.env.FC_SEED) : 0x7e_3a_c0_de;
  return { seed, numRuns, endOnFailure: true, verbose: 1 };
}

export interface AdversarialServer {
  url: string;
  port: number;
  keyring: Keyring;
  keystore: Keystore;
  metrics: Metrics;
  clock: ManualClock;
  /** The captured logger the app and the keyring write to; pass it to further parts under test. */
  logger: pino.Logger;
  /** Every log line written so far (pino JSON), as one string. */
  rawLogs(): string;
  close(): Promise<void>;
}

/** The codec-server suite's in-process server, at trace level, capturing the keyring's logs too. */
export async function startServer(
  configInput: ServerConfigInput,
  options: {
    namespaces?: string[];
    clock?: ManualClock;
    kek?: KeyEncryptionKey;
    keystore?: Keystore;
    deps?: Partial<AppDeps>;
  } = {},
): Promise<AdversarialServer> {
  return startTestServer<Keystore>(configInput, {
    ...options,
    kek: options.kek ?? new LocalKek(Buffer.alloc(32, 9)),
    logLevel: 'trace',
    keyringLogs: true,
  });
}

export interface Answer {
  status: number;
  headers: Headers;
  text: string;
  /** The body parsed as JSON, or undefined when it is not JSON. */
  json: unknown;
}

/** `fetch` (undici: keep-alive) with a per-request timeout; the answer read whole as text. */
export async function send(
  url: string,
  init: { method?: string; headers?: Record<string, string>; body?: string | Uint8Array } = {},
): Promise<Answer> {
  const res = await fetch(url, {
    method: init.method ?? 'POST',
    headers: init.headers,
    body: init.body,
    signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
  });
  const text = await res.text();
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** POST JSON (a string is sent as is). */
export function postJson(url: string, body: unknown, headers: Record<string, string> = {}): Promise<Answer> {
  return send(url, {
    headers: { 'content-type': 'application/json', ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
}

/**
 * A request with a raw, unnormalized path (fetch would resolve `..` and re-encode), through
 * node:http. Headers are sent as given.
 */
export function rawPathRequest(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        method: options.method ?? 'POST',
        headers: { 'content-type': 'application/json', ...options.headers },
        timeout: REQUEST_TIMEOUT_MS,
        // A fresh connection per request: Node's global agent keeps sockets alive, and a reused
        // socket that the server's keep-alive timeout closes at the same moment answers ECONNRESET
        // (seen in the CORS fuzz on a loaded machine). These tests are about what one request gets.
        agent: false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: unknown;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          const headers = new Headers();
          for (const [k, v] of Object.entries(res.headers)) if (typeof v === 'string') headers.set(k, v);
          resolve({ status: res.statusCode ?? 0, headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`request ${path} timed out`)));
    req.on('error', reject);
    req.end(options.body ?? '{"payloads":[]}');
  });
}

/**
 * Bytes written straight to a socket (for requests no HTTP client will send: NUL in a header,
 * broken framing). Resolves with whatever the server answered before closing, bounded in time.
 */
export function rawSocket(port: number, bytes: Uint8Array | string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('raw socket request timed out'));
    }, REQUEST_TIMEOUT_MS);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('latin1'));
    });
    socket.end(bytes);
  });
}

/** Asserts a client-error answer: 4xx, JSON `{code: "ERR_...", message}` and nothing else. */
export function expectClientError(answer: Answer, context = ''): { code: string; message: string } {
  const where = `${context.slice(0, 200)} → ${answer.status} ${answer.text.slice(0, 300)}`;
  expect(answer.status, where).toBeGreaterThanOrEqual(400);
  expect(answer.status, where).toBeLessThan(500);
  const body = answer.json as { code?: unknown; message?: unknown };
  expect(body, where).toBeTypeOf('object');
  expect(Object.keys(body).sort(), where).toEqual(['code', 'message']);
  expect(body.code, where).toMatch(/^ERR_[A-Z_]+$/);
  expect(body.message, where).toBeTypeOf('string');
  expect(answer.text, where).not.toMatch(/\bat [^\s]+ \(|node_modules|\.ts:\d+/);
  return body as { code: string; message: string };
}

export const b64 = (text: string | Uint8Array) =>
  (typeof text === 'string' ? Buffer.from(text, 'utf8') : Buffer.from(text)).toString('base64');

/** A payload as the Web UI builds it for /encode. */
export function jsonPayload(value: unknown): { metadata: { encoding: string }; data: string } {
  return { metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(value)) };
}
