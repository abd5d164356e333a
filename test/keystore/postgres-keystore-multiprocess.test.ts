/**
 * Several processes on one PostgreSQL keystore, as in production: two codec servers (the real
 * `serve` command) and three worker-like processes (Keyring + UsageMeter + EncryptionCodec), while
 * this process rotates the key. Every payload any worker wrote decodes on either server, and the
 * shared usage counts add up across processes.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { parsePayloadsBody } from '../../codec-server/payload-json.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

type Json = Record<string, unknown>;
type WirePayload = { metadata?: Record<string, string>; data?: string };

/** A child process speaking JSON lines; killed at the end of the file whatever happens. */
class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly #lines: Json[] = [];
  readonly #waiters: (() => void)[] = [];
  stderr = '';
  exited: Promise<number | null>;

  constructor(args: string[], env: NodeJS.ProcessEnv) {
    this.proc = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, ...env } });
    this.proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    createInterface({ input: this.proc.stdout }).on('line', (line) => {
      try {
        this.#lines.push(JSON.parse(line) as Json);
      } catch {
        return;
      }
      for (const w of this.#waiters.splice(0)) w();
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    children.push(this);
  }

  /** The next line (from the start, or after the last one taken) that matches. */
  async take(match: (line: Json) => boolean, what: string): Promise<Json> {
    const deadline = Date.now() + 45_000;
    for (;;) {
      const i = this.#lines.findIndex(match);
      if (i >= 0) return this.#lines.splice(0, i + 1).at(-1)!;
      if (this.proc.exitCode !== null) throw new Error(`child exited before ${what}: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        this.#waiters.push(resolve);
        setTimeout(resolve, 1_000).unref();
      });
    }
  }

  send(obj: Json): void {
    this.proc.stdin.write(`${JSON.stringify(obj)}\n`);
  }
}

const children: Child[] = [];
let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  for (const c of children) if (c.proc.exitCode === null) c.proc.kill('SIGKILL');
  await server?.stop();
});

describe('PostgreSQL keystore shared by several processes', () => {
  it('two codec servers and three workers stay consistent across a rotation', async () => {
    const url = await server.newDatabase('multi');
    const kek = randomBytes(32).toString('base64');
    const admin = await openKeyring({ keystore: url, kek: { type: 'base64', value: kek }, meter: false });
    try {
      await admin.keyring.createNamespace('orders');

      const servers = [0, 1].map(
        () =>
          new Child(['src/cli/main.ts', 'serve', '--dev', '--port', '0'], {
            TEMPORAL_KEYRING_KEYSTORE: url,
            TEMPORAL_KEYRING_KEK: kek,
          }),
      );
      const workers = [0, 1, 2].map(
        (i) =>
          new Child(['test/fixtures/pg-worker.ts'], {
            TK_PG_URL: url,
            TK_KEK: kek,
            TK_NAMESPACE: 'orders',
            TK_WORKER: `w${i}`,
          }),
      );
      const urls = await Promise.all(
        servers.map(
          async (s) => (await s.take((l) => l.msg === 'codec server listening', 'listening')).url as string,
        ),
      );
      await Promise.all(workers.map((w) => w.take((l) => l.ready === true, 'worker ready')));

      const written: { payload: WirePayload; version: number; plain: unknown }[] = [];
      const sent = new Map<Child, number>();
      const encode = async (w: Child, n: number) => {
        const first = sent.get(w) ?? 0;
        sent.set(w, first + n);
        w.send({ encode: n });
        const reply = await w.take((l) => Array.isArray(l.payloads), 'encoded payloads');
        const payloads = reply.payloads as WirePayload[];
        const versions = reply.versions as number[];
        for (const [i, payload] of payloads.entries()) {
          written.push({
            payload,
            version: versions[i]!,
            plain: { worker: `w${workers.indexOf(w)}`, n: first + i },
          });
        }
        return versions;
      };

      for (const w of workers) expect(await encode(w, 4)).toEqual([1, 1, 1, 1]);
      await admin.keyring.rotate('orders');
      // Each worker hears of version 2 by NOTIFY (its 30 s poll is far away).
      for (const w of workers) {
        await vi.waitFor(async () => expect((await encode(w, 1))[0]).toBe(2), {
          timeout: 15_000,
          interval: 50,
        });
      }
      for (const w of workers) expect(await encode(w, 4)).toEqual([2, 2, 2, 2]);

      const post = async (base: string, op: 'encode' | 'decode', payloads: WirePayload[]) => {
        const res = await fetch(`${base}/orders/${op}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ payloads }),
        });
        expect(res.status, await res.clone().text()).toBe(200);
        return ((await res.json()) as { payloads: WirePayload[] }).payloads;
      };
      // Every payload decodes on both servers, whichever key version wrote it.
      const all = written.map((w) => w.payload);
      for (const base of urls) {
        const decoded = parsePayloadsBody({ payloads: await post(base, 'decode', all) });
        expect(decoded.map((p) => defaultPayloadConverter.fromPayload(p))).toEqual(
          written.map((w) => w.plain),
        );
      }
      // One server encodes, the other decodes.
      const plain = [
        {
          metadata: { encoding: Buffer.from('json/plain').toString('base64') },
          data: Buffer.from('"hi"').toString('base64'),
        },
      ];
      const viaA = await post(urls[0]!, 'encode', plain);
      expect(await post(urls[1]!, 'decode', viaA)).toEqual(plain);

      // Exact counts reach the database when processes close (workers flush, servers on SIGTERM).
      for (const w of workers) w.send({ exit: true });
      for (const s of servers) s.proc.kill('SIGTERM');
      expect(await Promise.all([...workers, ...servers].map((c) => c.exited))).toEqual([0, 0, 0, 0, 0]);
      const v1 = written.filter((w) => w.version === 1).length;
      const v2 = written.filter((w) => w.version === 2).length;
      const usage1 = await admin.keystore.getUsage('orders', 1);
      const usage2 = await admin.keystore.getUsage('orders', 2);
      expect(usage1.used).toBe(v1);
      expect(usage2.used).toBe(v2 + 1);
      expect(usage1.reserved).toBeGreaterThanOrEqual(usage1.used);
      expect(usage2.reserved).toBeGreaterThanOrEqual(usage2.used);
    } finally {
      await admin.close();
    }
  });
});
