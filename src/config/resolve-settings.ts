import { readFileSync, statSync } from 'node:fs';
import { isAbsolute, resolve } from 'node:path';
import { InvalidOptionError } from '../errors.ts';
import {
  DEFAULT_DATA_DIR,
  type KeystoreLocation,
  parseKeystoreLocation,
} from '../keystore/keystore-location.ts';
import {
  DEFAULT_CHECK_INTERVAL_MS,
  parseCheckInterval,
  type RotationPolicy,
  resolvePolicy,
} from '../rotation/rotation-policy.ts';
import type { KeyringConfig, NamespaceConfig } from './config-schema.ts';
import { type LoadedConfig, loadConfigFile } from './load-config.ts';

/** Environment variables read by {@link resolveSettings}. */
export const ENV = {
  config: 'TEMPORAL_KEYRING_CONFIG',
  keystore: 'TEMPORAL_KEYRING_KEYSTORE',
  dataDir: 'TEMPORAL_KEYRING_DATA_DIR',
  kek: 'TEMPORAL_KEYRING_KEK',
  kekFile: 'TEMPORAL_KEYRING_KEK_FILE',
} as const;

/** Global flags of the CLI (commander's camel-cased names). All optional. */
export interface SettingsFlags {
  config?: string;
  keystore?: string;
  dataDir?: string;
  kekFile?: string;
  kekPassphraseEnv?: string;
  /** Files holding further KEKs accepted for unwrapping; replaces the config's `previousKeks`. */
  previousKekFile?: string[];
  /** A KEK in a PKCS#11 token: module path, token label, key label, env var of the PIN (all four). */
  pkcs11Module?: string;
  pkcs11Token?: string;
  pkcs11Key?: string;
  pkcs11PinEnv?: string;
  /** A sealed keystore's KEK: a file (mode 0600) holding a threshold of its unseal keys, one per line. */
  unsealKeysFile?: string;
}

/**
 * Where the KEK comes from, resolved but not yet loaded. A passphrase has no salt here: the salt
 * lives in the keystore, and `openKeyring` reads (or creates) it.
 */
export type KekSpec =
  | { type: 'base64'; value: string }
  | { type: 'file'; path: string }
  | { type: 'passphrase'; passphrase: string }
  | { pkcs11: { module: string; token: string; key: string; pin: string; allowExtractable?: boolean } }
  | { shares: string[] };

/** Which of the precedence levels supplied a setting. */
export type SettingOrigin = `flag ${string}` | `env ${string}` | `config ${string}` | 'default';

/** Everything the CLI, server and rotator need, after precedence: flags > env > config > defaults. */
export interface ResolvedSettings {
  keystore: KeystoreLocation;
  keystoreOrigin: SettingOrigin;
  /**
   * Reads the KEK's source (environment variables are read only now, so that commands without a
   * KEK never fail over a missing one). Undefined when no KEK was given anywhere.
   */
  kek(): KekSpec | undefined;
  kekOrigin: SettingOrigin | undefined;
  /** Further KEKs accepted for unwrapping (`--previous-kek-file`, else the config's `previousKeks`). Read lazily too. */
  previousKeks(): KekSpec[];
  /** The parsed config file (`{}` when none). */
  config: KeyringConfig;
  /** Absolute path of the config file, if one was read. */
  configPath: string | undefined;
  /** Whether a namespace's deprecated versions may decrypt (config: namespace, then defaults). */
  allowDeprecatedDecrypt(namespace: string): boolean;
  /** The config section of a namespace (`{}` when it has none). */
  namespace(namespace: string): NamespaceConfig;
  /**
   * A namespace's rotation policy: built-in defaults < config `defaults.rotation` < its own section,
   * checked against the rotator's check interval (`checkIntervalMs`).
   */
  rotationPolicy(namespace: string): RotationPolicy;
  /** The rotator's backstop check interval (config `rotator.checkInterval`, default 60 s). */
  checkIntervalMs: number;
  /**
   * The same settings with another check interval (the `--check-interval` flag); throws when the
   * config's defaults or a namespace's policy cannot cover it (see `assertLeadTimeCovers`).
   */
  withCheckInterval(ms: number): ResolvedSettings;
}

