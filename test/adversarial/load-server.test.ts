/**
 * Load suite: a real codec server process (fixtures/server-child.ts: startServer, file keystore,
 * usage meter, token auth, metrics, audit) under bounded sustained load on loopback: concurrent
 * encode → decode loops over several namespaces with payloads of mixed sizes, re-decoding of older
 * payloads, and key rotations (immediate and two-phase) through the admin API while it runs.
 * Checks: not one error (every answer 200, every payload decodes to its input), and memory flat:
 * RSS and live heap (after a full GC in the server), read from its own `/metrics`, grow by less
 * than 50% over the second half of the run (a leak check, not a speed check).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../support/temp-dir.ts';

const CHILD = fileURLToPath(new URL('./fixtures/server-child.ts', import.meta.url));
const NAMESPACES = ['orders', 'billing', 'shipping'];
const TOKEN = randomBytes(24).toString('base64url');
const SECONDS = Number(process.env.LOAD_SECONDS ?? 30);
const CONCURRENCY = 8;
/** Rotate one namespace after every this many completed encode/decode pairs. */
const ROTATE_EVERY = 60;

type WirePayload = { metadata: Record<string, string>; data: string };

let dir: string;
let child: ChildProcess;
let url: string;
let stderr = '';
const gcWaiters: (() => void)[] = [];
beforeAll(async () => {
  dir = await tempDir('tk-load-');
  child = spawn(process.execPath, ['--expose-gc', '--import', 'tsx', CHILD], {
    env: {
      ...process.env,
      DIR: join(dir, 'store'),
      LOG_FILE: join(dir, 'server.log'),
      NAMESPACES: NAMESPACES.join(','),
      TOKEN_SHA256: createHash('sha256').update(TOKEN).digest('hex'),
      LIMIT_MS: String((SECONDS + 120) * 1000),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  url = await new Promise<string>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      const msg = JSON.parse(line) as { url?: string; gc?: boolean };
      if (msg.url) resolve(msg.url);
      if (msg.gc) for (const w of gcWaiters.splice(0)) w();
    });
    child.once('exit', (code) => reject(new Error(`server exited (${code}): ${stderr}`)));
  });
}, 60_000);
afterAll(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGTERM');
    const limit = setTimeout(() => child.kill('SIGKILL'), 15_000);
    await exited;
    clearTimeout(limit);
  }
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

function plainPayloads(count: number): WirePayload[] {
  return Array.from({ length: count }, () => {
    // Mostly small, sometimes 16 KiB: what workflow histories hold.
    const size = Math.random() < 0.1 ? 16 * 1024 : 16 + Math.floor(Math.random() * 2048);
    return {
      metadata: { encoding: Buffer.from('binary/plain').toString('base64') },
      data: randomBytes(size).toString('base64'),
    };
  });
}

/** Says why the server stopped answering, if it did: its exit and the end of its stderr. */
function serverState(): string {
  const exit = child.exitCode ?? child.signalCode ?? 'running';
  let log = '';
  try {
    log = readFileSync(join(dir, 'server.log'), 'utf8').slice(-2000);
  } catch {}
  return `server ${child.pid} ${exit}; stderr: ${stderr.slice(-2000) || '(empty)'}; log: ${log || '(empty)'}`;
}

