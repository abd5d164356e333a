import { execFileSync } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

const hasOpenssl = (() => {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe.skipIf(!hasOpenssl)('PostgresKeystore over TLS', () => {
  let server: TestPostgres;
  beforeAll(async () => {
    server = await startPostgres({ tls: true });
  });
  afterAll(async () => {
    await server?.stop();
  });

  /** How the keystore's pooled connections to `db` are encrypted, as the server reports it. */
  async function tlsOfKeystoreConnections(store: PostgresKeystore, db: string): Promise<boolean[]> {
    await store.ping(); // leaves an idle connection in the pool
    const client = new pg.Client({ connectionString: server.url });
    await client.connect();
    try {
      const { rows } = await client.query<{ ssl: boolean }>(
        `SELECT s.ssl FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
          WHERE a.application_name = 'temporal-keyring' AND a.datname = $1`,
        [db],
      );
      return rows.map((r) => r.ssl);
    } finally {
      await client.end();
    }
  }

  it('connects with sslmode=verify-full and sslrootcert in the URL', async () => {
    const base = await server.newDatabase('tls');
    const url = `${base}?sslmode=verify-full&sslrootcert=${encodeURIComponent(server.caFile!)}`;
    const store = await PostgresKeystore.open({ connectionString: url });
    try {
      expect(await tlsOfKeystoreConnections(store, new URL(base).pathname.slice(1))).toEqual([true]);
      await store.commit(
        { namespace: 'ns', at: 1, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
        { kekId: 'k', alg: 'A256GCM', ciphertext: new Uint8Array(60) },
      );
      expect(await store.listNamespaces()).toEqual(['ns']);
    } finally {
      await store.close();
    }
  });

  it('connects with the ssl option (node:tls options) and the connection is encrypted', async () => {
    const url = await server.newDatabase('tlsopt');
    const ca = await readFile(server.caFile!, 'utf8');
    const store = await PostgresKeystore.open({
      connectionString: url,
      ssl: { ca, rejectUnauthorized: true },
    });
    try {
      expect(await tlsOfKeystoreConnections(store, new URL(url).pathname.slice(1))).toEqual([true]);
    } finally {
      await store.close();
    }
  });

  it('refuses a server certificate it cannot verify, as unavailable', async () => {
    const url = await server.newDatabase('tlsbad');
    const error = await PostgresKeystore.open({
      connectionString: url,
      ssl: { rejectUnauthorized: true },
    }).catch((e: unknown) => e);
    expect(error).toMatchObject({ code: 'ERR_KEYSTORE_UNAVAILABLE' });
    expect((error as Error).message).not.toContain(new URL(url).password);
  });
});
