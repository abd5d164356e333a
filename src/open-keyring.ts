import { stat } from 'node:fs/promises';
import type { ConnectionOptions } from 'node:tls';
import { ENV, resolveSettings } from './config/resolve-settings.ts';
import { InvalidOptionError, KekMismatchError, KeystoreUnavailableError } from './errors.ts';
import type { KeyEncryptionKey } from './kek/kek.ts';
import { type KekSource, kekFromPassphrase, loadKek } from './kek/kek-source.ts';
import type { Pkcs11KekOptions } from './kek/pkcs11-kek.ts';
import { ShamirKek } from './kek/shamir-kek.ts';
import type { EncryptionMeter } from './keyring/encryption-meter.ts';
import { Keyring, type LifecycleEvent } from './keyring/keyring.ts';
import type { Keystore } from './keystore/keystore.ts';
import {
  describeKeystoreLocation,
  type KeystoreLocation,
  parseKeystoreLocation,
} from './keystore/keystore-location.ts';
import { openKeystore } from './keystore/open-keystore.ts';
import { emergencyRotation } from './rotation/budget-guard.ts';
import { DEFAULT_ROTATION_POLICY, type RotationPolicy } from './rotation/rotation-policy.ts';
import { Rotator, type RotatorOptions } from './rotation/rotator.ts';
import { UsageMeter } from './rotation/usage-meter.ts';
import { type Clock, systemClock } from './runtime/clock.ts';
import { type Logger, silentLogger } from './runtime/logger.ts';
import { type RandomSource, systemRandom } from './runtime/random.ts';

/**
 * A KEK as `openKeyring` takes it: a ready {@link KeyEncryptionKey}, or a source to load one from.
 * A passphrase may come without its salt: the salt is the keystore's (created with it).
 */
export type KekInput =
  | KeyEncryptionKey
  | KekSource
  | { type: 'passphrase'; passphrase: string; salt?: Uint8Array }
  | ShamirKekInput
  | { pkcs11: Pkcs11KekInput };

/**
 * A Shamir-sealed keystore's KEK (`temporal-keyring operator init`): a threshold of its unseal
 * keys. With `startSealed`, fewer (or none) are accepted and the keyring opens sealed: it answers
 * `ERR_SEALED` until the rest are given to the `ShamirKek` (`keyring.keks[0]`), as the server does.
 */
export interface ShamirKekInput {
  shares: string[];
  startSealed?: boolean;
}

/** A KEK inside a PKCS#11 token; the PIN directly or from an environment variable. */
export type Pkcs11KekInput = Omit<Pkcs11KekOptions, 'pin'> & { pin?: string; pinEnv?: string };

export interface OpenKeyringOptions {
  /**
   * Where keys are stored: a directory path, a `file:` URL, a `postgres://` / `postgresql://` URL,
   * or an open {@link Keystore} (which `close()` then leaves open). Default: what the CLI reads
   * (`TEMPORAL_KEYRING_KEYSTORE`, else the config file in `TEMPORAL_KEYRING_CONFIG`, else
   * `./.temporal-keyring`).
   */
  keystore?: string | Keystore;
  /**
   * The KEK that wraps every key. Default: what the CLI reads (`TEMPORAL_KEYRING_KEK_FILE` or
   * `TEMPORAL_KEYRING_KEK`, else the config file's `kek`); an error when none is given anywhere.
   */
  kek?: KekInput;
  /**
   * Create a file keystore's directory when it does not exist. Default false: a mistyped path is an
   * error (`ERR_KEYSTORE_UNAVAILABLE`), never a new, empty keystore whose keys nothing else has.
   */
  createIfMissing?: boolean;
  /** Further KEKs accepted for unwrapping (to finish an interrupted KEK rotation). */
  previousKeks?: KekInput[];
  clock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /**
   * Encryption counting: `'default'` (a {@link UsageMeter} on the keystore: what rotation by
   * measured usage needs), `false` (off), or your own meter. Default `'default'`.
   */
  meter?: 'default' | false | EncryptionMeter;
  /** Create a namespace's first key when it is first used. Dev mode only. Default false. */
  createNamespacesOnFirstUse?: boolean;
  /** Let deprecated versions decrypt: `true` for every namespace, or a predicate. Default false. */
  allowDeprecatedDecrypt?: boolean | ((namespace: string) => boolean);
  /** How often cached key metadata is re-read. Default 30 s. */
  refreshIntervalMs?: number;
  /**
   * Each namespace's rotation policy, one source for every rule that needs it: the lifecycle owner
   * applies its propagation delay to every activation, and the default meter keeps its budget
   * (`maxEncryptions`, `onBudgetExhausted`) and wakes a rotator at its threshold. Default:
   * `DEFAULT_ROTATION_POLICY` for every namespace. A rotator made by {@link OpenedKeyring.rotator}
   * plans with the same function.
   */
  policies?: (namespace: string) => RotationPolicy;
  /** Told of every lifecycle change made through the keyring (audit logs). */
  onLifecycleEvent?: (event: LifecycleEvent) => void;
  /** File keystore: how long to wait for its lock. Default: the file keystore's. */
  lockTimeoutMs?: number;
  /** PostgreSQL keystore: TLS options passed to `pg` (or put `sslmode` in the URL). */
  ssl?: boolean | ConnectionOptions;
}

