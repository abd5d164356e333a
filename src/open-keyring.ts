import type { ConnectionOptions } from 'node:tls';
import { InvalidOptionError } from './errors.ts';
import type { KeyEncryptionKey } from './kek/kek.ts';
import { type KekSource, kekFromPassphrase, loadKek } from './kek/kek-source.ts';
import type { Pkcs11KekOptions } from './kek/pkcs11-kek.ts';
import { ShamirKek } from './kek/shamir-kek.ts';
import type { EncryptionMeter } from './keyring/encryption-meter.ts';
import { Keyring, type LifecycleEvent } from './keyring/keyring.ts';
import type { Keystore } from './keystore/keystore.ts';
import {
  DEFAULT_DATA_DIR,
  type KeystoreLocation,
  parseKeystoreLocation,
} from './keystore/keystore-location.ts';
import { openKeystore } from './keystore/open-keystore.ts';
import { emergencyRotation } from './rotation/budget-guard.ts';
import type { RotationPolicy } from './rotation/rotation-policy.ts';
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
   * or an open {@link Keystore} (which `close()` then leaves open). Default: the directory in
   * `TEMPORAL_KEYRING_DATA_DIR`, else `./.temporal-keyring`.
   */
  keystore?: string | Keystore;
  /** The KEK that wraps every key. Required. */
  kek: KekInput;
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
   * `DEFAULT_ROTATION_POLICY` for every namespace.
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
  /** Flushes the meter, stops timers, forgets keys, and closes the keystore if it was opened here. */
  close(): Promise<void>;
}

/**
 * The factory applications call: opens the keystore a location names, loads and checks the KEK,
 * wires a usage meter, and returns a ready {@link Keyring}.
 *
 * ```ts
 * const { keyring, close } = await openKeyring({
 *   keystore: process.env.TEMPORAL_KEYRING_DATA_DIR,
 *   kek: { type: 'base64', value: process.env.TEMPORAL_KEYRING_KEK! },
 * });
 * const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
 * ```
 *
 * Pipeline position: application → `openKeyring` (this) → `Keyring` over a `Keystore`.
 */
export async function openKeyring(options: OpenKeyringOptions): Promise<OpenedKeyring> {
  const location = validateOptions(options);
  const clock = options.clock ?? systemClock;
  const logger = options.logger ?? silentLogger;
  const random = options.random ?? systemRandom;
  const owned = location !== undefined;
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
    const kek = await resolveKek(options.kek, keystore, random, 'kek');
    const previousKeks = await Promise.all(
      (options.previousKeks ?? []).map((k, i) => resolveKek(k, keystore, random, `previousKeks.${i}`, false)),
    );
    const chosen = options.meter ?? 'default';
    meter =
      chosen === 'default'
        ? new UsageMeter({ keystore, clock, logger, policies: options.policies })
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
      policies: options.policies,
      onLifecycleEvent: options.onLifecycleEvent,
    });
    if (meter instanceof UsageMeter) meter.setBudgetExhaustedHandler(emergencyRotation(keyring, logger));
    let closed: Promise<void> | undefined;
    return {
      keyring,
      keystore,
      meter: meter instanceof UsageMeter ? meter : undefined,
      close: () => {
        closed ??= (async () => {
          await keyring.close();
          if (owned) await keystore.close();
        })();
        return closed;
      },
    };
  } catch (error) {
    await meter?.close().catch(() => {});
    if (owned) await keystore.close().catch(() => {});
    throw error;
  }
}

function validateOptions(options: OpenKeyringOptions): KeystoreLocation | undefined {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  if (!options.kek) {
    throw new InvalidOptionError(
      'kek',
      'is required: a base64 KEK (TEMPORAL_KEYRING_KEK; generate one with: temporal-keyring keygen), a KEK file or a passphrase',
    );
  }
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
  if (store !== undefined && typeof store !== 'string') {
    if (typeof store?.getVersions !== 'function') {
      throw new InvalidOptionError('keystore', 'must be a location string or a Keystore');
    }
    return undefined;
  }
  const text = store ?? (process.env.TEMPORAL_KEYRING_DATA_DIR || DEFAULT_DATA_DIR);
  return parseKeystoreLocation(text);
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
