import { z } from 'zod';
import { isValidNamespace } from '../model/namespace.ts';
import { rotationPolicySchema } from '../rotation/rotation-policy.ts';

/**
 * The config file (JSON) of the CLI, the codec server and the rotator: where keys are stored, where
 * the KEK comes from, and per-namespace rotation. Flags and environment variables override it (see
 * resolve-settings.ts); every key is optional and has a default.
 *
 * Pipeline position: config file → `resolveSettings` → `openKeyring` / `startServer` / `Rotator`.
 */

/** Where the KEK comes from. Never the KEK itself: a config file is not a secret store. */
export const kekConfigSchema = z.union(
  [
    z.strictObject({
      env: z.string().min(1).describe('name of an environment variable holding the base64 KEK'),
    }),
    z.strictObject({ file: z.string().min(1).describe('path of a file holding the base64 KEK') }),
    z.strictObject({
      passphraseEnv: z.string().min(1).describe('name of an environment variable holding a passphrase'),
    }),
    z.strictObject({
      pkcs11: z
        .strictObject({
          module: z.string().min(1).describe('path of the PKCS#11 module (.so)'),
          token: z.string().min(1).describe('token label'),
          key: z.string().min(1).describe('label of the AES-256 key in the token'),
          pinEnv: z.string().min(1).describe('name of an environment variable holding the user PIN'),
          allowExtractable: z.boolean().describe('accept a key that can leave the token').optional(),
        })
        .describe('a KEK inside an HSM token (temporal-keyring kek create --pkcs11-...)'),
    }),
  ],
  {
    error:
      'must be exactly one of {"env": "VAR"}, {"file": "PATH"}, {"passphraseEnv": "VAR"} or {"pkcs11": {"module", "token", "key", "pinEnv"}}',
  },
);

/** Every key optional; durations as ms or strings like "30d" (see rotation-policy.ts). */
const rotationSchema = rotationPolicySchema;

export const namespaceConfigSchema = z.strictObject({
  /** Overrides of `defaults.rotation` for this namespace. */
  rotation: rotationSchema.optional(),
  /** Let deprecated key versions of this namespace decrypt. Default: `defaults.allowDeprecatedDecrypt`. */
  allowDeprecatedDecrypt: z.boolean().optional(),
  /**
   * Let `keys export` hand out this namespace's raw keys (workers in other languages). Marks the
   * namespace in the keystore on first export; as in Vault, a mark is never removed.
   */
  exportable: z.boolean().optional(),
});

export const configSchema = z.strictObject({
  /** Optional `$schema` reference, ignored. */
  $schema: z.string().optional(),
  /** `file:./keys`, a directory path, or `postgres://...`. Default `./.temporal-keyring`. */
  keystore: z
    .string()
    .min(1)
    .describe(
      'file:./keys, a directory path, or postgres://...; relative to this file. Default ./.temporal-keyring',
    )
    .optional(),
  kek: kekConfigSchema.describe('where the KEK comes from (never the KEK itself)').optional(),
  /**
   * Further KEKs accepted for unwrapping (never for wrapping). For a KEK rotation without downtime:
   * give every process the new `kek` and the old one here, run `keys rekey`, then remove the old.
   */
  previousKeks: z.array(kekConfigSchema).describe('further KEKs accepted for unwrapping only').optional(),
  defaults: z
    .strictObject({
      rotation: rotationSchema.optional(),
      allowDeprecatedDecrypt: z.boolean().optional(),
    })
    .describe('settings of every namespace: rotation policy and allowDeprecatedDecrypt (default false)')
    .optional(),
  rotator: z
    .strictObject({
      checkInterval: z
        .union([z.number(), z.string()])
        .describe(
          'backstop interval between rotator checks, e.g. "60s" (default); reservations and timers wake it sooner',
        )
        .optional(),
    })
    .describe("the rotator's settings (serve and the rotator command)")
    .optional(),
  namespaces: z
    .record(
      z.string().refine(isValidNamespace, {
        message: 'is not a valid namespace name (letters, digits, ".", "-", "_")',
        abort: true,
      }),
      namespaceConfigSchema,
    )
    .describe('per-namespace overrides of defaults')
    .optional(),
  /**
   * The codec server's options (src/config/server-config.ts). Kept raw: `serve` merges its flags into it
   * and parses it then (loading checks every field, but not the auth requirement `--dev` lifts).
   */
  server: z
    .record(z.string(), z.unknown())
    .describe("the codec server's options (docs/codec-server.md)")
    .optional(),
});

export type KekConfig = z.infer<typeof kekConfigSchema>;
export type NamespaceConfig = z.infer<typeof namespaceConfigSchema>;
export type KeyringConfig = z.infer<typeof configSchema>;

/**
 * The JSON Schema of the config file (draft 2020-12), for editors: point `$schema` at a file
 * written by `temporal-keyring config schema`. The `server` section is the server's own schema.
 */
export function configJsonSchema(serverSchema?: z.ZodType): Record<string, unknown> {
  const schema = z.toJSONSchema(configSchema, { io: 'input', unrepresentable: 'any' }) as Record<
    string,
    unknown
  > & {
    properties: Record<string, unknown>;
  };
  if (serverSchema) {
    const { $schema: _ignored, ...server } = z.toJSONSchema(serverSchema, {
      io: 'input',
      unrepresentable: 'any',
    });
    schema.properties.server = server;
  }
  return { ...schema, title: 'temporal-keyring configuration' };
}
