/**
 * A server process for the server benchmark (bench/suites/server.ts), run with
 * `node --import tsx bench/suites/server-child.ts <codec|baseline>` and an IPC channel:
 * - `codec`: the real codec server (`startServer`) as deployed: Keyring with a UsageMeter, static
 *   token auth (TOKEN_SHA256), CORS, Prometheus metrics with the default process metrics, and
 *   access + audit logs at info level (to /dev/null, so their cost is paid but not stored).
 * - `codec-nolog`: `codec` with its logger at `silent`: everything but the log line.
 * - `codec-bare`: the codec server's own route (codec-route.ts: namespace, content type, body
 *   reader, payload JSON mapping, `EncryptionCodec` on the default engine, the answer as one
 *   string) behind its CORS on node:http, with auth, logs and metrics taken out (anyone may
 *   decode, no request log, a payload counter that counts nothing): codec / codec-bare is what
 *   those cost.
 * - `baseline`: the least a decoding server can do: the same node:http, CORS and body reader, and
 *   raw node:crypto AES-256-GCM (iv(12) || ciphertext || tag(16)) on each payload's data:
 *   codec-bare / baseline is what the message format and the codec cost.
 * - `sample`: what the official samples-typescript `encryption` codec server does (Express, `cors`,
 *   `express.json`, WebCrypto AES-GCM over the whole serialized payload; no auth, logs or
 *   metrics), written from its description: bench/lib/sample-codec.ts.
 * - `serve` and `serve-workers`: the CLI as a user runs it, `temporal-keyring serve --config ...`
 *   with `--workers 1` and `--workers 2`: a file keystore in a temporary directory, the KEK from
 *   `TEMPORAL_KEYRING_KEK_FILE`, a static token, metrics, the rotator, and the log lines on stdout
 *   (read and dropped here, as a log shipper would). This process only sets it up and reports the
 *   CPU time and RSS of the whole process tree (primary and workers, from /proc; Linux only).
 * All listen on 127.0.0.1 (free port) and send `{ url, bodies }` over IPC, where `bodies[n]` is a
 * `/decode` request body of n encrypted 1 KiB payloads. They answer the message `cpu` with
 * `process.cpuUsage()` (and `memory` with `process.memoryUsage()`), and exit when the parent goes away (or after 30 minutes).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import cors from 'cors';
import express, { type Request, type Response } from 'express';
import pino from 'pino';
import { anonymousIdentity } from '../../codec-server/auth/authenticator.ts';
import { codecRoute } from '../../codec-server/codec-route.ts';
import { corsMiddleware } from '../../codec-server/cors.ts';
import { jsonBodyReader } from '../../codec-server/json-body.ts';
import { startServer } from '../../codec-server/main.ts';
import { Metrics } from '../../codec-server/metrics.ts';
import { payloadsToBody } from '../../codec-server/payload-json.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { UsageMeter } from '../../src/rotation/usage-meter.ts';
import { payloads } from '../lib/fixtures.ts';
import {
  SampleEquivalentCodec,
  type SampleJsonPayload,
  sampleFromJson,
  sampleToJson,
} from '../lib/sample-codec.ts';

/** Run before this process exits: stopping and removing what a mode started (bounded to 10 s). */
const cleanups: (() => Promise<void>)[] = [];
async function exit(): Promise<never> {
  setTimeout(() => process.exit(0), 10_000).unref();
  await Promise.allSettled(cleanups.map((c) => c()));
  process.exit(0);
}
setTimeout(exit, 30 * 60_000).unref();
process.on('disconnect', exit);
// The suite stops its servers with SIGTERM: stop a `serve` tree too, or it would outlive the bench.
process.on('SIGTERM', exit);
process.on('SIGINT', exit);
/** The CLI server of `serve` modes, whose process tree is measured instead of this process. */
let measured: { pid: number } | undefined;
process.on('message', (m) => {
  if (m === 'cpu') process.send!(measured ? treeCpu(measured.pid) : process.cpuUsage());
  if (m === 'memory')
    process.send!(measured ? { rss: treeRss(measured.pid), heapUsed: null } : process.memoryUsage());
});

export const BENCH_ORIGIN = 'http://localhost:8233';
/** The token the parent sends (its SHA-256 in TOKEN_SHA256), in both codec servers' config. */
const BENCH_TOKEN = {
  name: 'bench',
  sha256: process.env.TOKEN_SHA256!,
  namespaces: ['*'],
  operations: ['encode', 'decode'],
};
const BATCHES = [1, 20];
const SIZE = 1024;
const mode = process.argv[2];

