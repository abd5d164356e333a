/**
 * Crash suite, PostgreSQL keystore: the same five SIGKILLed processes as crash-file.test.ts on a
 * real embedded PostgreSQL; besides the keystore-level checks of fixtures/crash-harness.ts, the
 * invariants are checked with SQL straight on the tables.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDir } from '../support/temp-dir.ts';
import { runCrashRounds, seedStore } from './fixtures/crash-harness.ts';

let server: TestPostgres;
let dir: string;
beforeAll(async () => {
  server = await startPostgres();
  dir = await tempDir('tk-crash-pg-');
}, 120_000);
afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

/** Invariants straight on the tables, whatever the keystore code believes. */
async function checkTables(url: string): Promise<void> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    const notOneActive = await client.query(
      `SELECT namespace, count(*) FILTER (WHERE state = 'active') AS active
         FROM temporal_keyring_key_versions GROUP BY namespace
       HAVING count(*) FILTER (WHERE state = 'active') <> 1`,
    );
    expect(notOneActive.rows).toEqual([]);
    const withoutMaterial = await client.query(
      `SELECT v.namespace, v.version FROM temporal_keyring_key_versions v
         LEFT JOIN temporal_keyring_key_material m USING (namespace, version)
        WHERE m.namespace IS NULL AND v.state <> 'destroyed'`,
    );
    expect(withoutMaterial.rows).toEqual([]);
    const orphanUsage = await client.query(
      `SELECT u.namespace, u.version FROM temporal_keyring_usage u
         LEFT JOIN temporal_keyring_key_versions v USING (namespace, version) WHERE v.namespace IS NULL`,
    );
    expect(orphanUsage.rows).toEqual([]);
    // Samples are appended in the reservation's transaction: the latest equals the total.
    const samplesBehind = await client.query(
      `SELECT u.namespace, u.version FROM temporal_keyring_usage u
        WHERE u.reserved <> (SELECT s.reserved FROM temporal_keyring_usage_samples s
                              WHERE s.namespace = u.namespace AND s.version = u.version ORDER BY s.id DESC LIMIT 1)`,
    );
    expect(samplesBehind.rows).toEqual([]);
  } finally {
    await client.end();
  }
}

describe('crashes on the PostgreSQL keystore', () => {
  it('loses no key, payload or count when every operation is SIGKILLed at random points', async () => {
    const url = await server.newDatabase('crash');
    const keks = [generateKekBase64(), generateKekBase64(), generateKekBase64()];
    const open = () => PostgresKeystore.open({ connectionString: url, pollIntervalMs: 3_600_000 });
    const seed = await open();
    await seedStore(seed, keks[0]!);
    await seed.close();

    const stats = await runCrashRounds({
      backend: { env: { PG_URL: url }, open, checkStorage: () => checkTables(url) },
      keks,
      log: join(dir, 'payloads.jsonl'),
      rounds: Number(process.env.CRASH_ROUNDS ?? 20),
      minRounds: 8,
      budgetMs: 90_000,
    });
    if (process.env.SHOW_NUMBERS) console.log('postgres crash suite', stats);
    expect(stats.kills).toBeGreaterThanOrEqual(40);
    expect(stats.payloads).toBeGreaterThan(stats.rounds);
    expect(stats.printedUsed).toBeGreaterThan(0);
  }, 300_000);
});
