import { stat } from 'node:fs/promises';
import type { Command } from 'commander';
import {
  ENV,
  type ResolvedSettings,
  resolveSettings,
  type SettingsFlags,
} from '../src/config/resolve-settings.ts';
import { InvalidOptionError, KeystoreUnavailableError } from '../src/errors.ts';
import type { Keystore } from '../src/keystore/keystore.ts';
import { openKeystore } from '../src/keystore/open-keystore.ts';
import {
  type KekInput,
  type OpenedKeyring,
  type OpenKeyringOptions,
  openKeyring,
} from '../src/open-keyring.ts';

/**
 * What every command shares: the global flags, the settings they resolve to (flags > env >
 * config > defaults), and the keyring or keystore those settings name. Commands registered by
 * other modules (`serve`, `keys status`, `rotator`) use these too, so that every command reads
 * configuration the same way.
 */

/** The global flags of a command (commander keeps them on the root program). */
export function globalFlags(command: Command): SettingsFlags {
  const o = command.optsWithGlobals() as Record<string, unknown>;
  const pick = (key: keyof SettingsFlags) => (typeof o[key] === 'string' ? (o[key] as string) : undefined);
  return {
    config: pick('config'),
    keystore: pick('keystore'),
    dataDir: pick('dataDir'),
    kekFile: pick('kekFile'),
    kekPassphraseEnv: pick('kekPassphraseEnv'),
    previousKekFile: Array.isArray(o.previousKekFile) ? (o.previousKekFile as string[]) : undefined,
    pkcs11Module: pick('pkcs11Module'),
    pkcs11Token: pick('pkcs11Token'),
    pkcs11Key: pick('pkcs11Key'),
    pkcs11PinEnv: pick('pkcs11PinEnv'),
    unsealKeysFile: pick('unsealKeysFile'),
  };
}

/** The settings of a command's invocation. */
export function settingsOf(command: Command): Promise<ResolvedSettings> {
  return resolveSettings(globalFlags(command));
}

/** The KEK the settings name, or a usage error that says every way to give one. */
export function requireKek(settings: ResolvedSettings): KekInput {
  const kek = settings.kek();
  if (!kek) {
    throw new InvalidOptionError(
      'kek',
      `no KEK given: set ${ENV.kek} (base64) or ${ENV.kekFile}, pass --kek-file or --kek-passphrase-env, or set "kek" in the config file (generate a KEK with: temporal-keyring keygen)`,
    );
  }
  return kek;
}

/**
 * Opens the keyring the settings name. The CLI does not encrypt, so it meters nothing by default;
 * `allowDeprecatedDecrypt` and the rotation policies (the propagation delay the lifecycle owner
 * applies) follow the config file.
 */
export function openFromSettings(
  settings: ResolvedSettings,
  overrides: Partial<OpenKeyringOptions> = {},
): Promise<OpenedKeyring> {
  const location = settings.keystore;
  return openKeyring({
    keystore: location.kind === 'file' ? location.dir : location.connectionString,
    kek: requireKek(settings),
    previousKeks: settings.previousKeks(),
    meter: false,
    allowDeprecatedDecrypt: (ns) => settings.allowDeprecatedDecrypt(ns),
    policies: (ns) => settings.rotationPolicy(ns),
    ...overrides,
  });
}

/**
 * Refuses a file keystore directory that does not exist, so that a mistyped `--data-dir` is an
 * error rather than a new, empty keystore. Only `keys create` (and `serve --dev`) create one.
 */
export async function requireExistingKeystore(settings: ResolvedSettings): Promise<void> {
  if (settings.keystore.kind !== 'file') return;
  const dir = settings.keystore.dir;
  const exists = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) {
    throw new KeystoreUnavailableError(
      `no keystore in ${dir} (from ${settings.keystoreOrigin}); create one with: temporal-keyring keys create --namespace <namespace>`,
    );
  }
}

/**
 * Runs `fn` with the keyring of a command's settings, and closes it afterwards. The keystore must
 * exist unless `create` is set.
 */
export async function withKeyring<T>(
  command: Command,
  fn: (opened: OpenedKeyring, settings: ResolvedSettings) => Promise<T>,
  overrides?: Partial<OpenKeyringOptions>,
  options: { create?: boolean } = {},
): Promise<T> {
  const settings = await settingsOf(command);
  if (!options.create) await requireExistingKeystore(settings);
  const opened = await openFromSettings(settings, overrides);
  try {
    return await fn(opened, settings);
  } finally {
    await opened.close();
  }
}

/** Runs `fn` with the existing keystore alone (metadata needs no KEK), and closes it afterwards. */
export async function withKeystore<T>(
  command: Command,
  fn: (keystore: Keystore, settings: ResolvedSettings) => Promise<T>,
): Promise<T> {
  const settings = await settingsOf(command);
  await requireExistingKeystore(settings);
  const keystore = await openKeystore(settings.keystore);
  try {
    return await fn(keystore, settings);
  } finally {
    await keystore.close();
  }
}
