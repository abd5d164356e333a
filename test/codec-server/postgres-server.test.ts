import { readdirSync, readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { post, startTestServer, TEST_KEK, type TestServer } from './support.ts';

/**
 * The codec server over a real PostgreSQL keystore.
 *
 * PostgreSQL hung (every one of its processes stopped with SIGSTOP, as a frozen VM or a stalled
 * disk would): `/readyz` and the admin API's reads answer 503 with a code within their own short
 * deadline (`keystoreCheckTimeoutMs`), not after the keystore's query timeout.
 */
const ADMIN = 'tk_admin_hang_0123456789abcdef0123456789';
const BOUND_MS = 10_000; // well under the keystore's ~30 s query timeout

/** The postmaster listening on `port` (found by its command line) and all its children. */
function postgresPids(port: number): number[] {
  const procs = readdirSync('/proc')
    .filter((d) => /^\d+$/.test(d))
    .flatMap((d) => {
      try {
        const cmdline = readFileSync(`/proc/${d}/cmdline`, 'utf8').split('\0');
        const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
        const ppid = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]);
        return [{ pid: Number(d), ppid, cmdline }];
      } catch {
        return [];
      }
    });
  const master = procs.find((p) => {
    const i = p.cmdline.indexOf('-p');
    return /postgres$/.test(p.cmdline[0] ?? '') && i >= 0 && p.cmdline[i + 1] === String(port);
  });
  if (!master) throw new Error(`no postmaster found for port ${port}`);
  return [master.pid, ...procs.filter((p) => p.ppid === master.pid).map((p) => p.pid)];
}

let pg: TestPostgres | undefined;
let url: string;
let keystore: Keystore | undefined;
let s: TestServer<Keystore> | undefined;
beforeAll(async () => {
  pg = await startPostgres();
  url = await pg.newDatabase('server');
  keystore = await openKeystore(url);
  s = await startTestServer(
    {
      keystoreCheckTimeoutMs: 300,
      auth: {
        tokens: [{ name: 'admin', sha256: tokenSha256Hex(ADMIN), namespaces: ['*'], operations: ['admin'] }],
      },
    },
    { keystore, namespaces: ['orders'] },
  );
}, 120_000);
afterAll(async () => {
  await s?.close();
  await keystore?.close();
  await pg?.stop();
});

describe('a hung PostgreSQL (SIGSTOP)', { timeout: 60_000 }, () => {
  it('bounds /readyz and admin reads by keystoreCheckTimeoutMs: 503 ERR_KEYSTORE_UNAVAILABLE', async () => {
    const server = s!;
    const get = (path: string, headers: Record<string, string> = {}) =>
      fetch(`${server.url}${path}`, { headers, signal: AbortSignal.timeout(BOUND_MS) });
    const admin = { authorization: `Bearer ${ADMIN}` };
    expect((await get('/readyz')).status).toBe(200);
    expect((await get('/admin/namespaces/orders/keys', admin)).status).toBe(200);

    const pids = postgresPids(pg!.port);
    for (const pid of pids) process.kill(pid, 'SIGSTOP');
    try {
      const ready = await get('/readyz');
      expect(ready.status).toBe(503);
      expect(await ready.json()).toMatchObject({ status: 'not ready', code: 'ERR_KEYSTORE_UNAVAILABLE' });
      const keys = await get('/admin/namespaces/orders/keys', admin);
      expect(keys.status).toBe(503);
      expect(((await keys.json()) as { code: string }).code).toBe('ERR_KEYSTORE_UNAVAILABLE');
    } finally {
      for (const pid of pids) process.kill(pid, 'SIGCONT');
    }
    // Back to ready once the database runs again (the stalled reads finish on their own).
    await expect.poll(async () => (await get('/readyz')).status, { timeout: BOUND_MS }).toBe(200);
  });
});

describe('destroy through the admin API', { timeout: 60_000 }, () => {
  it('reaches another process at once (PostgreSQL NOTIFY), not at its next refresh', async () => {
    const server = s!;
    await server.keyring.createNamespace('ledger');
    // Another process: its own connection, a clock that never fires its refresh timer.
    const otherStore = await PostgresKeystore.open({ connectionString: url });
    const other = await Keyring.open({
      keystore: otherStore,
      kek: TEST_KEK,
      clock: new ManualClock(Date.UTC(2026, 0, 1)),
      allowDeprecatedDecrypt: true,
    });
    try {
      expect(await otherStore.whenListening()).toBe(true);
      const codec = new EncryptionCodec({ namespace: 'ledger', keys: other });
      const [encrypted] = await codec.encode([{ metadata: {}, data: new TextEncoder().encode('entry') }]);
      await codec.decode([encrypted!]); // version 1 loaded in that process

      const admin = { authorization: `Bearer ${ADMIN}` };
      const base = `${server.url}/admin/namespaces/ledger/keys`;
      expect((await post(`${base}/rotate`, {}, admin)).status).toBe(200);
      expect((await post(`${base}/1/state`, { state: 'deprecated' }, admin)).status).toBe(200);
      await codec.decode([encrypted!]); // deprecated, allowed there
      expect((await post(`${base}/1/state`, { state: 'destroyed' }, admin)).status).toBe(200);

      await expect
        .poll(
          () =>
            codec.decode([encrypted!]).then(
              () => 'decrypts',
              (error: { code?: string }) => error.code,
            ),
          { timeout: BOUND_MS },
        )
        .toBe('ERR_KEY_VERSION_DESTROYED');
    } finally {
      await other.close();
      await otherStore.close();
    }
  });
});
