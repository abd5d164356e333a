/**
 * Several processes on one PostgreSQL keystore, as in production: two codec servers (the real
 * `serve` command) and three worker-like processes (Keyring + UsageMeter + EncryptionCodec, see
 * test/fixtures/pg-worker.ts) encrypt all the time, while this process
 * - rotates the key three times, two-phase (prepublish, check every process can decrypt the new
 *   version, promote), through the keyring API and through the servers' admin API;
 * - watches the key table with SQL every 50 ms: a namespace never has two (nor zero) active versions;
 * - SIGKILLs a worker whose usage reservation is held inside an open transaction (a row lock);
 * - stops PostgreSQL mid-traffic and starts it again, without restarting any process.
 * Every payload any process encoded decodes in every other process, and no encryption goes
 * uncounted: the stored reserved count of each version is at least what the processes report done.
 */
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createInterface } from 'node:readline';
import { setTimeout as delay } from 'node:timers/promises';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parsePayloadsBody, payloadsToBody } from '../../codec-server/payload-json.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import type { KeyProvider } from '../../src/keyring/keyring.ts';
import { type OpenedKeyring, openKeyring } from '../../src/open-keyring.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

type Json = Record<string, unknown>;
type WirePayload = { metadata?: Record<string, string>; data?: string };
/** A payload some process encoded, with the value it must decode to. */
interface Written {
  payload: WirePayload;
  version: number;
  value: unknown;
  by: string;
}

const NS = 'orders';
/** What encode/decode may fail with while the database is down (and nothing else). */
const OUTAGE_CODES = ['ERR_KEYSTORE_UNAVAILABLE', 'ERR_USAGE_RESERVATION_FAILED'];
const STEP_MS = 45_000;

/** Polls `check` (sync or async) until it returns true; fails with `what` after `ms`. */
async function until(check: () => boolean | Promise<boolean>, what: string, ms = STEP_MS): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(25);
  }
}

/** A child process speaking JSON lines; killed at the end of the file whatever happens. */
class Child {
  readonly proc: ChildProcessWithoutNullStreams;
  readonly name: string;
  stderr = '';
  readonly exited: Promise<number | null>;
  /** Workers: their last reported exact counts per version, loop failures, reservations in flight. */
  done: Record<string, number> = {};
  readonly loopErrors: string[] = [];
  readonly reserving = new Set<number>();
  /** Servers: their base URL once listening. */
  url: string | undefined;
  closed = false;
  readonly #replies = new Map<number, (line: Json) => void>();
  #nextId = 0;

  constructor(name: string, args: string[], env: NodeJS.ProcessEnv) {
    this.name = name;
    this.proc = spawn(process.execPath, ['--import', 'tsx', ...args], { env: { ...process.env, ...env } });
    this.proc.stderr.on('data', (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
    createInterface({ input: this.proc.stdout }).on('line', (text) => {
      let line: Json;
      try {
        line = JSON.parse(text) as Json;
      } catch {
        return;
      }
      if (typeof line.id === 'number') this.#replies.get(line.id)?.(line);
      else if (line.done) this.done = line.done as Record<string, number>;
      else if (typeof line.loopError === 'string') this.loopErrors.push(line.loopError);
      else if (typeof line.reserving === 'number') this.reserving.add(line.reserving);
      else if (typeof line.reserved === 'number') this.reserving.delete(line.reserved);
      else if (line.msg === 'codec server listening') this.url = line.url as string;
      if (line.closed) {
        this.closed = true;
        this.done = line.done as Record<string, number>;
      }
    });
    this.exited = new Promise((resolve) => this.proc.on('exit', (code) => resolve(code)));
    children.push(this);
  }

  get alive(): boolean {
    return this.proc.exitCode === null && this.proc.signalCode === null;
  }

  /** Sends a command to a worker and waits for its reply. */
  async request(command: Json): Promise<Json> {
    const id = ++this.#nextId;
    const reply = new Promise<Json>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#replies.delete(id);
        reject(new Error(`${this.name}: no reply to ${Object.keys(command)[0]}: ${this.stderr}`));
      }, STEP_MS);
      this.#replies.set(id, (line) => {
        clearTimeout(timer);
        this.#replies.delete(id);
        resolve(line);
      });
    });
    this.proc.stdin.write(`${JSON.stringify({ id, ...command })}\n`);
    return reply;
  }

  total(): number {
    return Object.values(this.done).reduce((a, b) => a + b, 0);
  }
}

/** Polls the key table every 50 ms: each namespace must have exactly one active version. */
class ActiveVersionWatcher {
  samples = 0;
  failures = 0;
  readonly violations: string[] = [];
  #stopped = false;
  readonly #running: Promise<void>;

