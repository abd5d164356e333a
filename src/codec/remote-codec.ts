import http from 'node:http';
import https from 'node:https';
import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import { z } from 'zod';
import {
  InvalidOptionError,
  type KeyringError,
  keyringErrorFromCode,
  RemoteCodecRejectedError,
  RemoteCodecTimeoutError,
  RemoteCodecUnavailableError,
} from '../errors.ts';
import { isValidNamespace, validateNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { payloadToWire } from './payload-wire.ts';

/**
 * Options of {@link RemoteCodec}, validated once by its constructor (messages name the field).
 */
export interface RemoteCodecOptions {
  /**
   * The codec server's endpoint, as the Temporal CLI's `--codec-endpoint`: `https://host/codec`
   * gives `POST https://host/codec/encode`; `{namespace}` in it is replaced by the namespace.
   */
  endpoint: string;
  /**
   * The namespace sent as `X-Namespace` when the SDK passes no `SerializationContext` (the client
   * and the worker's workflow/activity paths pass one naming the namespace; it wins when given).
   */
  namespace?: string;
  /** Sent as `Authorization: Bearer <token>`. Requires `https:` unless the host is loopback. */
  token?: string;
  /** TLS of an `https:` endpoint: CA to trust, and a client certificate for mTLS (PEM). */
  tls?: {
    ca?: string | Buffer;
    cert?: string | Buffer;
    key?: string | Buffer;
    /** Server name to verify, when it differs from the endpoint's host. */
    servername?: string;
  };
  /** Longest wait for one answer, in ms. Default 10 s. A timeout is not retried. */
  timeoutMs?: number;
  /** Further attempts after a connection error or a 503. Default 4. */
  retries?: number;
  /** First backoff, doubled after each retry, in ms. Default 100. */
  backoffMs?: number;
  /** Longest backoff, in ms. Default 5 s. */
  maxBackoffMs?: number;
  /** Most concurrent connections to the server. Default 16. */
  maxSockets?: number;
  /** Arms the request timeout. Default the system clock. */
  clock?: Clock;
  /** Waits between retries. Default a real timer; tests pass one that does not sleep. */
  sleep?: (ms: number) => Promise<void>;
}

const pem = z.union([z.string().min(1), z.instanceof(Buffer)]);
const optionsSchema = z.strictObject({
  endpoint: z.string().refine(
    (value) => {
      try {
        const url = new URL(value.replaceAll('{namespace}', 'ns'));
        return (url.protocol === 'http:' || url.protocol === 'https:') && !url.search && !url.hash;
      } catch {
        return false;
      }
    },
    {
      message:
        'must be an http:// or https:// URL without query or fragment, e.g. https://codec.example/codec',
    },
  ),
  namespace: z.string().refine(isValidNamespace, { message: 'is not a valid namespace name' }).optional(),
  token: z
    .string()
    .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces (the token itself, without "Bearer")')
    .optional(),
  tls: z
    .strictObject({
      ca: pem.optional(),
      cert: pem.optional(),
      key: pem.optional(),
      servername: z.string().optional(),
    })
    .refine((t) => (t.cert === undefined) === (t.key === undefined), {
      message: 'cert and key must be given together (mTLS client certificate)',
    })
    .optional(),
  timeoutMs: z.number().int().min(1).max(600_000).default(10_000),
  retries: z.number().int().min(0).max(20).default(4),
  backoffMs: z.number().int().min(0).max(60_000).default(100),
  maxBackoffMs: z.number().int().min(0).max(300_000).default(5_000),
  maxSockets: z.number().int().min(1).max(1024).default(16),
  clock: z.custom<Clock>((c) => typeof (c as Clock)?.setTimer === 'function', 'must be a Clock').optional(),
  sleep: z
    .custom<(ms: number) => Promise<void>>((f) => typeof f === 'function', 'must be a function')
    .optional(),
});

type Operation = 'encode' | 'decode';
/** What one attempt came to. `retry`: worth another attempt; `error`: final. */
type Outcome = { kind: 'ok'; json: unknown } | { kind: 'retry' | 'error'; error: KeyringError };

/** Errors of a connection that may be retried: the request did not reach the codec, or its answer was lost. */
const RETRYABLE_NETWORK = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EAI_AGAIN',
  'UND_ERR_SOCKET',
]);

