import type { ConnectionOptions } from 'node:tls';
import pg from 'pg';
import {
  InvalidOptionError,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeystoreUnavailableError,
} from '../errors.ts';
import {
  applyChange,
  KEY_STATES,
  type KeyState,
  type KeyVersion,
  type NamespaceChange,
} from '../model/key-version.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import {
  type CommitGuard,
  type KekInfo,
  type Keystore,
  type KeystoreEvent,
  sameKekInfo,
  USAGE_SAMPLE_MAX,
  USAGE_SAMPLE_RETENTION_MS,
  type UsageRecord,
  type WrappedKey,
} from './keystore.ts';
import { isUnavailable, redactConnectionString, toKeystoreError } from './postgres-errors.ts';
import { CHANGES_CHANNEL, ChangeListener } from './postgres-listener.ts';
import { migrate } from './postgres-migrations.ts';

export interface PostgresKeystoreOptions {
  /**
   * `postgres://user:password@host:5432/db?sslmode=verify-full&sslrootcert=/path/ca.pem`.
   * TLS settings in the URL take precedence over {@link ssl}.
   */
  connectionString: string;
  /** TLS options for pg (`true`, or node:tls options such as `{ ca, rejectUnauthorized }`). */
  ssl?: boolean | ConnectionOptions;
  clock?: Clock;
  logger?: Logger;
  /** Longest wait between attempts to re-establish the LISTEN connection. Default 5 s. */
  pollIntervalMs?: number;
  /** Connections in the pool. Default 10. */
  poolSize?: number;
  /** How long to wait for a connection before failing with ERR_KEYSTORE_UNAVAILABLE. Default 5 s. */
  connectTimeoutMs?: number;
  /**
   * Longest a statement may run (including waiting for a lock) before it is cancelled and the call
   * fails with ERR_KEYSTORE_UNAVAILABLE; also bounds waiting for an answer from an unresponsive
   * server. Default 30 s.
   */
  queryTimeoutMs?: number;
}

/**
 * Fixed first key of the per-namespace advisory locks (`tkrg`); the second is `hashtext(namespace)`.
 * Two-key advisory locks do not share a key space with the migration lock's single key.
 */
const NAMESPACE_LOCK_CLASS = 0x746b7267;

/**
 * A {@link Keystore} in PostgreSQL, shared by every worker, codec server and rotator of a
 * deployment. Tables and migrations: see postgres-migrations.ts.
 *
 * Concurrency: `commit` serializes writers of one namespace with a transaction-scoped advisory lock,
 * re-reads the namespace under it and applies the shared `applyChange`; a partial unique index
 * makes two active versions of a namespace impossible even to raw SQL. A commit with a guard (the
 * validating layer passes one with new material) reads the KEK record `FOR SHARE` in the same
 * transaction and refuses if it is not the one the guard names. Arguments are trusted: the
 * `ValidatingKeystore` in front checks them. Usage counters are atomic
 * upserts; leases and the KEK record are compare-and-set statements. Time-based decisions use the
 * caller's `now`, never the database clock.
 *
 * Changes are announced with NOTIFY on `temporal_keyring_changes` (see {@link ChangeListener}).
 * When the database cannot be reached every method throws `KeystoreUnavailableError`; the pool
 * reconnects by itself when it comes back.
 */
export class PostgresKeystore implements Keystore {
  readonly kind = 'postgres';
  /** The connection string with the password masked: safe to log. */
  readonly redactedUrl: string;
  readonly #pool: pg.Pool;
  readonly #slots: Slots;
  readonly #clientConfig: pg.ClientConfig;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #pollIntervalMs: number;
  readonly #listeners = new Set<(event: KeystoreEvent) => void>();
  #listener: ChangeListener | undefined;
  #closed = false;