export interface OpenedKeyring {
  keyring: Keyring;
  keystore: Keystore;
  /** The default usage meter (undefined with `meter: false` or a meter of your own): a rotator wakes on its events. */
  meter: UsageMeter | undefined;
  /**
   * A {@link Rotator} for this keyring: its keystore, its meter (a reservation that crosses a
   * threshold wakes the rotator), its clock and the same `policies` the keyring and the meter
   * apply, so that no second copy of the policies can disagree with the first. Start it with
   * `start()`, or call `runOnce()`; stop it before {@link close}.
   */
  rotator(options?: OpenedRotatorOptions): Rotator;
  /** Flushes the meter, stops timers, forgets keys, and closes the keystore if it was opened here. */
  close(): Promise<void>;
}

/** What a rotator made by {@link OpenedKeyring.rotator} takes: the rest comes from the keyring. */
export type OpenedRotatorOptions = Omit<
  RotatorOptions,
  'keyring' | 'keystore' | 'policies' | 'meter' | 'clock'
>;

/**
 * The factory applications call: opens the keystore a location names, loads and checks the KEK,
 * wires a usage meter, and returns a ready {@link Keyring}.
 *
 * ```ts
 * // TEMPORAL_KEYRING_KEYSTORE and TEMPORAL_KEYRING_KEK_FILE, like the CLI; or pass them here.
 * const { keyring, close } = await openKeyring();
 * const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
 * ```
 *
 * Pipeline position: application → `openKeyring` (this) → `Keyring` over a `Keystore`.
 */