/**
 * A Temporal {@link PayloadCodec} whose keys stay in a codec server: each `encode`/`decode` call
 * is one `POST {endpoint}/encode|decode` with the whole batch, as the Temporal CLI and Web UI
 * call it (shared/codec-protocol.md).
 *
 * Pipeline position: `PayloadConverter` → `RemoteCodec` (this) → HTTP → codec server →
 * `EncryptionCodec` → keyring. The worker holds no KEK and no keystore.
 *
 * - Keep-alive connections (a `node:http`/`node:https` Agent; client certificate on the agent for
 *   mTLS), a timeout per attempt, retries with exponential backoff on connection errors and 503
 *   (encode and decode are both safe to repeat: a repeated encode encrypts again, and counts again).
 * - The server's `{code, message}` becomes the same typed error class here (`keyringErrorFromCode`):
 *   a worker sees `KeyVersionDestroyedError` whether its codec is local or remote. Codes of the
 *   server's own (401, 403, 413...) become {@link RemoteCodecRejectedError}.
 */
export class RemoteCodec implements PayloadCodec {
  readonly endpoint: string;
  readonly namespace: string | undefined;
  readonly #options: z.output<typeof optionsSchema>;
  readonly #agent: http.Agent;
  readonly #clock: Clock;
  readonly #sleep: (ms: number) => Promise<void>;
  readonly #https: boolean;

  constructor(options: RemoteCodecOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    const parsed = optionsSchema.safeParse(options);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw new InvalidOptionError(issue.path.map(String).join('.') || 'options', issue.message);
    }
    const o = parsed.data;
    this.#https = o.endpoint.startsWith('https:');
    const host = new URL(o.endpoint.replaceAll('{namespace}', 'ns')).hostname;
    if (o.token !== undefined && !this.#https && !isLoopbackName(host)) {
      throw new InvalidOptionError('token', 'is sent only to https:// endpoints (or to a loopback host)');
    }
    if (o.tls && !this.#https) throw new InvalidOptionError('tls', 'needs an https:// endpoint');
    this.#options = o;
    this.endpoint = o.endpoint.replace(/\/+$/, '');
    this.namespace = o.namespace;
    this.#clock = o.clock ?? systemClock;
    this.#sleep = o.sleep ?? ((ms) => new Promise((resolve) => setTimeout(resolve, ms)));
    const agentOptions = { keepAlive: true, maxSockets: o.maxSockets };
    this.#agent = this.#https
      ? new https.Agent({
          ...agentOptions,
          ca: o.tls?.ca,
          cert: o.tls?.cert,
          key: o.tls?.key,
          servername: o.tls?.servername,
        })
      : new http.Agent(agentOptions);
  }

  encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.#call('encode', payloads, context);
  }

  decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.#call('decode', payloads, context);
  }

  /** Closes idle keep-alive connections. In-flight requests finish. */
  close(): void {
    this.#agent.destroy();
  }

  async #call(operation: Operation, payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    if (payloads.length === 0) return [];
    const namespace = this.#namespaceOf(context);
    const url = `${this.endpoint.replaceAll('{namespace}', encodeURIComponent(namespace))}/${operation}`;
    const body = Buffer.from(JSON.stringify({ payloads: payloads.map(payloadToWire) }));
    const { retries, backoffMs, maxBackoffMs } = this.#options;
    for (let attempt = 0; ; attempt++) {
      const outcome = await this.#attempt(url, namespace, body);
      if (outcome.kind === 'ok') return payloadsFromWire(outcome.json, payloads.length, operation);
      if (outcome.kind === 'error' || attempt >= retries) throw outcome.error;
      await this.#sleep(Math.min(maxBackoffMs, backoffMs * 2 ** attempt));
    }
  }

  #namespaceOf(context: SerializationContext | undefined): string {
    const fromContext = context?.namespace;
    if (fromContext) return validateNamespace(fromContext);
    if (this.namespace) return this.namespace;
    throw new InvalidOptionError(
      'namespace',
      'is required when the SDK passes no SerializationContext (set it to the namespace of the worker or client)',
    );
  }

  /** One request, settled once: by its answer, its connection's error, or the timeout. */
  #attempt(url: string, namespace: string, body: Buffer): Promise<Outcome> {
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      'content-length': String(body.length),
      'x-namespace': namespace,
    };
    if (this.#options.token !== undefined) headers.authorization = `Bearer ${this.#options.token}`;
    const request = this.#https ? https.request : http.request;
    return new Promise((resolve) => {
      let settled = false;
      const settle = (value: Outcome) => {
        if (settled) return;
        settled = true;
        cancelTimer();
        resolve(value);
      };
      const req = request(url, { method: 'POST', headers, agent: this.#agent }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (chunk: Buffer) => chunks.push(chunk));
        res.on('error', (error) => settle(networkOutcome(error, url)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          settle(answerOutcome(res.statusCode ?? 0, text));
        });
      });
      const timeoutMs = this.#options.timeoutMs;
      const cancelTimer = this.#clock.setTimer(timeoutMs, () => {
        settle({
          kind: 'error',
          error: new RemoteCodecTimeoutError(`the codec server did not answer within ${timeoutMs} ms`),
        });
        req.destroy();
      });
      req.on('error', (error) => settle(networkOutcome(error, url)));
      req.end(body);
    });
  }
}

function answerOutcome(status: number, text: string): Outcome {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  if (status === 200) {
    if (json === undefined) {
      return {
        kind: 'error',
        error: new RemoteCodecRejectedError(
          status,
          undefined,
          'the codec server answered 200 with a body that is not JSON',
        ),
      };
    }
    return { kind: 'ok', json };
  }
  const { code, message } = (json ?? {}) as { code?: unknown; message?: unknown };
  const text2 = typeof message === 'string' ? message : `the codec server answered ${status}`;
  const typed =
    typeof code === 'string'
      ? (keyringErrorFromCode(code, text2) ??
        new RemoteCodecRejectedError(status, code, `${status} ${code}: ${text2}`))
      : new RemoteCodecRejectedError(status, undefined, `the codec server answered ${status}`);
  return { kind: status === 503 ? 'retry' : 'error', error: typed };
}

function networkOutcome(error: Error, url: string): Outcome {
  const code = (error as NodeJS.ErrnoException).code;
  const where = new URL(url).origin;
  const wrapped = new RemoteCodecUnavailableError(
    `the codec server at ${where} could not be reached (${code ?? error.message})`,
    { cause: error },
  );
  // "socket hang up" (ECONNRESET) on a reused keep-alive connection is the common case.
  return { kind: code !== undefined && RETRYABLE_NETWORK.has(code) ? 'retry' : 'error', error: wrapped };
}

function isLoopbackName(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function payloadsFromWire(json: unknown, expected: number, operation: Operation): Payload[] {
  const list = (json as { payloads?: unknown } | null)?.payloads ?? [];
  const bad = (why: string) =>
    new RemoteCodecRejectedError(200, undefined, `the codec server's ${operation} answer is invalid: ${why}`);
  if (!Array.isArray(list)) throw bad('"payloads" is not an array');
  if (list.length !== expected) throw bad(`${list.length} payloads for ${expected} sent`);
  return list.map((item: unknown, i) => {
    const { metadata, data } = (item ?? {}) as { metadata?: unknown; data?: unknown };
    const entries: [string, Uint8Array][] = [];
    if (metadata !== undefined && metadata !== null) {
      if (typeof metadata !== 'object' || Array.isArray(metadata)) throw bad(`payloads[${i}].metadata`);
      for (const [k, v] of Object.entries(metadata)) {
        if (typeof v !== 'string') throw bad(`payloads[${i}].metadata`);
        entries.push([k, unbase64(v)]);
      }
    }
    if (data !== undefined && data !== null && typeof data !== 'string') throw bad(`payloads[${i}].data`);
    return { metadata: Object.fromEntries(entries), data: unbase64(typeof data === 'string' ? data : '') };
  });
}

function unbase64(text: string): Uint8Array {
  const b = Buffer.from(text, 'base64');
  return new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}