  constructor(url: string) {
    this.#running = this.#run(url);
  }

  async #run(url: string): Promise<void> {
    let client: pg.Client | undefined;
    const deadline = Date.now() + 170_000;
    while (!this.#stopped && Date.now() < deadline) {
      try {
        if (!client) {
          const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1_000 });
          c.on('error', () => {}); // the server going away is expected; the next query fails
          client = c;
          await c.connect();
        }
        const { rows } = await client.query<{ namespace: string; active: number }>(
          `SELECT namespace, count(*) FILTER (WHERE state = 'active')::int AS active
             FROM temporal_keyring_key_versions GROUP BY namespace`,
        );
        if (!rows.some((r) => r.namespace === NS)) this.violations.push(`no versions of ${NS}`);
        for (const r of rows) {
          if (r.active !== 1) this.violations.push(`${r.namespace} had ${r.active} active versions`);
        }
        this.samples++;
      } catch {
        this.failures++;
        await client?.end().catch(() => {});
        client = undefined;
      }
      await delay(50);
    }
    await client?.end().catch(() => {});
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    await this.#running;
  }
}

const children: Child[] = [];
let server: TestPostgres;
let watcher: ActiveVersionWatcher | undefined;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  for (const c of children) if (c.alive) c.proc.kill('SIGKILL');
  await watcher?.stop();
  await server?.stop();
});

const versionOf = (p: WirePayload) =>
  Number(Buffer.from(p.metadata?.['encryption-key-version'] ?? '', 'base64').toString());