  private constructor(options: PostgresKeystoreOptions) {
    this.redactedUrl = redactConnectionString(options.connectionString);
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#pollIntervalMs = options.pollIntervalMs ?? 5_000;
    this.#clientConfig = {
      connectionString: options.connectionString,
      ...(options.ssl !== undefined ? { ssl: options.ssl } : {}),
      connectionTimeoutMillis: options.connectTimeoutMs ?? 5_000,
      // Server side: cancels the statement. Client side, a little later: a server that no longer
      // answers at all (the connection is then discarded).
      statement_timeout: options.queryTimeoutMs ?? 30_000,
      query_timeout: (options.queryTimeoutMs ?? 30_000) + 1_000,
      keepAlive: true,
      application_name: 'temporal-keyring',
    };
    const poolSize = options.poolSize ?? 10;
    const queueTimeoutMs = options.queryTimeoutMs ?? 30_000;
    this.#slots = new Slots(poolSize, queueTimeoutMs, () => {
      return new KeystoreUnavailableError(
        `PostgreSQL keystore at ${this.redactedUrl} is overloaded: no connection was free within ${queueTimeoutMs} ms (poolSize ${poolSize})`,
      );
    });
    this.#pool = new pg.Pool({
      ...this.#clientConfig,
      max: poolSize,
      idleTimeoutMillis: 30_000,
    });
    // An idle connection that dies (server restart) is dropped from the pool; the next query opens
    // a new one. Without a handler the error would crash the process.
    this.#pool.on('error', (error) =>
      this.#logger.warn(
        { err: { code: (error as { code?: string }).code } },
        'idle keystore connection lost',
      ),
    );
  }

  /** Connects, creates or migrates the schema, and returns the keystore. */
  static async open(options: PostgresKeystoreOptions): Promise<PostgresKeystore> {
    validateOptions(options);
    const store = new PostgresKeystore(options);
    try {
      const applied = await store.#run((client) => migrate(client));
      if (applied.length > 0) {
        store.#logger.info({ keystore: store.redactedUrl, applied }, 'keystore schema migrated');
      }
    } catch (error) {
      await store.#pool.end().catch(() => {});
      throw error;
    }
    return store;
  }

  async listNamespaces(): Promise<string[]> {
    const { rows } = await this.#query<{ namespace: string }>(
      'SELECT DISTINCT namespace FROM temporal_keyring_key_versions ORDER BY namespace',
    );
    // JS order, as the other backends sort (the database collation may differ).
    return rows.map((r) => r.namespace).sort();
  }

  async getVersions(namespace: string): Promise<KeyVersion[]> {
    const { rows } = await this.#query<VersionRow>(
      'SELECT * FROM temporal_keyring_key_versions WHERE namespace = $1 ORDER BY version',
      [namespace],
    );
    return rows.map(fromVersionRow);
  }

  async commit(change: NamespaceChange, material?: WrappedKey, guard?: CommitGuard): Promise<KeyVersion[]> {
    const ns = change.namespace;
    return this.#transaction(async (client) => {
      await client.query('SELECT pg_advisory_xact_lock($1, hashtext($2))', [NAMESPACE_LOCK_CLASS, ns]);
      if (guard) {
        // The KEK record must still be the one the caller read. The row lock makes a KEK
        // rotation's start (putKekInfo) wait for this commit, or this commit see its start.
        const kek = await client.query<{ info: KekInfo }>(
          'SELECT info FROM temporal_keyring_kek_info FOR SHARE',
        );
        if (!sameKekInfo(kek.rows[0]?.info, guard.kekInfo)) {
          throw new KeystoreConflictError('the KEK record changed meanwhile');
        }
      }
      const { rows } = await client.query<VersionRow>(
        'SELECT * FROM temporal_keyring_key_versions WHERE namespace = $1 ORDER BY version FOR UPDATE',
        [ns],
      );
      const current = rows.map(fromVersionRow);
      const next = applyChange(current, change);
      const before = new Map(current.map((v) => [v.version, v]));
      const changed = next.filter((v) => before.has(v.version) && !sameVersion(before.get(v.version)!, v));
      // Leave `active` before anything enters it, so the one-active index holds after every row.
      changed.sort(
        (a, b) =>
          Number(before.get(b.version)!.state === 'active') -
          Number(before.get(a.version)!.state === 'active'),
      );
      for (const v of changed) {
        await client.query(
          `UPDATE temporal_keyring_key_versions
              SET state = $3, activated_at_ms = $4, deactivated_at_ms = $5, deprecated_at_ms = $6, destroyed_at_ms = $7
            WHERE namespace = $1 AND version = $2`,
          [
            ns,
            v.version,
            v.state,
            v.activatedAt ?? null,
            v.deactivatedAt ?? null,
            v.deprecatedAt ?? null,
            v.destroyedAt ?? null,
          ],
        );
        if (v.state === 'destroyed') {
          await client.query(
            'DELETE FROM temporal_keyring_key_material WHERE namespace = $1 AND version = $2',
            [ns, v.version],
          );
        }
      }
      for (const v of next.filter((x) => !before.has(x.version))) {
        await client.query(
          `INSERT INTO temporal_keyring_key_versions
             (namespace, version, key_id, state, created_at_ms, activated_at_ms) VALUES ($1, $2, $3, $4, $5, $6)`,
          [ns, v.version, v.keyId, v.state, v.createdAt, v.activatedAt ?? null],
        );
        await client.query(
          `INSERT INTO temporal_keyring_key_material (namespace, version, kek_id, alg, ciphertext)
           VALUES ($1, $2, $3, $4, $5)`,
          [ns, v.version, material!.kekId, material!.alg, Buffer.from(material!.ciphertext)],
        );
      }
      await notify(client, { type: 'namespace-changed', namespace: ns });
      return next;
    });
  }

  async getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined> {
    const { rows } = await this.#query<{ kek_id: string; alg: string; ciphertext: Buffer }>(
      'SELECT kek_id, alg, ciphertext FROM temporal_keyring_key_material WHERE namespace = $1 AND version = $2',
      [namespace, version],
    );
    const row = rows[0];
    if (!row) return undefined;
    if (row.alg !== 'A256GCM') {
      throw new KeystoreCorruptError(
        `key version ${version} of namespace "${namespace}" has unknown wrapping ${row.alg}`,
      );
    }
    return { kekId: row.kek_id, alg: 'A256GCM', ciphertext: new Uint8Array(row.ciphertext) };
  }

  async rewrapMaterial(
    namespace: string,
    version: number,
    material: WrappedKey,
    expectedKekId: string,
  ): Promise<void> {
    const { rowCount } = await this.#query(
      `UPDATE temporal_keyring_key_material SET kek_id = $3, alg = $4, ciphertext = $5
        WHERE namespace = $1 AND version = $2 AND kek_id = $6`,
      [namespace, version, material.kekId, material.alg, Buffer.from(material.ciphertext), expectedKekId],
    );
    if (rowCount !== 1)
      throw new KeystoreConflictError(`${namespace}/${version} is not wrapped with KEK ${expectedKekId}`);
  }

  async getKekInfo(): Promise<KekInfo | undefined> {
    const { rows } = await this.#query<{ info: KekInfo }>('SELECT info FROM temporal_keyring_kek_info');
    return rows[0]?.info;
  }

  async putKekInfo(info: KekInfo, expected: KekInfo | undefined): Promise<void> {
    await this.#transaction(async (client) => {
      // jsonb equality ignores key order, so the comparison is by content.
      const { rowCount } =
        expected === undefined
          ? await client.query(
              'INSERT INTO temporal_keyring_kek_info (id, info) VALUES (true, $1) ON CONFLICT DO NOTHING',
              [JSON.stringify(info)],
            )
          : await client.query('UPDATE temporal_keyring_kek_info SET info = $1 WHERE info = $2::jsonb', [
              JSON.stringify(info),
              JSON.stringify(expected),
            ]);
      if (rowCount !== 1) throw new KeystoreConflictError('the KEK record changed meanwhile');
      await notify(client, { type: 'kek-changed' });
    });
  }

  async reserveUsage(namespace: string, version: number, count: number, at: number): Promise<UsageRecord> {
    return this.#run(async (client) => {
      // The upsert's row lock orders the reservations (and samples) of a version; it is held for
      // two statements only, and the record is read after COMMIT.
      await inTransaction(client, async () => {
        await client.query(
          `WITH u AS (
             INSERT INTO temporal_keyring_usage AS u (namespace, version, reserved) VALUES ($1, $2, $3)
             ON CONFLICT (namespace, version) DO UPDATE SET reserved = u.reserved + EXCLUDED.reserved
             RETURNING reserved)
           INSERT INTO temporal_keyring_usage_samples (namespace, version, at_ms, reserved)
           SELECT $1, $2, $4, reserved FROM u`,
          [namespace, version, count, at],
        );
        await trimSamples(client, namespace, version, at);
      });
      return readUsage(client, namespace, version);
    });
  }

  async recordUsed(
    namespace: string,
    version: number,
    holder: string,
    used: number,
    at: number,
  ): Promise<void> {
    await this.#query(
      `INSERT INTO temporal_keyring_usage_holders AS h (namespace, version, holder, used, updated_at_ms)
       VALUES ($1, $2, $3, $4, $5)
       ON CONFLICT (namespace, version, holder)
       DO UPDATE SET used = GREATEST(h.used, EXCLUDED.used), updated_at_ms = GREATEST(h.updated_at_ms, EXCLUDED.updated_at_ms)`,
      [namespace, version, holder, used, at],
    );
  }

  async getUsage(namespace: string, version: number): Promise<UsageRecord> {
    return this.#run((client) => readUsage(client, namespace, version));
  }

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now: number): Promise<boolean> {
    const { rowCount } = await this.#query(
      `INSERT INTO temporal_keyring_leases AS l (name, holder, expires_at_ms) VALUES ($1, $2, $3)
       ON CONFLICT (name) DO UPDATE SET holder = EXCLUDED.holder, expires_at_ms = EXCLUDED.expires_at_ms
       WHERE l.holder = EXCLUDED.holder OR l.expires_at_ms <= $4`,
      [name, holder, now + ttlMs, now],
    );
    return rowCount === 1;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    await this.#query('DELETE FROM temporal_keyring_leases WHERE name = $1 AND holder = $2', [name, holder]);
  }

  subscribe(listener: (event: KeystoreEvent) => void): () => void {
    this.#listeners.add(listener);
    if (!this.#listener && !this.#closed) {
      this.#listener = new ChangeListener({
        clientConfig: this.#clientConfig,
        clock: this.#clock,
        logger: this.#logger,
        maxRetryMs: this.#pollIntervalMs,
        namespaces: () => this.listNamespaces(),
        emit: (event) => {
          for (const l of this.#listeners) {
            try {
              l(event);
            } catch (error) {
              this.#logger.warn({ err: { message: String(error) } }, 'keystore listener threw');
            }
          }
        },
      });
      void this.#listener.start();
    }
    return () => {
      this.#listeners.delete(listener);
      // The last subscriber gone (its Keyring closed): give the LISTEN connection back.
      if (this.#listeners.size === 0 && this.#listener) {
        const idle = this.#listener;
        this.#listener = undefined;
        void idle.close();
      }
    };
  }

  /**
   * Waits for the change listener's connection attempt in progress (after {@link subscribe}) and
   * tells whether it is listening. For tests, and for startup code that wants pushes from the start.
   */
  async whenListening(): Promise<boolean> {
    return (await this.#listener?.settled()) ?? false;
  }

  async ping(): Promise<void> {
    await this.#query('SELECT 1');
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#listeners.clear();
    await this.#listener?.close();
    await this.#pool.end();
  }

  // --- Internals -----------------------------------------------------------------------------

  async #query<R extends pg.QueryResultRow>(sql: string, params?: unknown[]): Promise<pg.QueryResult<R>> {
    return this.#run((client) => client.query<R>(sql, params));
  }

  /** Runs `fn` on one pooled connection; a connection that failed is discarded, not reused. */
  async #run<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    // Wait for a pool slot here, so that pg's connect timeout measures connecting only, not the
    // queue in front of a busy pool.
    const releaseSlot = await this.#slots.acquire();
    try {
      return await this.#runOnConnection(fn);
    } finally {
      releaseSlot();
    }
  }

  async #runOnConnection<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    let client: pg.PoolClient;
    try {
      client = await this.#pool.connect();
    } catch (error) {
      throw toKeystoreError(error, this.redactedUrl);
    }
    let broken: Error | undefined;
    // An error on a checked-out client is also thrown by the query that hit it; this keeps it
    // from being unhandled.
    const onError = (error: Error) => {
      broken = error;
    };
    client.on('error', onError);
    try {
      return await fn(client);
    } catch (error) {
      if (!broken && isUnavailable(error)) broken = error as Error;
      throw toKeystoreError(error, this.redactedUrl);
    } finally {
      client.off('error', onError);
      client.release(broken);
    }
  }

  async #transaction<T>(fn: (client: pg.PoolClient) => Promise<T>): Promise<T> {
    return this.#run((client) => inTransaction(client, () => fn(client)));
  }
}

