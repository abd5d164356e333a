import cluster from 'node:cluster';
import { stat } from 'node:fs/promises';
import { type Command, Option } from 'commander';
import pino from 'pino';
import { requireExistingKeystore } from '../cli/context.ts';
import type { PayloadFormat } from '../src/codec/payload-format.ts';
import { resolveSettings, type SettingsFlags } from '../src/config/resolve-settings.ts';
import {
  isLoopbackAddress,
  parseServerConfig,
  type ServerConfig,
  type ServerConfigInput,
} from '../src/config/server-config.ts';
import { InvalidOptionError, KekMismatchError } from '../src/errors.ts';
import type { EsdkEngine } from '../src/esdk/engine.ts';
import { type KekInput, openKeyring } from '../src/open-keyring.ts';
import { parseCheckInterval } from '../src/rotation/rotation-policy.ts';
import { parseWorkers, runCluster, WORKER_READY, workerCount } from './cluster.ts';
import { clusterMetricsText } from './cluster-metrics.ts';
import { ensureDevKek } from './dev-kek.ts';
import { type RunningServer, startServer } from './main.ts';
import { Metrics } from './metrics.ts';

/** Environment variables of the `serve` command (flags win over them; they win over the config file). */
export const SERVE_ENV = {
  host: 'TEMPORAL_KEYRING_HOST',
  port: 'TEMPORAL_KEYRING_PORT',
  pathPrefix: 'TEMPORAL_KEYRING_PATH_PREFIX',
  bodyLimit: 'TEMPORAL_KEYRING_BODY_LIMIT',
  corsOrigins: 'TEMPORAL_KEYRING_CORS_ORIGINS',
  corsCredentials: 'TEMPORAL_KEYRING_CORS_CREDENTIALS',
  tlsCert: 'TEMPORAL_KEYRING_TLS_CERT',
  tlsKey: 'TEMPORAL_KEYRING_TLS_KEY',
  tlsClientCa: 'TEMPORAL_KEYRING_TLS_CLIENT_CA',
  dev: 'TEMPORAL_KEYRING_DEV',
  devAllowRemote: 'TEMPORAL_KEYRING_DEV_ALLOW_REMOTE',
  engine: 'TEMPORAL_KEYRING_ENGINE',
  payloadFormat: 'TEMPORAL_KEYRING_PAYLOAD_FORMAT',
  logLevel: 'TEMPORAL_KEYRING_LOG_LEVEL',
  rotator: 'TEMPORAL_KEYRING_ROTATOR',
  checkInterval: 'TEMPORAL_KEYRING_CHECK_INTERVAL',
  workers: 'TEMPORAL_KEYRING_WORKERS',
} as const;

export interface ServeFlags {
  dev?: boolean;
  devAllowRemote?: boolean;
  host?: string;
  port?: string;
  pathPrefix?: string;
  bodyLimit?: string;
  corsOrigin?: string[];
  corsCredentials?: boolean;
  tlsCert?: string;
  tlsKey?: string;
  tlsClientCa?: string;
  engine?: string;
  payloadFormat?: string;
  logLevel?: string;
  /** commander's `--no-rotator` sets this to false. */
  rotator?: boolean;
  checkInterval?: string;
  workers?: string;
}

/**
 * Adds `serve` to the CLI: runs the codec server until SIGTERM or SIGINT. Keystore and KEK come
 * from the CLI's global settings (`--config`, `--keystore`/`--data-dir`, `--kek-file`, env); the
 * server section from flags > `TEMPORAL_KEYRING_*` env > the config file's `server` > defaults.
 */