async function codecServer(
  level: pino.Level | 'silent',
): Promise<{ url: string; bodies: Record<number, string> }> {
  const keystore = new MemoryKeystore();
  const meter = new UsageMeter({ keystore });
  const keyring = await Keyring.open({ keystore, kek: new LocalKek(randomBytes(32)), meter });
  await keyring.createNamespace('default');
  const config = parseServerConfig({
    host: '127.0.0.1',
    port: 0,
    cors: { origins: [BENCH_ORIGIN] },
    auth: {
      tokens: [BENCH_TOKEN],
    },
    metrics: { enabled: true },
  });
  const logger = pino({ level }, pino.destination({ dest: '/dev/null', sync: false }));
  const server = await startServer({ config, keyring, logger });
  const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
  const bodies: Record<number, string> = {};
  for (const n of BATCHES) bodies[n] = JSON.stringify(payloadsToBody(await codec.encode(payloads(SIZE, n))));
  return { url: server.url, bodies };
}

/** A node:http server on a free loopback port, whose every request goes to `handler`. */
async function listen(
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void,
): Promise<string> {
  const server = http.createServer(handler).listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/**
 * The request path both bare servers share with the codec server's lean path: CORS, the JSON body
 * reader, and the answer written as one string. `decode` maps the parsed body to the answer.
 */
function barePath(decode: (body: unknown) => Promise<string>) {
  const cors = corsMiddleware(parseServerConfig({ dev: true, cors: { origins: [BENCH_ORIGIN] } }).cors);
  const readBody = jsonBodyReader(8 * 1024 * 1024);
  return (req: http.IncomingMessage, res: http.ServerResponse) => {
    cors(req as Request, res as Response, () => undefined);
    readBody(req, res)
      .then(decode)
      .then(
        (body) => {
          res.writeHead(200, {
            'Content-Type': 'application/json; charset=utf-8',
            'Content-Length': Buffer.byteLength(body),
          });
          res.end(body);
        },
        () => {
          res.statusCode = 500;
          res.end();
        },
      );
  };
}

async function baselineServer(): Promise<{ url: string; bodies: Record<number, string> }> {
  const key = randomBytes(32);
  const plainEncoding = Buffer.from('json/plain').toString('base64');
  const url = await listen(
    barePath(async (body) => {
      const input = (body as { payloads: { data: string }[] }).payloads;
      const output = input.map((p) => {
        const sealed = Buffer.from(p.data, 'base64');
        const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
        decipher.setAuthTag(sealed.subarray(sealed.length - 16));
        const plain = Buffer.concat([
          decipher.update(sealed.subarray(12, sealed.length - 16)),
          decipher.final(),
        ]);
        return { metadata: { encoding: plainEncoding }, data: plain.toString('base64') };
      });
      return JSON.stringify({ payloads: output });
    }),
  );
  const encrypted = Buffer.from('binary/encrypted').toString('base64');
  const bodies: Record<number, string> = {};
  for (const n of BATCHES) {
    const list = payloads(SIZE, n).map((p) => {
      const iv = randomBytes(12);
      const cipher = createCipheriv('aes-256-gcm', key, iv);
      const ct = Buffer.concat([cipher.update(p.data!), cipher.final()]);
      return {
        metadata: { encoding: encrypted },
        data: Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64'),
      };
    });
    bodies[n] = JSON.stringify({ payloads: list });
  }
  return { url, bodies };
}

async function bareCodecServer(): Promise<{ url: string; bodies: Record<number, string> }> {
  const keystore = new MemoryKeystore();
  const keyring = await Keyring.open({
    keystore,
    kek: new LocalKek(randomBytes(32)),
    meter: new UsageMeter({ keystore }),
  });
  await keyring.createNamespace('default');
  const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
  // The codec server's own route, with auth, logs and metrics taken out: anyone may decode, no
  // request log runs, and the payload counter counts nothing.
  const metrics = new Metrics();
  (metrics as { payloads: unknown }).payloads = { labels: () => ({ inc() {} }) };
  const route = codecRoute({
    keyring,
    config: { dev: false, pathPrefix: '' },
    auth: { authenticate: async () => anonymousIdentity },
    metrics,
    assertUnsealed() {},
    codecFor: (namespace) => new EncryptionCodec({ namespace, keys: keyring }),
    readBody: jsonBodyReader(8 * 1024 * 1024),
  });
  const cors = corsMiddleware(parseServerConfig({ dev: true, cors: { origins: [BENCH_ORIGIN] } }).cors);
  const url = await listen((req, res) => {
    cors(req as Request, res as Response, () => undefined);
    const target = route.match(req);
    if (!target) {
      res.statusCode = 404;
      res.end();
      return;
    }
    route.handle(req, res, target).catch(() => {
      res.statusCode = 500;
      res.end();
    });
  });
  const bodies: Record<number, string> = {};
  for (const n of BATCHES) bodies[n] = JSON.stringify(payloadsToBody(await codec.encode(payloads(SIZE, n))));
  return { url, bodies };
}

async function sampleServer(): Promise<{ url: string; bodies: Record<number, string> }> {
  const codec = await SampleEquivalentCodec.create(randomBytes(32));
  const app = express();
  app.use(cors({ origin: [BENCH_ORIGIN], allowedHeaders: ['x-namespace', 'content-type'] }));
  app.use(express.json());
  app.post('/decode', async (req, res) => {
    const input = (req.body as { payloads: SampleJsonPayload[] }).payloads.map(sampleFromJson);
    res.json({ payloads: (await codec.decode(input)).map(sampleToJson) });
  });
  const server = app.listen(0, '127.0.0.1');
  await new Promise<void>((resolve, reject) => server.once('listening', resolve).once('error', reject));
  const bodies: Record<number, string> = {};
  for (const n of BATCHES) {
    bodies[n] = JSON.stringify({ payloads: (await codec.encode(payloads(SIZE, n))).map(sampleToJson) });
  }
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, bodies };
}