async function inTransaction<T>(client: pg.ClientBase, fn: () => Promise<T>): Promise<T> {
  await client.query('BEGIN');
  try {
    const result = await fn();
    await client.query('COMMIT');
    return result;
  } catch (error) {
    await client.query('ROLLBACK').catch(() => {});
    throw error;
  }
}

interface VersionRow {
  namespace: string;
  version: number;
  key_id: string;
  state: string;
  created_at_ms: string;
  activated_at_ms: string | null;
  deactivated_at_ms: string | null;
  deprecated_at_ms: string | null;
  destroyed_at_ms: string | null;
}

function fromVersionRow(row: VersionRow): KeyVersion {
  if (!KEY_STATES.includes(row.state as KeyState)) {
    throw new KeystoreCorruptError(
      `key version ${row.version} of namespace "${row.namespace}" has unknown state`,
    );
  }
  const v: KeyVersion = {
    namespace: row.namespace,
    version: row.version,
    keyId: row.key_id,
    state: row.state as KeyState,
    createdAt: Number(row.created_at_ms),
  };
  if (row.activated_at_ms !== null) v.activatedAt = Number(row.activated_at_ms);
  if (row.deactivated_at_ms !== null) v.deactivatedAt = Number(row.deactivated_at_ms);
  if (row.deprecated_at_ms !== null) v.deprecatedAt = Number(row.deprecated_at_ms);
  if (row.destroyed_at_ms !== null) v.destroyedAt = Number(row.destroyed_at_ms);
  return v;
}