export function registerServeCommand(program: Command): Command {
  return program
    .command('serve')
    .description('run the codec server for the Temporal Web UI and CLI')
    .option(
      '--dev',
      `development mode: no auth, dev CORS origins, generated KEK, namespaces created on first use (env ${SERVE_ENV.dev})`,
    )
    .option(
      '--dev-allow-remote',
      `let dev mode (no authentication) listen beyond loopback; refused without it (env ${SERVE_ENV.devAllowRemote}=true)`,
    )
    .option('--host <host>', `address to listen on (env ${SERVE_ENV.host}; default 127.0.0.1)`)
    .option('--port <port>', `port to listen on, 0 for any (env ${SERVE_ENV.port}; default 8888)`)
    .option(
      '--path-prefix <prefix>',
      `mount the codec routes under this path, e.g. /codec (env ${SERVE_ENV.pathPrefix})`,
    )
    .option(
      '--body-limit <bytes>',
      `largest request body in bytes, at least 4194304 (env ${SERVE_ENV.bodyLimit}; default 8388608)`,
    )
    .option(
      '--cors-origin <origin>',
      `allowed Web UI origin, exact; repeat for more (env ${SERVE_ENV.corsOrigins}, comma-separated)`,
      (value: string, previous: string[] | undefined) => [...(previous ?? []), value],
    )
    .option('--cors-credentials', `allow cross-origin credentials (env ${SERVE_ENV.corsCredentials}=true)`)
    .option('--tls-cert <file>', `TLS certificate chain, PEM (env ${SERVE_ENV.tlsCert})`)
    .option('--tls-key <file>', `TLS private key, PEM (env ${SERVE_ENV.tlsKey})`)
    .option(
      '--tls-client-ca <file>',
      `require client certificates signed by this CA, PEM: mutual TLS (env ${SERVE_ENV.tlsClientCa})`,
    )
    .addOption(
      new Option(
        '--engine <engine>',
        `ESDK engine: fast (node:crypto) or sdk (the AWS Encryption SDK itself; same bytes) (env ${SERVE_ENV.engine}; default fast)`,
      ).choices(['sdk', 'fast']),
    )
    .addOption(
      new Option(
        '--payload-format <format>',
        `payload format /encode writes: 1, or 2 (compact, ~100 B smaller; readers before 0.2.0 cannot read it); /decode reads both (env ${SERVE_ENV.payloadFormat}; default 1)`,
      ).choices(['1', '2']),
    )
    .addOption(
      new Option('--log-level <level>', `log level (env ${SERVE_ENV.logLevel}; default info)`).choices([
        'trace',
        'debug',
        'info',
        'warn',
        'error',
        'fatal',
        'silent',
      ]),
    )
    .option(
      '--no-rotator',
      `do not run the key rotator in this server (env ${SERVE_ENV.rotator}=false; default: run it, one acts per keystore)`,
    )
    .option(
      '--check-interval <duration>',
      `the rotator's backstop check interval, e.g. 10s (env ${SERVE_ENV.checkInterval}, config rotator.checkInterval; default 1m); reservations and promotion timers wake it sooner`,
    )
    .option(
      '--workers <n>',
      `processes serving on this host, 1-64 or auto (one per core), sharing the port and the keystore (env ${SERVE_ENV.workers}, config server.workers; default 1)`,
    )
    .action(async (_flags: ServeFlags, command: Command) => {
      const globals = command.optsWithGlobals() as SettingsFlags & ServeFlags;
      if (cluster.isPrimary) {
        const { config } = await resolveServe(globals, process.env);
        const workers = workerCount(config.workers);
        if (workers > 1) {
          const logger = pino(
            { level: logLevel(globals, process.env), base: { service: 'temporal-keyring', role: 'primary' } },
            pino.destination({ dest: 1, sync: true }),
          );
          process.exitCode = await runCluster({ workers, logger });
          return;
        }
      }
      const starting = runServe(globals, process.env);
      // Handlers go in before the server announces that it listens: a supervisor (or a test) may
      // send SIGTERM the moment it reads that line, and the default action would skip the shutdown.
      const stop = (signal: string) => {
        process.once(signal, () => process.exit(1)); // a second signal: stop now
        starting
          .then((running) => running.close())
          .then(
            () => {
              process.exitCode = 0;
            },
            () => {
              process.exitCode = 1;
            },
          )
          // A cluster worker: let go of the primary's channel so that the process can end.
          .finally(() => cluster.isWorker && process.connected && cluster.worker?.disconnect());
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      try {
        await starting;
      } catch (error) {
        // A cluster worker that cannot start: once the CLI has printed the error, let go of the
        // primary's channel so that the process ends (and the primary fails the command).
        if (cluster.isWorker) setImmediate(() => process.connected && cluster.worker?.disconnect());
        throw error;
      }
      if (cluster.isWorker) process.send?.({ type: WORKER_READY });
    });
}

/** The settings and the validated server section of `serve` (flags > env > config file > defaults). */
async function resolveServe(
  flags: SettingsFlags & ServeFlags,
  env: NodeJS.ProcessEnv,
  cwd: string = process.cwd(),
) {
  let settings = await resolveSettings(
    {
      config: flags.config,
      keystore: flags.keystore,
      dataDir: flags.dataDir,
      kekFile: flags.kekFile,
      kekPassphraseEnv: flags.kekPassphraseEnv,
      previousKekFile: flags.previousKekFile,
    },
    env,
    cwd,
  );
  const intervalText = flags.checkInterval ?? (env[SERVE_ENV.checkInterval] || undefined);
  if (intervalText !== undefined) {
    const field = flags.checkInterval !== undefined ? '--check-interval' : SERVE_ENV.checkInterval;
    settings = settings.withCheckInterval(parseCheckInterval(intervalText, field));
  }
  const config = parseServerConfig(serverConfigInput(flags, env, settings.config.server));
  return { settings, config };
}

function logLevel(flags: ServeFlags, env: NodeJS.ProcessEnv): string {
  return flags.logLevel ?? env[SERVE_ENV.logLevel] ?? 'info';
}

/** What `serve` does, without the signal handling: for tests and embedding. */
export async function runServe(
  flags: SettingsFlags & ServeFlags,
  env: NodeJS.ProcessEnv,
  cwd: string = process.cwd(),
): Promise<RunningServer> {
  const { settings, config } = await resolveServe(flags, env, cwd);
  const level = logLevel(flags, env);
  // Asynchronous: a request never waits for stdout. Flushed on shutdown (startServer's close) and
  // on exit (pino's own exit hook). A cluster worker's lines carry its pid and worker number.
  const base = cluster.isWorker
    ? { service: 'temporal-keyring', pid: process.pid, worker: cluster.worker?.id }
    : { service: 'temporal-keyring' };
  const logger = pino({ level, base }, pino.destination({ dest: 1, sync: false }));

  // As every command but `keys create`: a mistyped directory must not start an empty keystore
  // with a fresh KEK record. Dev mode creates it, and says so.
  if (!config.dev) await requireExistingKeystore(settings);
  else if (settings.keystore.kind === 'file' && !(await isDirectory(settings.keystore.dir))) {
    logger.warn({ dir: settings.keystore.dir }, 'DEV MODE: creating a new keystore directory');
  }

  let kek: KekInput | undefined = settings.kek();
  const noKek = () =>
    new InvalidOptionError(
      'kek',
      'is required: set TEMPORAL_KEYRING_KEK (base64), TEMPORAL_KEYRING_KEK_FILE, --kek-file, or kek in the config file (or initialize a sealed keystore with: temporal-keyring operator init)',
    );
  if (!kek && !config.dev) {
    // No KEK given: a keystore sealed with unseal keys (operator init) starts sealed.
    kek = { shares: [], startSealed: true };
  }
  if (!kek) {
    if (!config.dev || settings.keystore.kind !== 'file') throw noKek();
    const dev = await ensureDevKek(settings.keystore.dir);
    kek = { type: 'file', path: dev.path };
    logger.warn(
      { kekFile: dev.path, created: dev.created },
      '!!! DEV MODE: using a generated KEK stored in a plain file. Development only: never protect real data with it !!!',
    );
  }
  if (config.dev) {
    if (config.auth.tokens.length === 0 && !config.auth.jwt) {
      logger.warn(
        {},
        '!!! DEV MODE: NO AUTHENTICATION. Anyone who can reach this port can encrypt and decrypt !!!',
      );
    }
    if (!isLoopbackAddress(config.host)) {
      // Only with devAllowRemote: the config refuses it otherwise.
      logger.warn({ host: config.host }, '!!! DEV MODE listening beyond loopback (--dev-allow-remote) !!!');
    }
  }

  const engineName = flags.engine ?? env[SERVE_ENV.engine] ?? 'fast';
  const engine = await loadEngine(engineName);
  const payloadFormat = parsePayloadFormat(flags.payloadFormat ?? env[SERVE_ENV.payloadFormat] ?? '1');
  const sealedStart = 'shares' in kek;
  const opened = await openKeyring({
    keystore: settings.keystore.kind === 'file' ? settings.keystore.dir : settings.keystore.connectionString,
    createIfMissing: config.dev,
    kek,
    previousKeks: settings.previousKeks(),
    logger,
    createNamespacesOnFirstUse: config.dev,
    allowDeprecatedDecrypt: (ns) => settings.allowDeprecatedDecrypt(ns),
    policies: (ns) => settings.rotationPolicy(ns),
  }).catch((error: unknown) => {
    throw sealedStart && error instanceof KekMismatchError ? noKek() : error;
  });
  if (opened.keyring.keks[0]?.sealed && workerCount(config.workers) > 1) {
    // Unsealing is per process and the cluster spreads requests over workers: an unseal request
    // could not choose the worker it unseals. One process per sealed server; replicas scale it.
    await opened.close();
    throw new InvalidOptionError(
      '--workers',
      'must be 1 with a sealed keystore (unseal keys are given per process, and the cluster cannot route an unseal request to a chosen worker): run more replicas instead, or give the server an HSM KEK (docs/sealing-and-hsm.md)',
    );
  }
  if (opened.keyring.keks[0]?.sealed) {
    logger.warn(
      { keystoreId: opened.keyring.keystoreId, kekId: opened.keyring.kekId },
      'the keystore is sealed: codec and admin requests answer 503 ERR_SEALED until a threshold of unseal keys is given (temporal-keyring operator unseal --url ...)',
    );
  }
  // A worker of `serve --workers` answers /metrics with the whole cluster's (cluster-metrics.ts).
  const metrics = new Metrics({
    defaultMetrics: true,
    exposition: cluster.isWorker ? clusterMetricsText : undefined,
  });
  // Usage gauges and budget events in every server, whether or not its rotator is the leader.
  opened.meter?.on(metrics.meterListener());
  // Every server runs a rotator; the keystore lease makes exactly one of them act at a time.
  const runRotator = flags.rotator !== false && bool(env[SERVE_ENV.rotator], SERVE_ENV.rotator) !== false;
  // With --no-rotator an observing rotator still reports the usage gauges at each interval.
  // The keyring's own policies, meter and clock: see OpenedKeyring.rotator.
  const rotator = opened.rotator({
    logger: logger.child({ channel: 'rotator' }),
    metrics: metrics.rotatorMetrics(),
    checkIntervalMs: settings.checkIntervalMs,
    act: runRotator,
  });
  const closeKeyring = async () => {
    await rotator?.stop();
    await opened.close();
  };
  try {
    const running = await startServer({
      config,
      keyring: opened.keyring,
      closeKeyring,
      logger,
      engine,
      payloadFormat,
      metrics,
      rotationPolicy: (ns) => settings.rotationPolicy(ns),
    });
    rotator?.start();
    return running;
  } catch (error) {
    await closeKeyring();
    throw error;
  }
}

async function isDirectory(path: string): Promise<boolean> {
  return stat(path).then(
    (s) => s.isDirectory(),
    () => false,
  );
}

async function loadEngine(name: string): Promise<EsdkEngine> {
  if (name === 'sdk') return (await import('../src/esdk/sdk-engine.ts')).sdkEngine;
  if (name === 'fast') return (await import('../src/esdk/fast-engine.ts')).fastEngine;
  throw new InvalidOptionError('--engine', 'must be sdk or fast');
}

function parsePayloadFormat(text: string): PayloadFormat {
  if (text === '1' || text === '2') return Number(text) as PayloadFormat;
  throw new InvalidOptionError('--payload-format', `must be 1 or 2 (env ${SERVE_ENV.payloadFormat})`);
}

/** The server section as flags > env > config file give it, before validation. */
export function serverConfigInput(
  flags: ServeFlags,
  env: NodeJS.ProcessEnv,
  fromFile: Record<string, unknown> | undefined,
): ServerConfigInput {
  const input = structuredClone(fromFile ?? {}) as Record<string, unknown> & ServerConfigInput;
  const pick = (flag: string | undefined, name: string) => flag ?? (env[name] === '' ? undefined : env[name]);

  const host = pick(flags.host, SERVE_ENV.host);
  if (host !== undefined) input.host = host;
  const port = pick(flags.port, SERVE_ENV.port);
  if (port !== undefined) input.port = integer(port, flags.port !== undefined ? '--port' : SERVE_ENV.port);
  const prefix = pick(flags.pathPrefix, SERVE_ENV.pathPrefix);
  if (prefix !== undefined) input.pathPrefix = prefix;
  const limit = pick(flags.bodyLimit, SERVE_ENV.bodyLimit);
  if (limit !== undefined)
    input.bodyLimit = integer(limit, flags.bodyLimit !== undefined ? '--body-limit' : SERVE_ENV.bodyLimit);

  const cors = { ...(input.cors ?? {}) } as NonNullable<ServerConfigInput['cors']>;
  const origins =
    flags.corsOrigin ??
    env[SERVE_ENV.corsOrigins]
      ?.split(',')
      .map((o) => o.trim())
      .filter(Boolean);
  if (origins && origins.length > 0) cors.origins = origins;
  const credentials =
    flags.corsCredentials ?? bool(env[SERVE_ENV.corsCredentials], SERVE_ENV.corsCredentials);
  if (credentials !== undefined) cors.credentials = credentials;
  input.cors = cors;

  const cert = pick(flags.tlsCert, SERVE_ENV.tlsCert);
  const key = pick(flags.tlsKey, SERVE_ENV.tlsKey);
  const clientCa = pick(flags.tlsClientCa, SERVE_ENV.tlsClientCa);
  if (cert !== undefined || key !== undefined || clientCa !== undefined) {
    const tls = { ...(input.tls ?? {}) } as Partial<NonNullable<ServerConfig['tls']>>;
    if (cert !== undefined) tls.cert = cert;
    if (key !== undefined) tls.key = key;
    if (clientCa !== undefined) tls.clientCa = clientCa;
    input.tls = tls as NonNullable<ServerConfig['tls']>;
  }
  const dev = flags.dev ?? bool(env[SERVE_ENV.dev], SERVE_ENV.dev);
  if (dev !== undefined) input.dev = dev;
  const workers = pick(flags.workers, SERVE_ENV.workers);
  if (workers !== undefined)
    input.workers = parseWorkers(workers, flags.workers !== undefined ? '--workers' : SERVE_ENV.workers);
  const allowRemote = flags.devAllowRemote ?? bool(env[SERVE_ENV.devAllowRemote], SERVE_ENV.devAllowRemote);
  if (allowRemote !== undefined) input.devAllowRemote = allowRemote;
  return input;
}

function integer(text: string, field: string): number {
  if (!/^[0-9]{1,10}$/.test(text.trim()))
    throw new InvalidOptionError(field, `must be a whole number, got ${JSON.stringify(text.slice(0, 32))}`);
  return Number(text.trim());
}

function bool(text: string | undefined, field: string): boolean | undefined {
  if (text === undefined || text === '') return undefined;
  if (/^(1|true|yes|on)$/i.test(text)) return true;
  if (/^(0|false|no|off)$/i.test(text)) return false;
  throw new InvalidOptionError(field, 'must be true or false');
}