/**
 * `temporal-keyring serve --workers <workers>` from this checkout's bin, on a file keystore made
 * here. The request bodies are encoded here with the same keystore and KEK before it starts.
 */
async function cliServer(workers: number): Promise<{ url: string; bodies: Record<number, string> }> {
  const dir = mkdtempSync(join(tmpdir(), 'tk-bench-serve-'));
  let serve: ChildProcess | undefined;
  cleanups.push(async () => {
    if (serve && serve.exitCode === null && serve.signalCode === null) {
      const exited = new Promise((resolve) => serve!.once('exit', resolve));
      serve.kill('SIGTERM'); // drains every worker, then the primary exits
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  });
  const kek = randomBytes(32);
  const kekFile = join(dir, 'kek.b64');
  writeFileSync(kekFile, `${kek.toString('base64')}\n`, { mode: 0o600 });
  const keystore = join(dir, 'keys');
  const opened = await openKeyring({ keystore, kek: new LocalKek(kek), createIfMissing: true });
  const bodies: Record<number, string> = {};
  try {
    await opened.keyring.createNamespace('default');
    const codec = new EncryptionCodec({ namespace: 'default', keys: opened.keyring });
    for (const n of BATCHES)
      bodies[n] = JSON.stringify(payloadsToBody(await codec.encode(payloads(SIZE, n))));
  } finally {
    await opened.close();
  }
  const config = join(dir, 'config.json');
  const server = {
    host: '127.0.0.1',
    port: 0,
    auth: { tokens: [BENCH_TOKEN] },
    cors: { origins: [BENCH_ORIGIN] },
  };
  writeFileSync(config, JSON.stringify({ keystore, server }));
  const bin = fileURLToPath(new URL('../../bin/temporal-keyring.js', import.meta.url));
  serve = spawn(process.execPath, [bin, 'serve', '--config', config, '--workers', String(workers)], {
    env: { ...process.env, TEMPORAL_KEYRING_KEK_FILE: kekFile },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  measured = { pid: serve.pid! };
  const lines = createInterface({ input: serve.stdout! });
  const url = await new Promise<string>((resolve, reject) => {
    serve!.once('exit', (code) => reject(new Error(`serve exited (${code})`)));
    let listening = 0;
    lines.on('line', (line) => {
      // Every worker logs that it listens (on the port they share): ready when all have.
      const entry = line.startsWith('{') ? (JSON.parse(line) as { msg?: string; url?: string }) : {};
      if (entry.msg === 'codec server listening' && ++listening === workers) resolve(entry.url!);
    });
  });
  return { url, bodies };
}

/** CPU time of `pid` and its children (cluster workers), as `process.cpuUsage()` gives it: µs. */
function treeCpu(pid: number): NodeJS.CpuUsage {
  let user = 0;
  let system = 0;
  const tick = 1e6 / 100; // USER_HZ: 100 on Linux
  for (const stat of treeStats(pid)) {
    user += Number(stat[11]) * tick;
    system += Number(stat[12]) * tick;
  }
  return { user, system };
}

/** Resident set size of `pid` and its children, in bytes. */
function treeRss(pid: number): number {
  return treeStats(pid).reduce((sum, stat) => sum + Number(stat[21]) * 4096, 0);
}

/** `/proc/<pid>/stat` fields after the command name (field 3 onwards) of `pid` and its children. */
function treeStats(pid: number): string[][] {
  const out: string[][] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^[0-9]+$/.test(entry)) continue;
    let fields: string[];
    try {
      const text = readFileSync(`/proc/${entry}/stat`, 'utf8');
      fields = text.slice(text.lastIndexOf(')') + 2).split(' ');
    } catch {
      continue; // gone meanwhile
    }
    if (Number(entry) === pid || Number(fields[1]) === pid) out.push(fields);
  }
  return out;
}

const servers = {
  serve: () => cliServer(1),
  'serve-workers': () => cliServer(2),
  codec: () => codecServer('info'),
  'codec-nolog': () => codecServer('silent'),
  'codec-bare': bareCodecServer,
  baseline: baselineServer,
  sample: sampleServer,
} as const;
const ready = await servers[mode as keyof typeof servers]();
process.send!({ ready });
