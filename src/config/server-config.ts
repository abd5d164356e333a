import { z } from 'zod';
import { InvalidOptionError } from '../errors.ts';
import { isValidNamespace } from '../model/namespace.ts';

/**
 * The `server` section of the configuration: everything the codec server needs besides the keyring.
 * Validated once, up front, by {@link parseServerConfig}; every later read trusts it.
 */

export const MIB = 1024 * 1024;
/** Temporal's gRPC message limit is 4 MiB: a smaller body limit would refuse real histories. */
export const MIN_BODY_LIMIT = 4 * MIB;
export const DEFAULT_BODY_LIMIT = 8 * MIB;
export const DEFAULT_PORT = 8888;

/**
 * TLS 1.2 suites allowed by default: forward secret (ECDHE) and AEAD (GCM, ChaCha20-Poly1305)
 * only, so no RSA key exchange, CBC or SHA-1 MACs (`AES128-SHA`); then TLS 1.3's own suites.
 */
export const DEFAULT_TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

const WORKERS_RANGE = 'must be a whole number from 1 to 64, or "auto" (one per available core)';

/** Addresses dev mode may listen on without `devAllowRemote`. */
export const LOOPBACK_HOSTS = ['127.0.0.1', 'localhost', '::1'] as const;

export function isLoopbackAddress(host: string): boolean {
  return (
    (LOOPBACK_HOSTS as readonly string[]).includes(host) || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)
  );
}

/** Web UI origins allowed in dev mode when none are configured. */
export const DEV_CORS_ORIGINS = [
  'http://localhost:8233',
  'http://127.0.0.1:8233',
  'http://localhost:8080',
] as const;

export const CODEC_OPERATIONS = ['encode', 'decode', 'admin', 'rewrap'] as const;
export type Operation = (typeof CODEC_OPERATIONS)[number];

const origin = z.string().refine(
  (value) => {
    try {
      const url = new URL(value);
      return (url.protocol === 'http:' || url.protocol === 'https:') && url.origin === value;
    } catch {
      return false;
    }
  },
  {
    message:
      'must be an exact origin like https://cloud.temporal.io (scheme, host, optional port; no path, no trailing slash, no wildcard, not "null")',
  },
);

const sha256Hex = z
  .string()
  .regex(/^[0-9a-f]{64}$/, 'must be the SHA-256 of the token as 64 lowercase hex digits');

const namespaceOrStar = z
  .string()
  .refine((ns) => ns === '*' || isValidNamespace(ns), { message: 'must be a valid namespace name or "*"' });

const jwtSchema = z.strictObject({
  /** Where the identity provider publishes its signing keys. */
  jwksUrl: z.url({ protocol: /^https?$/ }),
  issuer: z.string().min(1),
  audience: z.union([z.string().min(1), z.array(z.string().min(1)).min(1)]),
  /** Asymmetric algorithms only: a JWKS holds public keys, so `none` and HMAC make no sense. */
  algorithms: z
    .array(z.enum(['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA']))
    .min(1)
    .default(['RS256', 'ES256']),
  /** The claim holding Temporal-style permissions `["<namespace>:<read|write|admin>", ...]`. */
  namespaceClaim: z.string().min(1).default('permissions'),
  clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
});

const tokenSchema = z.strictObject({
  /** Names the caller in audit records and logs. */
  name: z.string().regex(/^[A-Za-z0-9._@-]{1,64}$/, 'must be 1-64 letters, digits, ".", "_", "@" or "-"'),
  sha256: sha256Hex,
  namespaces: z.array(namespaceOrStar).min(1),
  operations: z.array(z.enum(CODEC_OPERATIONS)).min(1),
});