function sameVersion(a: KeyVersion, b: KeyVersion): boolean {
  return (
    a.state === b.state &&
    a.activatedAt === b.activatedAt &&
    a.deactivatedAt === b.deactivatedAt &&
    a.deprecatedAt === b.deprecatedAt &&
    a.destroyedAt === b.destroyedAt
  );
}

async function notify(client: pg.ClientBase, event: KeystoreEvent): Promise<void> {
  // Delivered at COMMIT, and not at all on rollback.
  await client.query('SELECT pg_notify($1, $2)', [CHANGES_CHANNEL, JSON.stringify(event)]);
}

/**
 * The retention rules of `trimSamples` (keystore.ts), in SQL: keep the samples of the last 25 hours
 * plus the latest one before that, and at most {@link USAGE_SAMPLE_MAX}.
 */
async function trimSamples(
  client: pg.ClientBase,
  namespace: string,
  version: number,
  now: number,
): Promise<void> {
  await client.query(
    `DELETE FROM temporal_keyring_usage_samples
      WHERE namespace = $1 AND version = $2
        AND (
          (at_ms < $3 AND id < (SELECT max(id) FROM temporal_keyring_usage_samples
                                 WHERE namespace = $1 AND version = $2 AND at_ms < $3))
          OR id <= (SELECT id FROM temporal_keyring_usage_samples WHERE namespace = $1 AND version = $2
                     ORDER BY id DESC OFFSET $4 LIMIT 1))`,
    [namespace, version, now - USAGE_SAMPLE_RETENTION_MS, USAGE_SAMPLE_MAX],
  );
}

