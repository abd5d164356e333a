/**
 * RemoteCodec against real codec servers on loopback: the app in-process, and a real child process
 * killed and restarted while a batch is in flight. The SDK's data-converter path and the worker's
 * replay path (`Worker.runReplayHistory`, no Temporal server) run through it.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import type { Payload } from '@temporalio/common';
import {
  decodeArrayFromPayloads,
  encodeToPayloads,
} from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import { loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/data-converter-helpers.js';
import proto from '@temporalio/proto';
import { Worker } from '@temporalio/worker';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startServer } from '../../codec-server/main.ts';
import { keyVersionOf } from '../../src/codec/encryption-codec.ts';
import { RemoteCodec } from '../../src/codec/remote-codec.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import {
  InvalidOptionError,
  KeystoreUnavailableError,
  KeyVersionDestroyedError,
  NamespaceNotFoundError,
  RemoteCodecRejectedError,
  RemoteCodecTimeoutError,
  RemoteCodecUnavailableError,
} from '../../src/errors.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { TEST_KEK } from '../codec-server/support.ts';
import { tempDir } from '../support/temp-dir.ts';

const TOKEN = randomBytes(24).toString('base64url');
const TOKEN_SHA256 = createHash('sha256').update(TOKEN).digest('hex');
const noSleep = async () => {};

/** A codec server in-process (real `startServer`), counting TCP connections and codec requests. */
async function serve(namespaces = ['default']) {
  const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
  for (const ns of namespaces) await keyring.createNamespace(ns);
  const config = parseServerConfig({
    host: '127.0.0.1',
    port: 0,
    auth: {
      tokens: [{ name: 'worker', sha256: TOKEN_SHA256, namespaces: ['*'], operations: ['encode', 'decode'] }],
    },
  });
  const server = await startServer({
    config,
    keyring,
    closeKeyring: () => keyring.close(),
    logger: pino({ level: 'silent' }),
  });
  const stats = { connections: 0, requests: [] as { url: string; namespace: string | undefined }[] };
  server.server.on('connection', () => stats.connections++);
  server.server.prependListener('request', (req: http.IncomingMessage) => {
    stats.requests.push({ url: req.url ?? '', namespace: req.headers['x-namespace'] as string | undefined });
  });
  return { url: server.url, keyring, stats, close: () => server.close() };
}