export async function openKeyring(options: OpenKeyringOptions = {}): Promise<OpenedKeyring> {
  validateOptions(options);
  const { location, kekInput } = await withDefaults(options);
  if (location?.kind === 'file' && !options.createIfMissing) await requireDirectory(location.dir);
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const random = options.random ?? systemRandom;
  const owned = location !== undefined;
  // One policy function for the lifecycle owner, the meter and the rotator.
  const policies = options.policies ?? (() => DEFAULT_ROTATION_POLICY);
  const keystore =
    location === undefined
      ? (options.keystore as Keystore)
      : await openKeystore(location, {
          clock,
          logger,
          lockTimeoutMs: options.lockTimeoutMs,
          ssl: options.ssl,
        });
  let meter: EncryptionMeter | undefined;
  try {
    const kek = await resolveKek(kekInput, keystore, random, 'kek');
    const previousKeks = await Promise.all(
      (options.previousKeks ?? []).map((k, i) => resolveKek(k, keystore, random, `previousKeks.${i}`, false)),
    );
    const chosen = options.meter ?? 'default';
    meter =
      chosen === 'default'
        ? new UsageMeter({ keystore, clock, logger, policies })
        : chosen === false
          ? undefined
          : chosen;
    const keyring = await Keyring.open({
      keystore,
      kek,
      previousKeks,
      clock,
      random,
      logger,
      meter,
      createNamespacesOnFirstUse: options.createNamespacesOnFirstUse,
      allowDeprecatedDecrypt: options.allowDeprecatedDecrypt,
      refreshIntervalMs: options.refreshIntervalMs,
      policies,
      onLifecycleEvent: options.onLifecycleEvent,
    });
    const usageMeter = meter instanceof UsageMeter ? meter : undefined;
    usageMeter?.setBudgetExhaustedHandler(emergencyRotation(keyring, logger));
    let closed: Promise<void> | undefined;
    return {
      keyring,
      keystore,
      meter: usageMeter,
      rotator: (rotatorOptions = {}) =>
        new Rotator({
          logger,
          ...rotatorOptions,
          keyring,
          keystore,
          policies,
          clock,
          meter: usageMeter,
        }),
      close: () => {
        closed ??= (async () => {
          await keyring.close();
          if (owned) await keystore.close();
        })();
        return closed;
      },
    };
  } catch (error) {
    const explained =
      error instanceof KekMismatchError ? await explainMismatch(error, keystore, location) : error;
    await meter?.close().catch(() => {});
    if (owned) await keystore.close().catch(() => {});
    throw explained;
  }
}

/**
 * Fills what the caller left out from the same settings the CLI reads ({@link resolveSettings}:
 * one environment-variable convention, one config file), so that a worker, the CLI and the codec
 * server started in one shell open the same keystore with the same KEK.
 */
async function withDefaults(
  options: OpenKeyringOptions,
): Promise<{ location: KeystoreLocation | undefined; kekInput: KekInput }> {
  const store = options.keystore;
  const needsSettings = store === undefined || options.kek === undefined;
  const settings = needsSettings ? await resolveSettings() : undefined;
  const location =
    store === undefined
      ? settings!.keystore
      : typeof store === 'string'
        ? parseKeystoreLocation(store)
        : undefined;
  const kekInput = options.kek ?? settings!.kek();
  if (!kekInput) {
    throw new InvalidOptionError(
      'kek',
      `is required: pass one, or set ${ENV.kekFile} (a file holding the base64 KEK) or ${ENV.kek} (the base64 KEK); generate one with: npx temporal-keyring keygen`,
    );
  }
  return { location, kekInput };
}

/** A file keystore is opened only where one exists, unless creation was asked for. */
async function requireDirectory(dir: string): Promise<void> {
  const exists = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!exists) {
    throw new KeystoreUnavailableError(
      `no keystore in ${dir}: the directory does not exist. Check the path (${ENV.keystore}), or create the keystore with: npx temporal-keyring keys create --namespace <namespace> (openKeyring: createIfMissing: true)`,
    );
  }
}

function validateOptions(options: OpenKeyringOptions): void {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  const meter = options.meter;
  if (meter !== undefined && meter !== 'default' && meter !== false && typeof meter?.spend !== 'function') {
    throw new InvalidOptionError('meter', "must be 'default', false or an EncryptionMeter");
  }
  if (
    options.lockTimeoutMs !== undefined &&
    !(Number.isFinite(options.lockTimeoutMs) && options.lockTimeoutMs >= 0)
  ) {
    throw new InvalidOptionError('lockTimeoutMs', 'must be a non-negative number of milliseconds');
  }
  const store = options.keystore;
  if (store !== undefined && typeof store !== 'string' && typeof store?.getVersions !== 'function') {
    throw new InvalidOptionError('keystore', 'must be a location string or a Keystore');
  }
}

function isKeyEncryptionKey(kek: KekInput): kek is KeyEncryptionKey {
  return (
    typeof (kek as KeyEncryptionKey).wrap === 'function' && typeof (kek as KeyEncryptionKey).id === 'string'
  );
}

