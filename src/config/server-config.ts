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
      })
      .optional(),
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