describe('RemoteCodec on a loopback codec server', () => {
  let server: Awaited<ReturnType<typeof serve>>;
  beforeAll(async () => {
    server = await serve(['default', 'orders']);
  });
  afterAll(() => server.close());

  it('round-trips values through the SDK data converter, one request per batch, on one keep-alive connection', async () => {
    const codec = new RemoteCodec({ endpoint: server.url, namespace: 'default', token: TOKEN });
    try {
      const converter = loadDataConverter({ payloadCodecs: [codec] });
      const before = { connections: server.stats.connections, requests: server.stats.requests.length };
      const values = [{ customer: 'Ada Lovelace', amountCents: 4200 }, 'charged', 42, null];
      const encoded = (await encodeToPayloads(converter, ...values))!;
      expect(encoded).toHaveLength(4);
      for (const p of encoded) {
        expect(keyVersionOf(p)).toBe(1);
        expect(Buffer.from(p.data!).toString('latin1')).not.toContain('Ada');
      }
      expect(await decodeArrayFromPayloads(converter, encoded)).toEqual(values);
      for (let i = 0; i < 5; i++) await codec.decode(encoded);
      // encode + 6 decodes: seven requests, each carrying its whole batch, over one connection.
      expect(server.stats.requests.length - before.requests).toBe(7);
      expect(server.stats.connections - before.connections).toBe(1);
      expect(server.stats.requests.at(-1)).toEqual({ url: '/decode', namespace: 'default' });
    } finally {
      codec.close();
    }
  });

  it('sends X-Namespace from the SDK SerializationContext, else from its option; {namespace} in the endpoint is filled in', async () => {
    const codec = new RemoteCodec({ endpoint: `${server.url}/{namespace}`, token: TOKEN });
    try {
      const payload: Payload = { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('1') };
      const encoded = await codec.encode([payload], {
        type: 'workflow',
        namespace: 'orders',
        workflowId: 'w',
      });
      expect(server.stats.requests.at(-1)).toEqual({ url: '/orders/encode', namespace: 'orders' });
      // Bound to `orders`: the default namespace's server-side codec refuses it.
      const other = new RemoteCodec({
        endpoint: server.url,
        namespace: 'default',
        token: TOKEN,
        sleep: noSleep,
      });
      await expect(other.decode(encoded)).rejects.toMatchObject({ code: 'ERR_NAMESPACE_MISMATCH' });
      other.close();
      await expect(codec.decode(encoded)).rejects.toBeInstanceOf(InvalidOptionError);
      const decoded = await codec.decode(encoded, { type: 'activity', namespace: 'orders', isLocal: false });
      expect(Buffer.from(decoded[0]!.data!).toString()).toBe('1');
    } finally {
      codec.close();
    }
  });

  it("turns the server's {code, message} into the same typed error class", async () => {
    const codec = new RemoteCodec({
      endpoint: server.url,
      namespace: 'default',
      token: TOKEN,
      sleep: noSleep,
    });
    try {
      const encoded = await codec.encode([{ metadata: {}, data: Buffer.from('x') }]);
      await server.keyring.rotate('default');
      await server.keyring.setState('default', 1, 'deprecated');
      await server.keyring.setState('default', 1, 'destroyed');
      const error = await codec.decode(encoded).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(KeyVersionDestroyedError);
      expect(error).toMatchObject({ code: 'ERR_KEY_VERSION_DESTROYED', name: 'KeyVersionDestroyedError' });
      const unknown = new RemoteCodec({ endpoint: server.url, namespace: 'nowhere', token: TOKEN });
      await expect(unknown.encode(encoded)).rejects.toBeInstanceOf(NamespaceNotFoundError);
      unknown.close();
    } finally {
      codec.close();
    }
  });

  it("a wrong token is refused with the server's code, and not retried", async () => {
    const sleeps: number[] = [];
    const codec = new RemoteCodec({
      endpoint: server.url,
      namespace: 'default',
      token: 'wrong-token',
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    try {
      const before = server.stats.requests.length;
      const error = await codec.encode([{ metadata: {}, data: Buffer.from('x') }]).catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RemoteCodecRejectedError);
      expect(error).toMatchObject({
        code: 'ERR_REMOTE_CODEC_REJECTED',
        status: 401,
        remoteCode: 'ERR_UNAUTHENTICATED',
      });
      expect(String((error as Error).message)).not.toContain('wrong-token');
      expect(sleeps).toEqual([]);
      expect(server.stats.requests.length - before).toBe(1);
    } finally {
      codec.close();
    }
  });
});

/** A loopback HTTP server answering from a script, for what a real codec server will not do on demand. */
async function scripted(handler: (req: http.IncomingMessage, res: http.ServerResponse, n: number) => void) {
  let n = 0;
  const received: string[] = [];
  const server = http.createServer((req, res) => {
    received.push(req.url ?? '');
    req.resume();
    req.on('end', () => handler(req, res, n++));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    received,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

const ok = (res: http.ServerResponse, count: number) =>
  res
    .writeHead(200, { 'content-type': 'application/json' })
    .end(JSON.stringify({ payloads: Array.from({ length: count }, () => ({ data: 'AA==' })) }));

describe('RemoteCodec: retries, backoff and timeouts', () => {
  it("retries 503 with exponential backoff, then succeeds; gives up with the server's typed error", async () => {
    const server = await scripted((_req, res, n) => {
      if (n < 3)
        res
          .writeHead(503, { 'content-type': 'application/json' })
          .end(JSON.stringify({ code: 'ERR_KEYSTORE_UNAVAILABLE', message: 'keystore unavailable' }));
      else ok(res, 1);
    });
    try {
      const sleeps: number[] = [];
      const sleep = async (ms: number) => {
        sleeps.push(ms);
      };
      const codec = new RemoteCodec({ endpoint: server.url, namespace: 'default', backoffMs: 50, sleep });
      expect(await codec.decode([{ metadata: {}, data: Buffer.from('x') }])).toHaveLength(1);
      expect(sleeps).toEqual([50, 100, 200]);
      expect(server.received).toHaveLength(4);
      const fail = await scripted((_req, res) =>
        res.writeHead(503).end(JSON.stringify({ code: 'ERR_KEYSTORE_UNAVAILABLE', message: 'down' })),
      );
      const tries = new RemoteCodec({ endpoint: fail.url, namespace: 'default', retries: 2, sleep });
      await expect(tries.encode([{ metadata: {} }])).rejects.toBeInstanceOf(KeystoreUnavailableError);
      expect(fail.received).toHaveLength(3);
      for (const c of [codec, tries]) c.close();
      await fail.close();
    } finally {
      await server.close();
    }
  });

  it('a server that answers too slowly fails with ERR_REMOTE_CODEC_TIMEOUT when the injected clock passes the timeout', async () => {
    let arrived!: () => void;
    const arrival = new Promise<void>((resolve) => {
      arrived = resolve;
    });
    const server = await scripted(() => arrived()); // never answers
    const clock = new ManualClock();
    const sleeps: number[] = [];
    const codec = new RemoteCodec({
      endpoint: server.url,
      namespace: 'default',
      timeoutMs: 2_000,
      clock,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    try {
      const pending = codec.decode([{ metadata: {}, data: Buffer.from('x') }]);
      await arrival;
      clock.advance(1_999);
      clock.advance(1);
      const error = await pending.catch((e: unknown) => e);
      expect(error).toBeInstanceOf(RemoteCodecTimeoutError);
      expect(error).toMatchObject({ code: 'ERR_REMOTE_CODEC_TIMEOUT' });
      expect(sleeps).toEqual([]); // a timeout is not retried
    } finally {
      codec.close();
      await server.close();
    }
  });

  it('connection refused: retried, then ERR_REMOTE_CODEC_UNAVAILABLE', async () => {
    const server = await scripted(() => {});
    const url = server.url;
    await server.close(); // nothing listens on that port now
    const sleeps: number[] = [];
    const codec = new RemoteCodec({
      endpoint: url,
      namespace: 'default',
      retries: 3,
      sleep: async (ms) => {
        sleeps.push(ms);
      },
    });
    const error = await codec.encode([{ metadata: {} }]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(RemoteCodecUnavailableError);
    expect(sleeps).toEqual([100, 200, 400]);
    codec.close();
  });

  it('validates its options up front, naming the field', () => {
    expect(() => new RemoteCodec({ endpoint: 'ftp://x' })).toThrow(/endpoint/);
    expect(() => new RemoteCodec({ endpoint: 'http://codec.example', token: 't' })).toThrow(/^token: /);
    expect(() => new RemoteCodec({ endpoint: 'https://codec.example', timeoutMs: 0 })).toThrow(
      /^timeoutMs: /,
    );
    expect(() => new RemoteCodec({ endpoint: 'https://codec.example', namespace: 'a b' })).toThrow(
      /^namespace: /,
    );
    expect(() => new RemoteCodec({ endpoint: 'https://codec.example', tls: { cert: 'x' } })).toThrow(
      /^tls: .*together/,
    );
  });
});

describe('RemoteCodec with a real server process killed and restarted mid-batch', () => {
  const CHILD = fileURLToPath(new URL('./fixtures/remote-server-child.ts', import.meta.url));
  let dir: string;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    dir = await tempDir('tk-remote-codec-');
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
  });

  async function freePort(): Promise<number> {
    const s = http.createServer();
    await new Promise<void>((resolve) => s.listen(0, '127.0.0.1', resolve));
    const { port } = s.address() as AddressInfo;
    await new Promise<void>((resolve) => s.close(() => resolve()));
    return port;
  }

  function start(env: Record<string, string>) {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
      env: { ...process.env, ...env, DIR: dir, TOKEN_SHA256, NAMESPACE: 'default' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push(child);
    let stderr = '';
    child.stderr!.on('data', (d: Buffer) => {
      stderr += d.toString();
    });
    const lines = createInterface({ input: child.stdout! });
    const url = new Promise<string>((resolve, reject) => {
      lines.on('line', (line) => {
        const msg = JSON.parse(line) as { url?: string };
        if (msg.url) resolve(msg.url);
      });
      child.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
    });
    const firstRequest = new Promise<void>((resolve) => {
      lines.on('line', (line) => {
        if ((JSON.parse(line) as { request?: string }).request) resolve();
      });
    });
    return { child, url, firstRequest };
  }

  it('the batch in flight when the server dies is retried on the restarted server and round-trips', async () => {
    const port = await freePort();
    const env = { PORT: String(port), KEK: generateKekBase64() };
    const first = start(env);
    const url = await first.url;
    let restarted: Promise<unknown> | undefined;
    const sleeps: number[] = [];
    const codec = new RemoteCodec({
      endpoint: url,
      namespace: 'default',
      token: TOKEN,
      // The backoff waits for the restart instead of sleeping.
      sleep: async (ms) => {
        sleeps.push(ms);
        await restarted;
      },
    });
    try {
      const warm = await codec.encode([{ metadata: {}, data: Buffer.from('warm-up') }]);
      expect(warm).toHaveLength(1);
      // Second server generation holds its first request: kill the first, start one that holds.
      first.child.kill('SIGKILL');
      await new Promise((resolve) => first.child.once('exit', resolve));
      const holding = start({ ...env, HOLD: '1' });
      await holding.url;
      const batch = Array.from({ length: 50 }, (_, i) => ({
        metadata: { encoding: Buffer.from('json/plain') },
        data: Buffer.from(JSON.stringify({ i })),
      }));
      const pending = codec.encode(batch);
      await holding.firstRequest; // the batch is inside the server now
      let restart!: (url: Promise<string>) => void;
      restarted = new Promise<string>((resolve) => {
        restart = (url) => resolve(url);
      });
      holding.child.kill('SIGKILL');
      await new Promise((resolve) => holding.child.once('exit', resolve));
      restart(start(env).url); // same port, same keystore and KEK
      const encoded = await pending;
      expect(encoded).toHaveLength(50);
      expect(sleeps.length).toBeGreaterThanOrEqual(1);
      const decoded = await codec.decode([...warm, ...encoded]);
      expect(Buffer.from(decoded[0]!.data!).toString()).toBe('warm-up');
      expect(decoded.slice(1).map((p) => JSON.parse(Buffer.from(p.data!).toString()))).toEqual(
        batch.map((_, i) => ({ i })),
      );
    } finally {
      codec.close();
    }
  }, 60_000);
});

describe('Worker.runReplayHistory with the remote codec (no Temporal server)', () => {
  it('replays a history whose payloads the remote codec encrypted, and fails once its key is deprecated on the server', async () => {
    const server = await serve(['default']);
    const codec = new RemoteCodec({
      endpoint: server.url,
      namespace: 'default',
      token: TOKEN,
      sleep: noSleep,
    });
    try {
      const converter = loadDataConverter({ payloadCodecs: [codec] });
      const history = proto.temporal.api.history.v1.History.fromObject({
        events: [
          {
            eventId: 1,
            eventTime: { seconds: 1_767_225_600 + 1 },
            eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_STARTED',
            workflowExecutionStartedEventAttributes: {
              workflowType: { name: 'greet' },
              taskQueue: { name: 'remote' },
              input: { payloads: await encodeToPayloads(converter, 'Ada Lovelace') },
              workflowTaskTimeout: { seconds: 10 },
              originalExecutionRunId: 'run-1',
              firstExecutionRunId: 'run-1',
              attempt: 1,
            },
          },
          {
            eventId: 2,
            eventTime: { seconds: 1_767_225_600 + 2 },
            eventType: 'EVENT_TYPE_WORKFLOW_TASK_SCHEDULED',
            workflowTaskScheduledEventAttributes: { taskQueue: { name: 'remote' }, attempt: 1 },
          },
          {
            eventId: 3,
            eventTime: { seconds: 1_767_225_600 + 3 },
            eventType: 'EVENT_TYPE_WORKFLOW_TASK_STARTED',
            workflowTaskStartedEventAttributes: { scheduledEventId: 2 },
          },
          {
            eventId: 4,
            eventTime: { seconds: 1_767_225_600 + 4 },
            eventType: 'EVENT_TYPE_WORKFLOW_TASK_COMPLETED',
            workflowTaskCompletedEventAttributes: { scheduledEventId: 2, startedEventId: 3 },
          },
          {
            eventId: 5,
            eventTime: { seconds: 1_767_225_600 + 5 },
            eventType: 'EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED',
            workflowExecutionCompletedEventAttributes: {
              result: { payloads: await encodeToPayloads(converter, 'Hello, Ada Lovelace') },
              workflowTaskCompletedEventId: 4,
            },
          },
        ],
      });
      const before = server.stats.requests.length;
      const options = {
        workflowsPath: fileURLToPath(new URL('./fixtures/remote-workflows.ts', import.meta.url)),
        dataConverter: { payloadCodecs: [codec] },
      };
      await Worker.runReplayHistory(options, history, 'replayed');
      // The worker decoded the input (and encoded its result) through the codec server.
      const used = server.stats.requests.slice(before).map((r) => r.url);
      expect(used).toContain('/decode');
      // Without the key, the input cannot be decoded: the replay fails.
      await server.keyring.rotate('default');
      await server.keyring.setState('default', 1, 'deprecated');
      const failure = await Worker.runReplayHistory(options, history, 'replayed').catch((e: unknown) => e);
      // The server's typed error reached the worker, which failed the workflow task with it.
      expect(String((failure as Error).message)).toContain(
        'KeyVersionDeprecatedError: key version 1 of namespace',
      );
    } finally {
      codec.close();
      await server.close();
    }
  }, 120_000);
});