describe('PostgreSQL keystore shared by several processes', () => {
  it('two codec servers and three workers: rotations, a SIGKILL mid-reservation, a database restart', async () => {
    const url = await server.newDatabase('multi');
    const kek = randomBytes(32).toString('base64');
    let admin: OpenedKeyring | undefined = await openKeyring({
      keystore: url,
      kek: { type: 'base64', value: kek },
      meter: false,
    });
    try {
      await admin.keyring.createNamespace(NS);
      watcher = new ActiveVersionWatcher(url);

      const servers = ['s0', 's1'].map(
        (name) =>
          new Child(name, ['cli/main.ts', 'serve', '--dev', '--port', '0', '--log-level', 'info'], {
            TEMPORAL_KEYRING_KEYSTORE: url,
            TEMPORAL_KEYRING_KEK: kek,
          }),
      );
      /**
       * Worker meters reserve blocks of 8 (servers at least 100, probes 1); the victim's are 7, so
       * that its reservations can be told apart in the database's reservation samples.
       */
      const VICTIM_BLOCK = 7;
      const spawnWorker = (name: string) =>
        new Child(name, ['test/fixtures/pg-worker.ts'], {
          // The application name tells this worker's connections apart in pg_stat_activity.
          TK_PG_URL: `${url}?application_name=tk-${name}`,
          TK_KEK: kek,
          TK_NAMESPACE: NS,
          TK_WORKER: name,
          TK_BLOCK: String(name === 'w0' ? VICTIM_BLOCK : 8),
        });
      const workers = ['w0', 'w1', 'w2'].map(spawnWorker);
      const everyone = () => [...workers, ...servers].filter((c) => c.alive);
      for (const s of servers) await until(() => s.url !== undefined || !s.alive, `${s.name} listening`);
      for (const s of servers) expect(s.url, s.stderr).toBeDefined();
      const pids = new Map(children.map((c) => [c, c.proc.pid]));

      // --- Helpers -------------------------------------------------------------------------------
      const written: Written[] = [];
      /** Encryptions per version that servers and probes made (workers report their own). */
      const extra: Record<string, number> = {};
      const countExtra = (version: number, n = 1) => {
        extra[version] = (extra[version] ?? 0) + n;
      };
      let seq = 0;
      const values = (by: string, n: number) => Array.from({ length: n }, () => ({ by, n: seq++ }));

      const http = async (base: string, path: string, body: unknown) => {
        const res = await fetch(`${base}${path}`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify(body),
        });
        return { status: res.status, body: (await res.json()) as Json };
      };
      const toWire = (vs: unknown[]) =>
        payloadsToBody(vs.map((v) => defaultPayloadConverter.toPayload(v))).payloads as WirePayload[];
      const fromWire = (ps: unknown) =>
        parsePayloadsBody({ payloads: ps }).map((p: Payload) => defaultPayloadConverter.fromPayload(p));

      /** Encodes on a worker or a server; throws a KeyringError-like `{code}` on failure. */
      const encodeOn = async (c: Child, n: number): Promise<Written[]> => {
        const vs = values(c.name, n);
        let payloads: WirePayload[];
        if (servers.includes(c)) {
          const res = await http(c.url!, `/${NS}/encode`, { payloads: toWire(vs) });
          if (res.status !== 200)
            throw Object.assign(new Error(JSON.stringify(res.body)), res.body, { status: res.status });
          payloads = res.body.payloads as WirePayload[];
          for (const p of payloads) countExtra(versionOf(p));
        } else {
          const reply = await c.request({ encode: vs });
          if (reply.error) throw Object.assign(new Error(JSON.stringify(reply.error)), reply.error);
          payloads = reply.payloads as WirePayload[];
          expect(reply.versions).toEqual(payloads.map(versionOf));
        }
        const out = payloads.map((payload, i) => ({
          payload,
          version: versionOf(payload),
          value: vs[i],
          by: c.name,
        }));
        written.push(...out);
        return out;
      };
      /** Decodes on a worker or a server: the values, or the error `{code, message}`. */
      const decodeOn = async (c: Child, ps: WirePayload[]): Promise<{ values?: unknown[]; error?: Json }> => {
        if (servers.includes(c)) {
          const res = await http(c.url!, `/${NS}/decode`, { payloads: ps });
          return res.status === 200 ? { values: fromWire(res.body.payloads) } : { error: res.body };
        }
        const reply = await c.request({ decode: ps });
        return reply.error ? { error: reply.error as Json } : { values: reply.values as unknown[] };
      };
      /** Every live process decodes these payloads (encoded by whichever process) to their values. */
      const decodeEverywhere = async (ws: Written[]) => {
        for (const c of everyone()) {
          const got = await decodeOn(
            c,
            ws.map((w) => w.payload),
          );
          expect(got, `${c.name} decoding payloads of ${[...new Set(ws.map((w) => w.by))]}`).toEqual({
            values: ws.map((w) => w.value),
          });
        }
      };

      // --- Traffic -------------------------------------------------------------------------------
      for (const w of workers) await w.request({ loop: true });
      for (const c of everyone()) expect((await encodeOn(c, 3)).map((w) => w.version)).toEqual([1, 1, 1]);
      await decodeEverywhere(written);

      /**
       * A two-phase rotation: prepublish, wait until every process decrypts a payload of the new
       * version, promote; then each process encodes with the new version as soon as it learns it,
       * and what it encodes right away decodes in every other process.
       */
      const rotate = async (via: 'keyring' | 'admin-api') => {
        const a = admin!;
        const before = (await a.keyring.versions(NS)).find((v) => v.state === 'active')!.version;
        let next: number;
        if (via === 'keyring') {
          const r = await a.keyring.rotate(NS, { mode: 'prepublish' });
          expect(r.performed).toBe(true);
          next = r.current.version;
        } else {
          const r = await http(servers[0]!.url!, `/admin/namespaces/${NS}/keys/rotate`, {
            mode: 'prepublish',
          });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
          next = (r.body.current as { version: number }).version;
        }
        expect(next).toBe(before + 1);
        expect((await a.keyring.versions(NS)).find((v) => v.version === next)?.state).toBe('prepublished');

        // Propagation: a probe written with the prepublished key (reserved like any encryption).
        const probeKeys: KeyProvider = {
          encryptionKey: async (ns, count) => {
            await a.keystore.reserveUsage(ns, next, count, Date.now());
            countExtra(next, count);
            return a.keyring.decryptionKey(ns, next);
          },
          decryptionKey: (ns, v) => a.keyring.decryptionKey(ns, v),
        };
        const probeValue = { probe: next };
        const [probe] = await new EncryptionCodec({ namespace: NS, keys: probeKeys }).encode([
          defaultPayloadConverter.toPayload(probeValue),
        ]);
        const probeWire = payloadsToBody([probe!]).payloads as WirePayload[];
        written.push({ payload: probeWire[0]!, version: next, value: probeValue, by: 'probe' });
        for (const c of everyone()) {
          await until(async () => {
            const got = await decodeOn(c, probeWire);
            return JSON.stringify(got.values) === JSON.stringify([probeValue]);
          }, `${c.name} to decrypt version ${next} before it is promoted`);
        }

        // Every process was seen decrypting it: promote now rather than after the propagation delay.
        if (via === 'keyring') {
          expect((await a.keyring.promote(NS, next, { force: true })).performed).toBe(true);
        } else {
          const r = await http(servers[1]!.url!, `/admin/namespaces/${NS}/keys/${next}/state`, {
            state: 'active',
            force: true,
          });
          expect(r.status, JSON.stringify(r.body)).toBe(200);
        }
        for (const c of everyone()) {
          let fresh: Written[] = [];
          await until(async () => {
            fresh = await encodeOn(c, 1);
            return fresh[0]!.version === next;
          }, `${c.name} to encrypt with version ${next}`);
          await decodeEverywhere(fresh);
        }
        // The loops moved to the new version too.
        for (const w of workers.filter((x) => x.alive)) {
          const at = w.done[next] ?? 0;
          await until(() => (w.done[next] ?? 0) > at, `${w.name}'s loop to encrypt with ${next}`);
        }
        return next;
      };

      // --- Rotation 1 (keyring API), then a worker SIGKILLed inside a reservation -----------------
      const v2 = await rotate('keyring');
      const victim = workers[0]!;
      const locker = new pg.Client({ connectionString: url });
      // pg_stat_activity is read from another session: within a transaction it is a snapshot.
      const observer = new pg.Client({ connectionString: url });
      for (const c of [locker, observer]) {
        c.on('error', () => {});
        await c.connect();
      }
      try {
        // Hold the usage row of the active version: every reservation of it now waits inside its
        // transaction, so the victim is killed with its reservation's transaction open.
        await locker.query('BEGIN');
        await locker.query(
          'SELECT reserved FROM temporal_keyring_usage WHERE namespace = $1 AND version = $2 FOR UPDATE',
          [NS, v2],
        );
        const waiting = async (app: string) =>
          (
            await observer.query<{ n: number }>(
              `SELECT count(*)::int AS n FROM pg_stat_activity
                WHERE application_name = $1 AND wait_event_type = 'Lock' AND state = 'active'`,
              [app],
            )
          ).rows[0]!.n;
        await until(
          async () => victim.reserving.size > 0 && (await waiting(`tk-${victim.name}`)) > 0,
          'the victim to wait inside a reservation',
        );
        expect(victim.reserving.size).toBeGreaterThan(0);
        victim.proc.kill('SIGKILL');
        await victim.exited;
        await locker.query('COMMIT');
        // Its transaction is rolled back and its connections go away.
        await until(async () => {
          const { rows } = await observer.query<{ n: number }>(
            'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1',
            [`tk-${victim.name}`],
          );
          return rows[0]!.n === 0;
        }, "the killed worker's connections to close");
      } finally {
        await Promise.all([locker.end(), observer.end()]);
      }
      // The others carry on; a new worker takes its place.
      for (const w of workers.slice(1)) {
        const at = w.total();
        await until(() => w.total() > at, `${w.name} to keep encrypting after the kill`);
      }
      const w3 = spawnWorker('w3');
      workers.push(w3);
      await w3.request({ loop: true });
      pids.set(w3, w3.proc.pid);
      await decodeEverywhere(written);

      // --- Rotation 2 (admin API of the servers), then PostgreSQL restarted mid-traffic ----------
      await rotate('admin-api');
      const live = workers.filter((w) => w.alive);
      const errorsBefore = new Map(live.map((w) => [w, w.loopErrors.length]));
      await server.halt();
      // While it is down: correct data or a clear, retryable error; never anything else.
      for (const c of everyone()) {
        try {
          await encodeOn(c, 2); // within what the process has reserved: may still succeed
        } catch (error) {
          expect(OUTAGE_CODES, `${c.name}: ${String(error)}`).toContain((error as { code?: string }).code);
        }
        // More than its reserved block (a worker's is 8, a server's a few hundred at most): refused.
        await expect(encodeOn(c, servers.includes(c) ? 1_000 : 50), c.name).rejects.toMatchObject({
          code: 'ERR_USAGE_RESERVATION_FAILED',
          ...(servers.includes(c) ? { status: 503 } : {}),
        });
        // Keys it has seen stay in memory: everything written so far still decodes.
        const got = await decodeOn(
          c,
          written.map((w) => w.payload),
        );
        expect(got, `${c.name} decoding while the database is down`).toEqual({
          values: written.map((w) => w.value),
        });
      }
      // Key administration needs the database: a clear 503 from the admin API, an error in the API.
      const adminDown = await http(servers[1]!.url!, `/admin/namespaces/${NS}/keys/rotate`, {
        mode: 'prepublish',
      });
      expect([adminDown.status, adminDown.body.code]).toEqual([503, 'ERR_KEYSTORE_UNAVAILABLE']);
      await expect(admin.keyring.rotate(NS, { mode: 'prepublish' })).rejects.toMatchObject({
        code: 'ERR_KEYSTORE_UNAVAILABLE',
      });
      // Each worker's loop spends its small reserved block and then fails with a clear error.
      for (const w of live) {
        await until(() => w.loopErrors.length > errorsBefore.get(w)!, `${w.name} to notice the outage`);
      }
      await server.resume();
      // Service resumes in the same processes.
      for (const w of live) {
        const at = w.total();
        await until(() => w.total() > at, `${w.name} to encrypt again after the restart`);
      }
      for (const s of servers) {
        await until(async () => {
          try {
            await encodeOn(s, 1);
            return true;
          } catch (error) {
            expect(OUTAGE_CODES).toContain((error as { code?: string }).code);
            return false;
          }
        }, `${s.name} to encrypt again after the restart`);
      }
      for (const c of children.filter((x) => x !== victim)) {
        expect(c.alive, `${c.name} still running`).toBe(true);
        expect(c.proc.pid).toBe(pids.get(c));
      }
      for (const w of workers) {
        for (const code of w.loopErrors) expect(OUTAGE_CODES, w.name).toContain(code);
      }
      await decodeEverywhere(written);

      // --- Rotation 3 (keyring API) after the restart ---------------------------------------------
      const v4 = await rotate('keyring');
      expect(v4).toBe(4);

      // --- Wind down: final counts -----------------------------------------------------------------
      for (const w of workers.filter((x) => x.alive))
        expect((await w.request({ stop: true })).stopped).toBe(true);
      await decodeEverywhere(written);
      for (const w of workers.filter((x) => x.alive))
        w.proc.stdin.write(`${JSON.stringify({ exit: true })}\n`);
      for (const s of servers) s.proc.kill('SIGTERM');
      const survivors = children.filter((c) => c !== victim);
      expect(await Promise.all(survivors.map((c) => c.exited))).toEqual(survivors.map(() => 0));
      await watcher.stop();
      expect(watcher.violations).toEqual([]);
      expect(watcher.samples).toBeGreaterThan(20);
      expect(watcher.failures).toBeGreaterThan(0); // it did see the database go away

      const db = new pg.Client({ connectionString: url });
      await db.connect();
      try {
        const { rows: active } = await db.query(
          "SELECT version FROM temporal_keyring_key_versions WHERE namespace = $1 AND state = 'active'",
          [NS],
        );
        expect(active).toEqual([{ version: 4 }]);
        // Every reservation leaves a sample of the running total: its size is the difference.
        const { rows: reservations } = await db.query<{ version: number; size: string; total: string }>(
          `SELECT version, reserved - coalesce(lag(reserved) OVER (PARTITION BY version ORDER BY reserved), 0) AS size,
                  reserved AS total
             FROM temporal_keyring_usage_samples WHERE namespace = $1`,
          [NS],
        );
        const { rows: holders } = await db.query<{ version: number; holder: string; used: string }>(
          'SELECT version, holder, used FROM temporal_keyring_usage_holders WHERE namespace = $1',
          [NS],
        );
        for (let v = 1; v <= 4; v++) {
          const usage = await admin.keystore.getUsage(NS, v);
          // Truth: what every process reported done (the victim's last report included).
          const truth = workers.reduce((sum, w) => sum + (w.done[v] ?? 0), extra[v] ?? 0);
          expect(truth, `version ${v}`).toBeGreaterThan(0);
          expect(usage.reserved, `reserved of version ${v}`).toBeGreaterThanOrEqual(truth);
          expect(usage.used, `used of version ${v}`).toBeLessThanOrEqual(usage.reserved);
          // The killed worker's own reservations (blocks of 7) cover what it reported done: none of
          // its encryptions went ahead of a persisted reservation. It can hold back at most one block.
          const ofVersion = reservations.filter((r) => r.version === v);
          expect(Math.max(...ofVersion.map((r) => Number(r.total)))).toBe(usage.reserved); // samples complete
          const victimReserved =
            VICTIM_BLOCK * ofVersion.filter((r) => Number(r.size) === VICTIM_BLOCK).length;
          const victimDone = victim.done[v] ?? 0;
          expect(victimReserved, `victim reserved of version ${v}`).toBeGreaterThanOrEqual(victimDone);
          expect(victimReserved - victimDone, `victim's unspent of version ${v}`).toBeLessThan(
            2 * VICTIM_BLOCK,
          );
          // Workers that closed wrote their exact counts, the database restart notwithstanding.
          for (const w of workers.filter((x) => x !== victim)) {
            const row = holders.find((h) => h.holder === w.name && h.version === v);
            expect(Number(row?.used ?? 0), `${w.name} used of version ${v}`).toBe(w.done[v] ?? 0);
          }
        }
      } finally {
        await db.end();
      }
    } finally {
      await admin?.close();
      admin = undefined;
    }
  }, 170_000);
});