async function resolveKek(
  kek: KekInput,
  keystore: Keystore,
  random: RandomSource,
  field: string,
  primary = true,
): Promise<KeyEncryptionKey> {
  if (isKeyEncryptionKey(kek)) return kek;
  if ('shares' in kek) return shamirKek(kek, keystore, random, field);
  if ('pkcs11' in kek) return pkcs11Kek(kek.pkcs11, random, field);
  if (kek.type === 'passphrase' && kek.salt === undefined) {
    // The salt is the keystore's; a new keystore gets one with its KEK record, but only from the
    // primary KEK (a previous KEK must never become a new keystore's KEK).
    if (primary) return kekFromPassphrase(kek.passphrase, keystore, { random });
    const salt = (await keystore.getKekInfo())?.passphraseSalt;
    if (!salt) {
      throw new InvalidOptionError(
        field,
        'a passphrase is accepted only by a keystore created with one (this one has no passphrase salt)',
      );
    }
    return loadKek(
      { type: 'passphrase', passphrase: kek.passphrase, salt: Buffer.from(salt, 'base64') },
      { random },
    );
  }
  if (kek.type !== 'base64' && kek.type !== 'file' && kek.type !== 'passphrase') {
    throw new InvalidOptionError(
      field,
      "must be a KeyEncryptionKey or a source of type 'base64', 'file' or 'passphrase'",
    );
  }
  return loadKek(kek as KekSource, { random });
}

/**
 * A KEK mismatch names the keystore (its id, and its location when this call opened it) and the
 * fix: which setting gives the KEK, and that the usual cause is a KEK and a keystore from two
 * different setups (a second quickstart, another machine's dev KEK).
 */
async function explainMismatch(
  error: KekMismatchError,
  keystore: Keystore,
  location: KeystoreLocation | undefined,
): Promise<KekMismatchError> {
  const info = await keystore.getKekInfo().catch(() => undefined);
  const id = info?.keystoreId ? `keystore ${info.keystoreId}` : 'this keystore';
  const where = location ? ` at ${describeKeystoreLocation(location)}` : '';
  return new KekMismatchError(
    `${error.message}. ${id}${where} opens only with its own KEK: give that one (${ENV.kekFile}, ${ENV.kek} or --kek-file), or point ${ENV.keystore} at the keystore this KEK belongs to`,
  );
}

async function shamirKek(
  input: ShamirKekInput,
  keystore: Keystore,
  random: RandomSource,
  field: string,
): Promise<KeyEncryptionKey> {
  if (!Array.isArray(input.shares) || input.shares.some((s) => typeof s !== 'string')) {
    throw new InvalidOptionError(`${field}.shares`, 'must be an array of unseal keys (strings)');
  }
  const kek = await ShamirKek.fromKeystore(keystore, { random });
  for (const share of input.shares) await kek.submit(share);
  if (kek.sealed && !input.startSealed) {
    throw new InvalidOptionError(
      `${field}.shares`,
      `${kek.status().progress} distinct unseal key(s) given; this keystore needs ${kek.threshold} of its ${kek.shareCount}`,
    );
  }
  return kek;
}

async function pkcs11Kek(
  input: Pkcs11KekInput,
  random: RandomSource,
  field: string,
): Promise<KeyEncryptionKey> {
  if (!input || typeof input !== 'object')
    throw new InvalidOptionError(`${field}.pkcs11`, 'must be an object');
  let pin = input.pin;
  if (pin === undefined && input.pinEnv !== undefined) {
    pin = process.env[input.pinEnv];
    if (!pin) {
      throw new InvalidOptionError(
        `${field}.pkcs11.pinEnv`,
        `environment variable ${input.pinEnv} is not set`,
      );
    }
  }
  if (!pin)
    throw new InvalidOptionError(
      `${field}.pkcs11.pinEnv`,
      'is required: the environment variable holding the token PIN',
    );
  // Loaded on demand: the native binding is needed only by PKCS#11 users.
  const { Pkcs11Kek } = await import('./kek/pkcs11-kek.ts');
  return Pkcs11Kek.open({
    module: input.module,
    token: input.token,
    key: input.key,
    pin,
    allowExtractable: input.allowExtractable,
    random,
  });
}
