import type pg from 'pg';
import { KeystoreUnavailableError } from '../errors.ts';

/**
 * The PostgreSQL keystore's schema, as an ordered list of migrations applied at open.
 *
 * Every table has the `temporal_keyring_` prefix and lives in the connection's current schema
 * (the first of its `search_path`), so a dedicated schema is chosen with the URL's
 * `options=-c search_path=...`. Applied versions are recorded in
 * `temporal_keyring_schema_migrations`. Never edit a released migration: append a new one.
 */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

export const MIGRATIONS_TABLE = 'temporal_keyring_schema_migrations';

/**
 * Key of the advisory lock that serializes migrators (processes starting at once on a fresh
 * database): the bytes of `tkeyring` as a signed 64-bit integer.
 */
export const MIGRATION_LOCK_KEY = '8389750308618530407';

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'initial schema',
    sql: `
      CREATE TABLE temporal_keyring_key_versions (
        namespace         text    NOT NULL,
        version           integer NOT NULL CHECK (version > 0),
        key_id            text    NOT NULL,
        state             text    NOT NULL
          CHECK (state IN ('prepublished', 'active', 'inactive', 'deprecated', 'destroyed')),
        created_at_ms     bigint  NOT NULL,
        activated_at_ms   bigint,
        deactivated_at_ms bigint,
        deprecated_at_ms  bigint,
        destroyed_at_ms   bigint,
        PRIMARY KEY (namespace, version)
      );
      -- A namespace has at most one active version, whatever writes the table.
      CREATE UNIQUE INDEX temporal_keyring_one_active_version
        ON temporal_keyring_key_versions (namespace) WHERE state = 'active';

      -- Wrapped key material, apart from metadata; deleted when its version is destroyed.
      CREATE TABLE temporal_keyring_key_material (
        namespace  text    NOT NULL,
        version    integer NOT NULL,
        kek_id     text    NOT NULL,
        alg        text    NOT NULL CHECK (alg = 'A256GCM'),
        ciphertext bytea   NOT NULL,
        PRIMARY KEY (namespace, version),
        FOREIGN KEY (namespace, version) REFERENCES temporal_keyring_key_versions (namespace, version)
          ON DELETE CASCADE
      );

      -- The KEK check record: a single row.
      CREATE TABLE temporal_keyring_kek_info (
        id   boolean PRIMARY KEY DEFAULT true CHECK (id),
        info jsonb   NOT NULL
      );

      CREATE TABLE temporal_keyring_usage (
        namespace text    NOT NULL,
        version   integer NOT NULL,
        reserved  bigint  NOT NULL CHECK (reserved >= 0),
        PRIMARY KEY (namespace, version)
      );
      CREATE TABLE temporal_keyring_usage_samples (
        id        bigint  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        namespace text    NOT NULL,
        version   integer NOT NULL,
        at_ms     bigint  NOT NULL,
        reserved  bigint  NOT NULL
      );
      CREATE INDEX temporal_keyring_usage_samples_by_version
        ON temporal_keyring_usage_samples (namespace, version, id);
      CREATE TABLE temporal_keyring_usage_holders (
        namespace     text    NOT NULL,
        version       integer NOT NULL,
        holder        text    NOT NULL,
        used          bigint  NOT NULL CHECK (used >= 0),
        updated_at_ms bigint  NOT NULL,
        PRIMARY KEY (namespace, version, holder)
      );

      CREATE TABLE temporal_keyring_leases (
        name          text   PRIMARY KEY,
        holder        text   NOT NULL,
        expires_at_ms bigint NOT NULL
      );
    `,
  },
];

/** The schema version this release reads and writes. */
export const LATEST_SCHEMA_VERSION = MIGRATIONS.at(-1)!.version;

/**
 * Brings the schema up to {@link LATEST_SCHEMA_VERSION}. Each migration runs in its own transaction
 * under a transaction-scoped advisory lock, so concurrent starters apply each migration once and
 * the others wait, then find nothing left to do. Returns the versions it applied.
 */
export async function migrate(client: pg.ClientBase): Promise<number[]> {
  const applied: number[] = [];
  for (;;) {
    await client.query('BEGIN');
    try {
      await client.query('SELECT pg_advisory_xact_lock($1::bigint)', [MIGRATION_LOCK_KEY]);
      // Checked first, not `CREATE TABLE IF NOT EXISTS`: that needs CREATE on the schema even when
      // the table exists, and a role with table privileges only must be able to open the store.
      const { rows: found } = await client.query<{ exists: boolean }>(
        `SELECT to_regclass('${MIGRATIONS_TABLE}') IS NOT NULL AS exists`,
      );
      if (!found[0]?.exists) {
        await client.query(
          `CREATE TABLE ${MIGRATIONS_TABLE} (
             version    integer     PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
           )`,
        );
      }
      const { rows } = await client.query<{ current: number | null }>(
        `SELECT max(version) AS current FROM ${MIGRATIONS_TABLE}`,
      );
      const current = rows[0]?.current ?? 0;
      if (current > LATEST_SCHEMA_VERSION) {
        throw new KeystoreUnavailableError(
          `the PostgreSQL keystore schema is at version ${current}, newer than this release supports (${LATEST_SCHEMA_VERSION}); upgrade temporal-keyring`,
        );
      }
      const next = MIGRATIONS.find((m) => m.version === current + 1);
      if (next) {
        await client.query(next.sql);
        await client.query(`INSERT INTO ${MIGRATIONS_TABLE} (version, name) VALUES ($1, $2)`, [
          next.version,
          next.name,
        ]);
      }
      await client.query('COMMIT');
      if (!next) return applied;
      applied.push(next.version);
    } catch (error) {
      await client.query('ROLLBACK').catch(() => {});
      throw error;
    }
  }
}