async function post(path: string, body: unknown): Promise<{ status: number; json: Record<string, unknown> }> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${TOKEN}`, 'content-type': 'application/json' },
    body: JSON.stringify(body),
  }).catch(async (error: unknown) => {
    await new Promise((resolve) => setTimeout(resolve, 200)); // let a dead server's exit arrive
    throw new Error(`POST ${path}: ${String(error)} (${serverState()})`, { cause: error });
  });
  return { status: res.status, json: (await res.json()) as Record<string, unknown> };
}

/** RSS and live heap of the server process (after a full GC), from its Prometheus endpoint. */
async function serverMemory(): Promise<{ rss: number; heap: number }> {
  const collected = new Promise<void>((resolve) => gcWaiters.push(resolve));
  child.kill('SIGUSR2');
  await collected;
  const text = await (await fetch(`${url}/metrics`)).text();
  const read = (name: string) => {
    const line = text.split('\n').find((l) => l.startsWith(`temporal_keyring_${name} `));
    if (!line) throw new Error(`metric ${name} missing`);
    return Number(line.split(' ')[1]);
  };
  return { rss: read('process_resident_memory_bytes'), heap: read('nodejs_heap_size_used_bytes') };
}

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

describe('codec server under sustained load', () => {
  it(
    'answers every request right through rotations, with flat memory',
    async () => {
      const failures: string[] = [];
      const fail = (what: string) => {
        if (failures.length < 20) failures.push(what);
      };
      const old: { ns: string; plain: WirePayload[]; encoded: WirePayload[] }[] = [];
      let pairs = 0;
      let payloads = 0;
      let oldDecodes = 0;
      let rotations = 0;
      let rotating: Promise<void> = Promise.resolve();

      const rotate = (n: number) => {
        const ns = NAMESPACES[n % NAMESPACES.length]!;
        const mode = n % 2 === 0 ? 'immediate' : 'prepublish';
        rotating = rotating.then(async () => {
          // force: activate a prepublished version at once; one server process, nothing to propagate to.
          const { status, json } = await post(`/admin/namespaces/${ns}/keys/rotate`, { mode, force: true });
          if (status !== 200) fail(`rotate ${ns} ${mode}: ${status} ${JSON.stringify(json)}`);
          else rotations++;
        });
      };

      const deadline = Date.now() + SECONDS * 1000;
      const memory: { at: number; rss: number; heap: number }[] = [];
      const sampler = (async () => {
        while (Date.now() < deadline) {
          memory.push({ at: Date.now(), ...(await serverMemory()) });
          await new Promise((resolve) => setTimeout(resolve, 1_000));
        }
      })();

      const loop = async (id: number) => {
        for (let i = 0; Date.now() < deadline && failures.length === 0; i++) {
          const ns = NAMESPACES[(id + i) % NAMESPACES.length]!;
          const plain = plainPayloads(1 + ((id * 7 + i) % 5));
          const enc = await post(`/${ns}/encode`, { payloads: plain });
          if (enc.status !== 200) {
            fail(`encode ${ns}: ${enc.status} ${JSON.stringify(enc.json)}`);
            break;
          }
          const encoded = enc.json.payloads as WirePayload[];
          const dec = await post(`/${ns}/decode`, { payloads: encoded });
          if (dec.status !== 200) fail(`decode ${ns}: ${dec.status} ${JSON.stringify(dec.json)}`);
          else if (JSON.stringify(dec.json.payloads) !== JSON.stringify(plain))
            fail(`decode ${ns}: wrong payloads`);
          payloads += plain.length;
          if (++pairs % ROTATE_EVERY === 0) rotate(pairs / ROTATE_EVERY);
          // Keep a bounded sample of earlier payloads, and decode one of them now and then: by the
          // end they span many key versions.
          if (old.length < 200) old.push({ ns, plain, encoded });
          else if (i % 4 === 0) old[Math.floor(Math.random() * old.length)] = { ns, plain, encoded };
          if (i % 3 === 0 && old.length > 0) {
            const o = old[Math.floor(Math.random() * old.length)]!;
            const again = await post(`/${o.ns}/decode`, { payloads: o.encoded });
            oldDecodes++;
            if (again.status !== 200 || JSON.stringify(again.json.payloads) !== JSON.stringify(o.plain)) {
              fail(`re-decode ${o.ns}: ${again.status} ${JSON.stringify(again.json).slice(0, 300)}`);
            }
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, (_, id) => loop(id)));
      await rotating;
      await sampler;

      const summary = { pairs, payloads, oldDecodes, rotations, samples: memory.length };
      if (process.env.SHOW_NUMBERS) {
        const mib = (b: number) => Math.round(b / 2 ** 20);
        console.log(summary, memory.map((m) => `${mib(m.rss)}/${mib(m.heap)}`).join(' '));
      }
      expect(failures).toEqual([]);
      expect(rotations).toBeGreaterThanOrEqual(3);
      expect(memory.length).toBeGreaterThanOrEqual(8);

      // Warm-up is the first half; over the second half, compare its last third with its first.
      const second = memory.slice(Math.floor(memory.length / 2));
      const third = Math.max(1, Math.floor(second.length / 3));
      for (const field of ['rss', 'heap'] as const) {
        const early = median(second.slice(0, third).map((m) => m[field]));
        const late = median(second.slice(-third).map((m) => m[field]));
        expect(late / early, `${field} growth over the second half`).toBeLessThan(1.5);
      }
    },
    (SECONDS + 90) * 1000,
  );
});