/**
 * Resolves settings. Reads the config file named by `--config` or `TEMPORAL_KEYRING_CONFIG`, if
 * any. Two flags that name the same thing (`--keystore` and `--data-dir`, `--kek-file` and
 * `--kek-passphrase-env`) are a usage error rather than a silent choice.
 */
export async function resolveSettings(
  flags: SettingsFlags = {},
  env: NodeJS.ProcessEnv = process.env,
  cwd: string = process.cwd(),
): Promise<ResolvedSettings> {
  const configFile = flags.config ?? nonEmpty(env[ENV.config]);
  const loaded: LoadedConfig | undefined = configFile
    ? await loadConfigFile(resolve(cwd, configFile))
    : undefined;
  return settingsFrom(flags, env, cwd, loaded);
}

/** {@link resolveSettings} with the config file already loaded (or none). */
export function settingsFrom(
  flags: SettingsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
  loaded: LoadedConfig | undefined,
): ResolvedSettings {
  const config = loaded?.config ?? {};
  const configDir = loaded?.dir ?? cwd;
  const { keystore, keystoreOrigin } = resolveKeystore(flags, env, cwd, config, configDir);
  const { kek, kekOrigin } = resolveKek(flags, env, cwd, config, configDir);
  const readKek = () => kek?.();
  const previousKeks = resolvePreviousKeks(flags, env, cwd, config, configDir);
  const namespaces = config.namespaces ?? {};
  const configInterval =
    config.rotator?.checkInterval === undefined
      ? DEFAULT_CHECK_INTERVAL_MS
      : parseCheckInterval(config.rotator.checkInterval, 'rotator.checkInterval');
  const build = (checkIntervalMs: number): ResolvedSettings => {
    const rotationPolicy = (ns: string) =>
      resolvePolicy(
        config.defaults?.rotation,
        namespaces[ns]?.rotation,
        namespaces[ns] ? `namespaces.${ns}.rotation` : 'defaults.rotation',
        checkIntervalMs,
      );
    // Every policy the file names must be able to rotate in time: refuse it up front.
    resolvePolicy(config.defaults?.rotation, undefined, 'defaults.rotation', checkIntervalMs);
    for (const ns of Object.keys(namespaces)) rotationPolicy(ns);
    return {
      ...common,
      rotationPolicy,
      checkIntervalMs,
      withCheckInterval: (ms) => build(ms),
    };
  };
  const common = {
    keystore,
    keystoreOrigin,
    kek: readKek,
    kekOrigin,
    previousKeks,
    config,
    configPath: loaded?.path,
    allowDeprecatedDecrypt: (ns: string) =>
      namespaces[ns]?.allowDeprecatedDecrypt ?? config.defaults?.allowDeprecatedDecrypt ?? false,
    namespace: (ns: string) => namespaces[ns] ?? {},
  };
  return build(configInterval);
}

