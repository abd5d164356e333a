import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { redactConnectionString } from '../../src/keystore/postgres-errors.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { LATEST_SCHEMA_VERSION, MIGRATIONS_TABLE } from '../../src/keystore/postgres-migrations.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

const run = promisify(execFile);
const T0 = Date.UTC(2026, 0, 1);
const HOUR = 3_600_000;
const wrapped = { kekId: 'k', alg: 'A256GCM' as const, ciphertext: new Uint8Array(60).fill(7) };

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

async function sql<R extends pg.QueryResultRow = pg.QueryResultRow>(
  url: string,
  text: string,
  params?: unknown[],
) {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return await client.query<R>(text, params);
  } finally {
    await client.end();
  }
}

describe('PostgresKeystore schema and migrations', () => {
  it('migrates a fresh database once, and reopening applies nothing', async () => {
    const url = await server.newDatabase('mig');
    for (let i = 0; i < 3; i++) await (await PostgresKeystore.open({ connectionString: url })).close();
    const { rows } = await sql(url, `SELECT version, name FROM ${MIGRATIONS_TABLE} ORDER BY version`);
    expect(rows.map((r) => r.version)).toEqual(
      Array.from({ length: LATEST_SCHEMA_VERSION }, (_, i) => i + 1),
    );
  });

  it('survives 5 keystores opening a fresh database at once', async () => {
    const url = await server.newDatabase('mig5');
    const stores = await Promise.all(
      Array.from({ length: 5 }, () => PostgresKeystore.open({ connectionString: url })),
    );
    await Promise.all(stores.map((s) => s.ping()));
    await Promise.all(stores.map((s) => s.close()));
    const { rows } = await sql(url, `SELECT count(*)::int AS n FROM ${MIGRATIONS_TABLE}`);
    expect(rows[0]!.n).toBe(LATEST_SCHEMA_VERSION);
  });

  it('survives 5 processes opening a fresh database at once', async () => {
    const url = await server.newDatabase('migproc');
    const outputs = await Promise.all(
      Array.from({ length: 5 }, () =>
        run(process.execPath, ['--import', 'tsx', 'test/fixtures/pg-open.ts'], {
          env: { ...process.env, TK_PG_URL: url },
          timeout: 60_000,
        }),
      ),
    );
    expect(outputs.map((o) => o.stdout.trim())).toEqual(Array(5).fill('opened'));
    const { rows } = await sql(url, `SELECT count(*)::int AS n FROM ${MIGRATIONS_TABLE}`);
    expect(rows[0]!.n).toBe(LATEST_SCHEMA_VERSION);
  });

  it('refuses a schema newer than this release', async () => {
    const url = await server.newDatabase('newer');
    await (await PostgresKeystore.open({ connectionString: url })).close();
    await sql(url, `INSERT INTO ${MIGRATIONS_TABLE} (version, name) VALUES ($1, 'from the future')`, [
      LATEST_SCHEMA_VERSION + 1,
    ]);
    await expect(PostgresKeystore.open({ connectionString: url })).rejects.toMatchObject({
      code: 'ERR_KEYSTORE_UNAVAILABLE',
      message: expect.stringContaining('newer than this release'),
    });
  });

  it('makes a second active version impossible, even with raw SQL', async () => {
    const url = await server.newDatabase('active');
    const store = await PostgresKeystore.open({ connectionString: url });
    try {
      await store.commit(
        { namespace: 'ns', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
        wrapped,
      );
      const insert = `INSERT INTO temporal_keyring_key_versions (namespace, version, key_id, state, created_at_ms)
                      VALUES ('ns', 2, 'ns/v2', $1, 0)`;
      await expect(sql(url, insert, ['active'])).rejects.toMatchObject({ code: '23505' });
      await expect(sql(url, insert, ['bogus'])).rejects.toMatchObject({ code: '23514' });
      await expect(
        sql(
          url,
          `UPDATE temporal_keyring_key_versions SET state = 'active' WHERE namespace = 'ns' AND version = 2`,
        ),
      ).resolves.toMatchObject({ rowCount: 0 });
      expect((await store.getVersions('ns')).map((v) => v.state)).toEqual(['active']);
    } finally {
      await store.close();
    }
  });

  it('trims usage samples to 25 hours plus one, and to at most 10,000', async () => {
    const url = await server.newDatabase('samples');
    const store = await PostgresKeystore.open({ connectionString: url });
    try {
      // Hourly reservations for 30 hours: the last 25 hours stay, plus the one just before them.
      for (let h = 0; h <= 30; h++) await store.reserveUsage('ns', 1, 10, T0 + h * HOUR);
      const usage = await store.getUsage('ns', 1);
      expect(usage.reserved).toBe(310);
      expect(usage.samples.map((s) => (s.at - T0) / HOUR)).toEqual(
        Array.from({ length: 27 }, (_, i) => i + 4),
      );
      // Many samples within the window: capped at the most recent 10,000.
      await sql(
        url,
        `INSERT INTO temporal_keyring_usage_samples (namespace, version, at_ms, reserved)
         SELECT 'ns', 2, $1::bigint + g, g FROM generate_series(1, 10005) g`,
        [T0],
      );
      const after = await store.reserveUsage('ns', 2, 1, T0 + 20_000);
      expect(after.samples.length).toBe(10_000);
      expect(after.samples.at(-1)).toEqual({ at: T0 + 20_000, reserved: 1 });
      expect(after.samples[0]!.at).toBe(T0 + 7);
    } finally {
      await store.close();
    }
  });

  it('works in its own schema with an owner role that migrates and an app role with table grants only', async () => {
    // The setup docs/postgres-keystore.md describes, step by step.
    const suffix = `${process.pid}_${Date.now() % 100_000}`;
    const owner = `keyring_owner_${suffix}`;
    const app = `keyring_app_${suffix}`;
    const db = `keyring_${suffix}`;
    await sql(server.url, `CREATE ROLE ${owner} LOGIN PASSWORD 'owner-pw'`);
    await sql(server.url, `CREATE ROLE ${app} LOGIN PASSWORD 'app-pw'`);
    await sql(server.url, `CREATE DATABASE ${db} OWNER ${owner}`);
    const base = new URL(server.url);
    base.pathname = `/${db}`;
    const admin = base.toString();
    await sql(admin, `CREATE SCHEMA keyring AUTHORIZATION ${owner}`);
    const as = (user: string, password: string) => {
      const u = new URL(admin);
      u.username = user;
      u.password = password;
      return `${u.toString()}?options=-c%20search_path%3Dkeyring`;
    };
    await (await PostgresKeystore.open({ connectionString: as(owner, 'owner-pw') })).close();
    await sql(admin, `GRANT USAGE ON SCHEMA keyring TO ${app}`);
    await sql(admin, `GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA keyring TO ${app}`);
    const store = await PostgresKeystore.open({ connectionString: as(app, 'app-pw') });
    try {
      await store.commit(
        { namespace: 'ns', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
        wrapped,
      );
      await store.reserveUsage('ns', 1, 5, T0);
      await store.recordUsed('ns', 1, 'p', 3, T0);
      expect(await store.tryAcquireLease('rotator', 'p', 1000, T0)).toBe(true);
      await store.putKekInfo({ format: 1, currentKekId: 'k', checks: [] }, undefined);
      expect((await store.getUsage('ns', 1)).reserved).toBe(5);
    } finally {
      await store.close();
    }
    const { rows } = await sql(
      admin,
      `SELECT table_schema, count(*)::int AS n FROM information_schema.tables
        WHERE table_name LIKE 'temporal_keyring_%' GROUP BY table_schema`,
    );
    expect(rows).toEqual([{ table_schema: 'keyring', n: 8 }]);
  });

  it('gives up on a statement blocked longer than queryTimeoutMs, as unavailable', async () => {
    const url = await server.newDatabase('timeout');
    const store = await PostgresKeystore.open({ connectionString: url, queryTimeoutMs: 200 });
    const blocker = new pg.Client({ connectionString: url });
    await blocker.connect();
    try {
      await blocker.query('BEGIN');
      await blocker.query('LOCK TABLE temporal_keyring_leases IN ACCESS EXCLUSIVE MODE');
      await expect(store.tryAcquireLease('rotator', 'p', 1000, T0)).rejects.toMatchObject({
        code: 'ERR_KEYSTORE_UNAVAILABLE',
      });
      await blocker.query('ROLLBACK');
      expect(await store.tryAcquireLease('rotator', 'p', 1000, T0)).toBe(true);
    } finally {
      await blocker.end();
      await store.close();
    }
  });

  it('queues a burst of calls for the pool instead of failing them on the connect timeout', async () => {
    const url = await server.newDatabase('burst');
    const store = await PostgresKeystore.open({ connectionString: url, poolSize: 2, connectTimeoutMs: 500 });
    try {
      await Promise.all(Array.from({ length: 200 }, (_, i) => store.reserveUsage('ns', 1, 1, T0 + i)));
      const usage = await store.getUsage('ns', 1);
      expect(usage.reserved).toBe(200);
      expect(usage.samples.map((s) => s.reserved)).toEqual(Array.from({ length: 200 }, (_, i) => i + 1));
    } finally {
      await store.close();
    }
  });

  it('validates options up front, naming the field', async () => {
    await expect(PostgresKeystore.open({ connectionString: 'mysql://x' })).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining('connectionString'),
    });
    await expect(PostgresKeystore.open({ connectionString: server.url, poolSize: 0 })).rejects.toMatchObject({
      message: expect.stringContaining('poolSize'),
    });
    await expect(
      PostgresKeystore.open({ connectionString: server.url, pollIntervalMs: -1 }),
    ).rejects.toMatchObject({ message: expect.stringContaining('pollIntervalMs') });
  });

  it('redacts passwords wherever it prints the URL', async () => {
    expect(redactConnectionString('postgres://app:s3cret@db:5432/k?sslmode=verify-full&password=p2')).toBe(
      'postgres://app:***@db:5432/k?sslmode=verify-full&password=***',
    );
    const store = await PostgresKeystore.open({ connectionString: server.url });
    try {
      const password = new URL(server.url).password;
      expect(store.redactedUrl).not.toContain(password);
      expect(JSON.stringify(store)).not.toContain(password);
    } finally {
      await store.close();
    }
  });

  it('fails to open with KeystoreUnavailableError and no password when nothing listens', async () => {
    const url = `postgres://app:hunter2hunter2@127.0.0.1:1/k`;
    const error = await PostgresKeystore.open({ connectionString: url, connectTimeoutMs: 2_000 }).catch(
      (e) => e,
    );
    expect(error).toMatchObject({ code: 'ERR_KEYSTORE_UNAVAILABLE' });
    expect(error.message).toContain('postgres://app:***@127.0.0.1:1/k');
    expect(error.message).not.toContain('hunter2');
  });

  it('fails with KeystoreUnavailableError on a wrong password, without printing either', async () => {
    const u = new URL(server.url);
    u.password = 'wrong-password-xyz';
    const error = await PostgresKeystore.open({ connectionString: u.toString() }).catch((e) => e);
    expect(error).toMatchObject({ code: 'ERR_KEYSTORE_UNAVAILABLE' });
    expect(error.message).not.toContain('wrong-password-xyz');
    expect(error.message).not.toContain(new URL(server.url).password);
  });
});