export const serverConfigSchema = z
  .strictObject({
    host: z.string().min(1).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(DEFAULT_PORT),
    /** Mount point of the codec routes, e.g. `/codec` (endpoint `https://host/codec`). */
    pathPrefix: z
      .string()
      .regex(
        /^(\/[A-Za-z0-9._~-]+)*$/,
        'must be empty or like /codec (segments of letters, digits, ".", "_", "~", "-"; no trailing slash)',
      )
      .default(''),
    bodyLimit: z
      .number()
      .int()
      .min(MIN_BODY_LIMIT, `must be at least ${MIN_BODY_LIMIT} bytes (4 MiB, Temporal's message limit)`)
      .max(256 * MIB)
      .default(DEFAULT_BODY_LIMIT),
    cors: z
      .strictObject({
        origins: z.array(origin).default([]),
        /** Send `Access-Control-Allow-Credentials: true` (the UI's "include cross-origin credentials"). */
        credentials: z.boolean().default(false),
        maxAgeSeconds: z.number().int().min(0).max(86_400).default(600),
      })
      .prefault({}),
    auth: z
      .strictObject({
        jwt: jwtSchema.optional(),
        tokens: z.array(tokenSchema).default([]),
      })
      .prefault({}),
    tls: z
      .strictObject({
        cert: z.string().min(1),
        key: z.string().min(1),
        /** CA bundle for client certificates: when set, clients must present one it signed (mTLS). */
        clientCa: z.string().min(1).optional(),
        /** OpenSSL cipher list (TLS 1.2 names and TLS 1.3 `TLS_*` names, `:`-separated). */
        ciphers: z.string().min(1).default(DEFAULT_TLS_CIPHERS),
        minVersion: z.enum(['TLSv1.2', 'TLSv1.3']).default('TLSv1.2'),
      })
      .optional(),
    /**
     * Bounds on slow and idle clients, so that a connection cannot be held open indefinitely.
     * Node checks the header and request deadlines every `checkIntervalMs`.
     */
    timeouts: z
      .strictObject({
        /** From connection (or the previous answer) to a request's complete headers. */
        headersMs: z.number().int().min(1).max(600_000).default(20_000),
        /** From connection (or the previous answer) to a request's complete body. */
        requestMs: z.number().int().min(1).max(3_600_000).default(60_000),
        /** How long an idle keep-alive connection stays open after an answer. */
        keepAliveMs: z.number().int().min(1).max(600_000).default(5_000),
        /** TLS: how long a handshake may take. */
        handshakeMs: z.number().int().min(1).max(600_000).default(10_000),
        /** How often the header and request deadlines are checked. */
        checkIntervalMs: z.number().int().min(1).max(60_000).default(1_000),
      })
      .prefault({}),
    /**
     * How long `/readyz` and the admin API's reads wait for the keystore before answering 503
     * `ERR_KEYSTORE_UNAVAILABLE`: shorter than any probe's timeout, while encode and decode keep
     * the keystore's own (longer) query timeout for real work.
     */
    keystoreCheckTimeoutMs: z.number().int().min(1).max(60_000).default(2_000),
    metrics: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** When set, `/metrics` requires `Authorization: Bearer <token>` with this SHA-256. */
        tokenSha256: sha256Hex.optional(),
      })
      .prefault({}),
    admin: z.strictObject({ enabled: z.boolean().default(true) }).prefault({}),
    /** Development mode: no auth required (loopback admin), dev CORS origins, namespaces on first use. */
    dev: z.boolean().default(false),
    /**
     * Dev mode (no authentication) on an address beyond loopback: refused unless this says the
     * operator means it.
     */
    devAllowRemote: z.boolean().default(false),
    /**
     * Processes serving on this host (`serve --workers`): a whole number 1..64, or `auto` for one per
     * available core. 1 is a single process; more fork workers with `node:cluster`.
     */
    workers: z
      .union([z.number().int().min(1, WORKERS_RANGE).max(64, WORKERS_RANGE), z.literal('auto')], {
        error: WORKERS_RANGE,
      })
      .default(1),
    /** How long shutdown waits for in-flight requests before closing connections. */
    shutdownTimeoutMs: z.number().int().min(0).max(600_000).default(10_000),
  })
  .superRefine((config, ctx) => {
    if (!config.dev && !config.auth.jwt && config.auth.tokens.length === 0) {
      ctx.addIssue({
        code: 'custom',
        path: ['auth'],
        message: 'at least one method (auth.jwt or auth.tokens) is required unless dev is true',
      });
    }
    if (config.dev && !config.devAllowRemote && !isLoopbackAddress(config.host)) {
      ctx.addIssue({
        code: 'custom',
        path: ['host'],
        message: `dev mode listens on loopback only (127.0.0.1, localhost, ::1), got "${config.host}": use --dev-allow-remote (server.devAllowRemote: true) if you mean it`,
      });
    }
    if (config.dev && config.workers !== 1) {
      ctx.addIssue({
        code: 'custom',
        path: ['workers'],
        message:
          'dev mode runs one process (it creates the keystore, its KEK and namespaces on first use): drop --workers or --dev',
      });
    }
    const names = new Set<string>();
    config.auth.tokens.forEach((t, i) => {
      if (names.has(t.name))
        ctx.addIssue({
          code: 'custom',
          path: ['auth', 'tokens', i, 'name'],
          message: `duplicate token name "${t.name}"`,
        });
      names.add(t.name);
    });
  });

export type ServerConfigInput = z.input<typeof serverConfigSchema>;
export type ServerConfig = z.output<typeof serverConfigSchema>;
export type JwtConfig = NonNullable<ServerConfig['auth']['jwt']>;
export type TokenConfig = ServerConfig['auth']['tokens'][number];

/**
 * Validates the server section once and fills defaults. Throws `InvalidOptionError` naming the
 * first offending field, e.g. `server.cors.origins.0: must be an exact origin ...`.
 */
export function parseServerConfig(input: unknown, fieldPrefix = 'server'): ServerConfig {
  const result = serverConfigSchema.safeParse(input ?? {});
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const field = [fieldPrefix, ...issue.path.map(String)].filter(Boolean).join('.');
    throw new InvalidOptionError(field, issue.message);
  }
  const config = result.data;
  if (config.dev && config.cors.origins.length === 0) config.cors.origins = [...DEV_CORS_ORIGINS];
  return config;
}