function resolveKeystore(
  flags: SettingsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
  config: KeyringConfig,
  configDir: string,
): { keystore: KeystoreLocation; keystoreOrigin: SettingOrigin } {
  if (flags.keystore !== undefined && flags.dataDir !== undefined) {
    throw new InvalidOptionError('--keystore', 'give either --keystore or --data-dir, not both');
  }
  if (flags.keystore !== undefined) {
    return {
      keystore: parseKeystoreLocation(flags.keystore, cwd, '--keystore'),
      keystoreOrigin: 'flag --keystore',
    };
  }
  if (flags.dataDir !== undefined) {
    return { keystore: fileLocation(flags.dataDir, cwd, '--data-dir'), keystoreOrigin: 'flag --data-dir' };
  }
  const fromEnv = nonEmpty(env[ENV.keystore]);
  if (fromEnv !== undefined) {
    return {
      keystore: parseKeystoreLocation(fromEnv, cwd, ENV.keystore),
      keystoreOrigin: `env ${ENV.keystore}`,
    };
  }
  const dataDir = nonEmpty(env[ENV.dataDir]);
  if (dataDir !== undefined) {
    return { keystore: fileLocation(dataDir, cwd, ENV.dataDir), keystoreOrigin: `env ${ENV.dataDir}` };
  }
  if (config.keystore !== undefined) {
    return {
      keystore: parseKeystoreLocation(config.keystore, configDir, 'keystore'),
      keystoreOrigin: 'config keystore',
    };
  }
  return { keystore: { kind: 'file', dir: resolve(cwd, DEFAULT_DATA_DIR) }, keystoreOrigin: 'default' };
}

/** A data directory is always a path, even when it looks like a URL. */
function fileLocation(dir: string, base: string, field: string): KeystoreLocation {
  if (dir.trim() === '') throw new InvalidOptionError(field, 'must be a directory path');
  return { kind: 'file', dir: isAbsolute(dir) ? dir : resolve(base, dir) };
}

function resolveKek(
  flags: SettingsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
  config: KeyringConfig,
  configDir: string,
): { kek: (() => KekSpec) | undefined; kekOrigin: SettingOrigin | undefined } {
  if (flags.kekFile !== undefined && flags.kekPassphraseEnv !== undefined) {
    throw new InvalidOptionError('--kek-file', 'give either --kek-file or --kek-passphrase-env, not both');
  }
  if (flags.unsealKeysFile !== undefined) {
    const path = resolve(cwd, flags.unsealKeysFile);
    return { kek: () => ({ shares: readUnsealKeysFile(path) }), kekOrigin: 'flag --unseal-keys-file' };
  }
  const pkcs11 = pkcs11FromFlags(flags, env);
  if (pkcs11) {
    if (flags.kekFile !== undefined || flags.kekPassphraseEnv !== undefined) {
      throw new InvalidOptionError(
        '--pkcs11-key',
        'give either a PKCS#11 key or --kek-file/--kek-passphrase-env, not both',
      );
    }
    return { kek: pkcs11, kekOrigin: 'flag --pkcs11-key' };
  }
  if (flags.kekFile !== undefined) {
    const path = resolve(cwd, flags.kekFile);
    return { kek: () => ({ type: 'file', path }), kekOrigin: 'flag --kek-file' };
  }
  if (flags.kekPassphraseEnv !== undefined) {
    const name = flags.kekPassphraseEnv;
    return {
      kek: () => ({ type: 'passphrase', passphrase: requireEnv(env, name, '--kek-passphrase-env') }),
      kekOrigin: 'flag --kek-passphrase-env',
    };
  }
  const kekFile = nonEmpty(env[ENV.kekFile]);
  const kekValue = nonEmpty(env[ENV.kek]);
  if (kekFile !== undefined && kekValue !== undefined) {
    throw new InvalidOptionError(ENV.kek, `set either ${ENV.kek} or ${ENV.kekFile}, not both`);
  }
  if (kekFile !== undefined) {
    const path = resolve(cwd, kekFile);
    return { kek: () => ({ type: 'file', path }), kekOrigin: `env ${ENV.kekFile}` };
  }
  if (kekValue !== undefined)
    return { kek: () => ({ type: 'base64', value: kekValue }), kekOrigin: `env ${ENV.kek}` };
  const fromConfig = config.kek;
  if (fromConfig === undefined) return { kek: undefined, kekOrigin: undefined };
  if ('env' in fromConfig) {
    const name = fromConfig.env;
    return {
      kek: () => ({ type: 'base64', value: requireEnv(env, name, 'kek.env') }),
      kekOrigin: 'config kek.env',
    };
  }
  if ('file' in fromConfig) {
    const path = resolve(configDir, fromConfig.file);
    return { kek: () => ({ type: 'file', path }), kekOrigin: 'config kek.file' };
  }
  if ('pkcs11' in fromConfig) {
    const { pinEnv, ...where } = fromConfig.pkcs11;
    return {
      kek: () => ({ pkcs11: { ...where, pin: requireEnv(env, pinEnv, 'kek.pkcs11.pinEnv') } }),
      kekOrigin: 'config kek.pkcs11',
    };
  }
  const name = fromConfig.passphraseEnv;
  return {
    kek: () => ({ type: 'passphrase', passphrase: requireEnv(env, name, 'kek.passphraseEnv') }),
    kekOrigin: 'config kek.passphraseEnv',
  };
}