/** One statement, so one snapshot: the counts and the samples agree with each other. */
async function readUsage(client: pg.ClientBase, namespace: string, version: number): Promise<UsageRecord> {
  const { rows } = await client.query<{
    reserved: string | null;
    used: string | null;
    samples: [number, number][];
  }>(
    `SELECT (SELECT reserved FROM temporal_keyring_usage WHERE namespace = $1 AND version = $2) AS reserved,
            (SELECT sum(used) FROM temporal_keyring_usage_holders WHERE namespace = $1 AND version = $2) AS used,
            (SELECT coalesce(json_agg(json_build_array(at_ms, reserved) ORDER BY id), '[]'::json)
               FROM (SELECT id, at_ms, reserved FROM temporal_keyring_usage_samples
                      WHERE namespace = $1 AND version = $2 ORDER BY id DESC LIMIT $3) recent) AS samples`,
    [namespace, version, USAGE_SAMPLE_MAX],
  );
  const row = rows[0];
  return {
    reserved: Number(row?.reserved ?? 0),
    used: Number(row?.used ?? 0),
    samples: (row?.samples ?? []).map(([at, reserved]) => ({ at: Number(at), reserved: Number(reserved) })),
  };
}

function validateOptions(options: PostgresKeystoreOptions): void {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const { connectionString } = options;
  if (typeof connectionString !== 'string' || !/^postgres(ql)?:\/\//i.test(connectionString)) {
    throw new InvalidOptionError('connectionString', 'must be a postgres:// or postgresql:// URL');
  }
  try {
    new URL(connectionString);
  } catch {
    throw new InvalidOptionError('connectionString', 'is not a valid URL');
  }
  if (options.ssl !== undefined && typeof options.ssl !== 'boolean' && typeof options.ssl !== 'object') {
    throw new InvalidOptionError('ssl', 'must be a boolean or an object of TLS options');
  }
  for (const field of ['pollIntervalMs', 'connectTimeoutMs', 'queryTimeoutMs'] as const) {
    const value = options[field];
    if (value !== undefined && !(Number.isFinite(value) && value > 0)) {
      throw new InvalidOptionError(field, 'must be a positive number of milliseconds');
    }
  }
  if (options.poolSize !== undefined && !(Number.isInteger(options.poolSize) && options.poolSize >= 1)) {
    throw new InvalidOptionError('poolSize', 'must be a positive integer');
  }
}

/** A counting semaphore over the pool's connections, whose waiters give up after a timeout. */
class Slots {
  #free: number;
  readonly #queue: (() => void)[] = [];
  readonly #timeoutMs: number;
  readonly #timeoutError: () => Error;

  constructor(size: number, timeoutMs: number, timeoutError: () => Error) {
    this.#free = size;
    this.#timeoutMs = timeoutMs;
    this.#timeoutError = timeoutError;
  }

  /** Resolves with the function that gives the slot back (to the next waiter, if any). */
  acquire(): Promise<() => void> {
    if (this.#free > 0) {
      this.#free--;
      return Promise.resolve(this.#releaser());
    }
    return new Promise((resolve, reject) => {
      const grant = () => {
        clearTimeout(timer);
        resolve(this.#releaser());
      };
      const timer = setTimeout(() => {
        const i = this.#queue.indexOf(grant);
        if (i >= 0) this.#queue.splice(i, 1);
        reject(this.#timeoutError());
      }, this.#timeoutMs);
      timer.unref();
      this.#queue.push(grant);
    });
  }

  #releaser(): () => void {
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.#queue.shift();
      if (next) next();
      else this.#free++;
    };
  }
}
