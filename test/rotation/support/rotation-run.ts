/**
 * A rotation run with real processes: codec servers (`temporal-keyring serve`) on one keystore,
 * keep-alive clients encoding batches as fast as the servers answer, and a sampler that records
 * every version's reserved count and state. What the rotation tests and docs/rotation.md measure.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:http';
import { join, resolve } from 'node:path';
import type { Keystore } from '../../../src/keystore/keystore.ts';
import type { KeyVersion } from '../../../src/model/key-version.ts';

const ROOT = resolve(import.meta.dirname, '../../..');
const CLI = join(ROOT, 'cli/main.ts');

export interface Server {
  name: string;
  child: ChildProcess;
  lines: string[];
  url: string;
  exited: Promise<number | null>;
}

/** Starts `temporal-keyring serve` with a config file; resolves once it listens. */
export async function startServer(
  name: string,
  configPath: string,
  kek: string,
  extra: string[] = [],
): Promise<Server> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', CLI, 'serve', '--config', configPath, '--port', '0', '--log-level', 'info', ...extra],
    {
      cwd: ROOT,
      env: { ...process.env, TEMPORAL_KEYRING_KEK: kek, TEMPORAL_KEYRING_DEV: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const lines: string[] = [];
  let partial = '';
  const collect = (chunk: Buffer) => {
    const text = partial + chunk.toString('utf8');
    const parts = text.split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts.filter(Boolean));
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  const kill = setTimeout(() => child.kill('SIGKILL'), 240_000);
  const exited = new Promise<number | null>((done) =>
    child.on('exit', (code) => {
      clearTimeout(kill);
      done(code);
    }),
  );
  for (;;) {
    const line = lines.find((l) => l.includes('codec server listening'));
    if (line) return { name, child, lines, url: (JSON.parse(line) as { url: string }).url, exited };
    const more = await Promise.race([
      exited.then(() => 'exited'),
      new Promise((r) => child.stdout!.once('data', r)).then(() => 'more'),
    ]);
    if (more === 'exited') throw new Error(`server ${name} exited: ${lines.join('\n')}`);
  }
}

export async function stopServer(s: Server): Promise<void> {
  s.child.kill('SIGTERM');
  await s.exited;
}

/** What one /encode answered. */
export interface EncodeResult {
  server: string;
  startedAt: number;
  endedAt: number;
  status: number;
  /** Key version the payloads were encrypted under (format 1 names it in metadata). */
  version: number | undefined;
  code: string | undefined;
}

const PAYLOAD = {
  metadata: { encoding: Buffer.from('json/plain').toString('base64') },
  data: Buffer.from(JSON.stringify({ filler: 'x'.repeat(180) })).toString('base64'),
};

/** POSTs one batch of `batch` payloads to `server/namespace/encode` over a keep-alive agent. */
function encodeOnce(server: Server, agent: Agent, namespace: string, batch: number): Promise<EncodeResult> {
  const body = JSON.stringify({ payloads: Array.from({ length: batch }, () => PAYLOAD) });
  const startedAt = Date.now();
  return new Promise((done) => {
    const req = request(
      `${server.url}/${namespace}/encode`,
      { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const endedAt = Date.now();
          let version: number | undefined;
          let code: string | undefined;
          try {
            const parsed = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
              payloads?: { metadata: Record<string, string> }[];
              code?: string;
            };
            code = parsed.code;
            const keyId = parsed.payloads?.[0]?.metadata['encryption-key-id'];
            if (keyId) version = Number(/\/v(\d+)$/.exec(Buffer.from(keyId, 'base64').toString())?.[1]);
          } catch {
            // recorded as a failure by its status
          }
          done({ server: server.name, startedAt, endedAt, status: res.statusCode ?? 0, version, code });
        });
      },
    );
    req.on('error', () =>
      done({
        server: server.name,
        startedAt,
        endedAt: Date.now(),
        status: 0,
        version: undefined,
        code: 'ECONN',
      }),
    );
    req.end(body);
  });
}

/** Keep-alive clients, `perServer` each, encoding until `stop()` resolves. */
export function load(servers: Server[], namespace: string, options: { perServer: number; batch: number }) {
  const results: EncodeResult[] = [];
  let stopping = false;
  const agents = servers.map(() => new Agent({ keepAlive: true, maxSockets: options.perServer }));
  const loops = servers.flatMap((s, i) =>
    Array.from({ length: options.perServer }, async () => {
      while (!stopping) results.push(await encodeOnce(s, agents[i]!, namespace, options.batch));
    }),
  );
  return {
    results,
    async stop(): Promise<EncodeResult[]> {
      stopping = true;
      await Promise.all(loops);
      for (const a of agents) a.destroy();
      return results;
    },
  };
}

export interface Sample {
  at: number;
  versions: Pick<KeyVersion, 'version' | 'state' | 'createdAt' | 'activatedAt'>[];
  reserved: Record<number, number>;
}

/** Reads versions and reserved counts every `everyMs` until `stop()`. */
export function sampler(keystore: Keystore, namespace: string, everyMs = 100) {
  const samples: Sample[] = [];
  let stopping = false;
  const loop = (async () => {
    while (!stopping) {
      const versions = await keystore.getVersions(namespace);
      const reserved: Record<number, number> = {};
      for (const v of versions)
        reserved[v.version] = (await keystore.getUsage(namespace, v.version)).reserved;
      samples.push({ at: Date.now(), versions, reserved });
      await new Promise((r) => setTimeout(r, everyMs));
    }
  })();
  return {
    samples,
    async stop() {
      stopping = true;
      await loop;
      return samples;
    },
  };
}

/** The config file of a run. */
export async function writeConfig(
  path: string,
  keystore: string,
  namespaces: Record<string, object>,
  checkInterval = '5s',
): Promise<void> {
  await writeFile(
    path,
    JSON.stringify({
      keystore,
      kek: { env: 'TEMPORAL_KEYRING_KEK' },
      rotator: { checkInterval },
      namespaces: Object.fromEntries(Object.entries(namespaces).map(([ns, rotation]) => [ns, { rotation }])),
    }),
  );
}