function resolvePreviousKeks(
  flags: SettingsFlags,
  env: NodeJS.ProcessEnv,
  cwd: string,
  config: KeyringConfig,
  configDir: string,
): () => KekSpec[] {
  if (flags.previousKekFile !== undefined && flags.previousKekFile.length > 0) {
    const paths = flags.previousKekFile.map((f) => resolve(cwd, f));
    return () => paths.map((path) => ({ type: 'file', path }));
  }
  const list = config.previousKeks ?? [];
  return () =>
    list.map((entry, i): KekSpec => {
      const field = `previousKeks.${i}`;
      if ('env' in entry) return { type: 'base64', value: requireEnv(env, entry.env, `${field}.env`) };
      if ('file' in entry) return { type: 'file', path: resolve(configDir, entry.file) };
      if ('pkcs11' in entry) {
        const { pinEnv, ...where } = entry.pkcs11;
        return { pkcs11: { ...where, pin: requireEnv(env, pinEnv, `${field}.pkcs11.pinEnv`) } };
      }
      return {
        type: 'passphrase',
        passphrase: requireEnv(env, entry.passphraseEnv, `${field}.passphraseEnv`),
      };
    });
}

/** Unseal keys, one per line (`#` comments allowed), from a file only its owner may read. */
function readUnsealKeysFile(path: string): string[] {
  const info = statSync(path, { throwIfNoEntry: false });
  if (!info?.isFile()) throw new InvalidOptionError('--unseal-keys-file', `cannot read ${path}`);
  if ((info.mode & 0o077) !== 0) {
    throw new InvalidOptionError(
      '--unseal-keys-file',
      `${path} may be read by group or others; restrict it with: chmod 600 ${path}`,
    );
  }
  return readFileSync(path, 'utf8')
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'));
}

/** The four `--pkcs11-*` flags: all or none. */
function pkcs11FromFlags(flags: SettingsFlags, env: NodeJS.ProcessEnv): (() => KekSpec) | undefined {
  const given = {
    '--pkcs11-module': flags.pkcs11Module,
    '--pkcs11-token': flags.pkcs11Token,
    '--pkcs11-key': flags.pkcs11Key,
    '--pkcs11-pin-env': flags.pkcs11PinEnv,
  };
  const present = Object.entries(given).filter(([, v]) => v !== undefined);
  if (present.length === 0) return undefined;
  const missing = Object.entries(given).find(([, v]) => v === undefined);
  if (missing) throw new InvalidOptionError(missing[0], 'is required with the other --pkcs11-* flags');
  const { pkcs11Module, pkcs11Token, pkcs11Key, pkcs11PinEnv } = flags as Required<SettingsFlags>;
  return () => ({
    pkcs11: {
      module: pkcs11Module,
      token: pkcs11Token,
      key: pkcs11Key,
      pin: requireEnv(env, pkcs11PinEnv, '--pkcs11-pin-env'),
    },
  });
}

function requireEnv(env: NodeJS.ProcessEnv, name: string, field: string): string {
  const value = nonEmpty(env[name]);
  if (value === undefined) throw new InvalidOptionError(field, `environment variable ${name} is not set`);
  return value;
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}
