/**
 * Crash suite, codec server: a real server process (fixtures/server-child.ts) on the file keystore
 * and on PostgreSQL is SIGKILLed while clients encode through it and rotate keys through its admin
 * API, then restarted, several times. Afterwards every payload it ever answered 200 for decodes on
 * the restarted server to what was sent, every namespace has one active version, and the stored
 * reserved count of each version covers every encryption the server answered with.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePayloadsBody } from '../../codec-server/payload-json.ts';
import { keyVersionOf } from '../../src/codec/encryption-codec.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDir } from '../support/temp-dir.ts';

const CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url));
const NAMESPACES = ['orders', 'billing'];
const TOKEN = randomBytes(24).toString('base64url');
const KILLS = 6;
const CLIENTS = 4;

type WirePayload = { metadata: Record<string, string>; data: string };

let pgServer: TestPostgres;
let dir: string;
const children: ChildProcess[] = [];
beforeAll(async () => {
  pgServer = await startPostgres();
  dir = await tempDir('tk-crash-server-');
}, 120_000);
afterAll(async () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await pgServer?.stop();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

async function startServerProcess(
  env: Record<string, string>,
): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      ...env,
      LOG_FILE: join(dir, 'server.log'),
      NAMESPACES: NAMESPACES.join(','),
      TOKEN_SHA256: createHash('sha256').update(TOKEN).digest('hex'),
      LIMIT_MS: '120000',
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { url?: string };
      if (msg.url) resolve(msg.url);
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
  return { child, url };
}

async function post(url: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

const backends: [string, () => Promise<{ env: Record<string, string>; open: () => Promise<Keystore> }>][] = [
  [
    'file',
    async () => {
      const store = await mkdtemp(join(dir, 'store-'));
      return { env: { DIR: store }, open: () => FileKeystore.open({ dir: store }) };
    },
  ],
  [
    'postgres',
    async () => {
      const url = await pgServer.newDatabase('server');
      return { env: { PG_URL: url }, open: () => PostgresKeystore.open({ connectionString: url }) };
    },
  ],
];

describe.each(backends)('a codec server SIGKILLed under load (%s keystore)', (_name, makeBackend) => {
  it('keeps every payload it answered for, and counts every encryption', async () => {
    const backend = await makeBackend();
    const env = { ...backend.env, KEK: generateKekBase64() };
    const answered: { ns: string; plain: WirePayload[]; encoded: WirePayload[] }[] = [];
    const encryptions = new Map<string, number>();
    let rotations = 0;

    for (let kill = 0; kill < KILLS; kill++) {
      const { child, url } = await startServerProcess(env);
      const exited = new Promise((resolve) => child.once('exit', resolve));
      const killAfter = 5 + Math.floor(Math.random() * 40);
      let done = 0;
      let killed = false;
      const client = async (id: number) => {
        for (let i = 0; !killed; i++) {
          const ns = NAMESPACES[(id + i) % NAMESPACES.length]!;
          try {
            if ((id + i) % 17 === 0) {
              // force: activate a prepublished version at once; one server process, nothing to propagate to.
              const r = await post(`${url}/admin/namespaces/${ns}/keys/rotate`, {
                mode: i % 2 ? 'prepublish' : 'immediate',
                force: true,
              });
              expect(r.status).toBe(200);
              rotations++;
            }
            const plain = Array.from({ length: 1 + (i % 3) }, () => ({
              metadata: { encoding: Buffer.from('binary/plain').toString('base64') },
              data: randomBytes(64 + Math.floor(Math.random() * 512)).toString('base64'),
            }));
            const r = await post(`${url}/${ns}/encode`, { payloads: plain });
            expect(r.status, JSON.stringify(r.json)).toBe(200);
            const encoded = r.json.payloads as WirePayload[];
            answered.push({ ns, plain, encoded });
            for (const p of parsePayloadsBody({ payloads: encoded })) {
              const key = `${ns}|${keyVersionOf(p)}`;
              encryptions.set(key, (encryptions.get(key) ?? 0) + 1);
            }
          } catch (error) {
            if (killed) return; // the connection died with the server: that answer never came
            throw error;
          }
          if (++done === killAfter) {
            killed = true;
            child.kill('SIGKILL');
          }
        }
      };
      await Promise.all(Array.from({ length: CLIENTS }, (_, id) => client(id)));
      await exited;
      expect(child.signalCode).toBe('SIGKILL');
    }

    const { child, url } = await startServerProcess(env);
    try {
      for (const a of answered) {
        const r = await post(`${url}/${a.ns}/decode`, { payloads: a.encoded });
        expect(r.status, JSON.stringify(r.json)).toBe(200);
        expect(r.json.payloads).toEqual(a.plain);
      }
    } finally {
      child.kill('SIGTERM');
    }
    const keystore = await backend.open();
    try {
      for (const ns of NAMESPACES) {
        const versions = await keystore.getVersions(ns);
        expect(versions.filter((v) => v.state === 'active')).toHaveLength(1);
      }
      for (const [key, count] of encryptions) {
        const [ns, version] = key.split('|');
        expect((await keystore.getUsage(ns!, Number(version))).reserved, key).toBeGreaterThanOrEqual(count);
      }
    } finally {
      await keystore.close();
    }
    if (process.env.SHOW_NUMBERS)
      console.log({ answered: answered.length, rotations, versions: encryptions.size });
    expect(answered.length).toBeGreaterThanOrEqual(KILLS * 5);
  }, 150_000);
});
