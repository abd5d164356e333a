import { InvalidOptionError } from '../errors.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';

/**
 * Data key caching for the fast engine, the counterpart of the AWS Encryption SDK's caching
 * cryptographic materials manager (`NodeCachingMaterialsManager`):
 *
 * - encrypt: one data key, wrapped once under the wrapping key, serves up to `maxMessages`
 *   messages or `maxAgeMs`, whichever comes first, per wrapping key and encryption context. Every
 *   message still has its own random message id, so its own HKDF-derived key and commitment: the
 *   bytes are ordinary ESDK messages that every SDK decrypts. What it saves per message is the data
 *   key draw and the AES-GCM wrap (one of the three AES-GCM contexts).
 * - decrypt: a data key unwrapped from an encrypted data key (EDK) is kept for `maxAgeMs`, so
 *   further messages carrying the same EDK (all those of a cached encrypt data key, and the same
 *   payloads read again, as the Web UI does on every refresh) skip the unwrap.
 *
 * Pipeline position: `fastEngine` → this → data key → HKDF.
 *
 * Entries are partitioned by the wrapping key's material object: a lookup is only ever answered
 * with a data key that this very material unwrapped (or wrapped) under the same provider info, EDK
 * and encryption context, so a hit proves what the unwrap would have proved. The caller has
 * already checked that the key may be used (the keyring refuses destroyed versions before the
 * engine sees them). Expired and evicted data keys are zeroed.
 *
 * Budget: the raw AES keyring's AES-GCM invocations under a key version are the wraps, now at most
 * one per `maxMessages` messages. The usage meter still counts every message, an upper bound of
 * the wraps, so the count the rotation policy reads never falls below what was spent.
 */
export interface DataKeyCacheOptions {
  /** Messages encrypted under one data key before a fresh one is drawn and wrapped. Default 10 000. */
  maxMessages?: number;
  /** How long one data key is used for encryption, and an unwrapped one kept for decryption. Default 60 000 ms. */
  maxAgeMs?: number;
  /** Unwrapped data keys kept for decryption, per wrapping key; the oldest goes first. Default 1 000. */
  maxEntries?: number;
  /** Time source for `maxAgeMs`. Default: the system clock. */
  clock?: Clock;
}

export const DATA_KEY_CACHE_DEFAULTS = { maxMessages: 10_000, maxAgeMs: 60_000, maxEntries: 1_000 } as const;

/** A data key in use for encryption, with its wrapped form as the header carries it. */
export interface EncryptionMaterials {
  dataKey: Buffer;
  providerInfo: Buffer;
  encryptedDataKey: Buffer;
}

interface EncryptEntry extends EncryptionMaterials {
  messages: number;
  expiresAt: number;
}

interface DecryptEntry {
  dataKey: Buffer;
  expiresAt: number;
}

export class DataKeyCache {
  readonly #maxMessages: number;
  readonly #maxAgeMs: number;
  readonly #maxEntries: number;
  readonly #clock: Clock;
  readonly #encrypt = new WeakMap<Uint8Array, Map<string, EncryptEntry>>();
  readonly #decrypt = new WeakMap<Uint8Array, Map<string, DecryptEntry>>();

  constructor(options: DataKeyCacheOptions = {}) {
    if (options === null || typeof options !== 'object') {
      throw new InvalidOptionError('dataKeyCache', 'must be an object or false');
    }
    this.#maxMessages = positiveInteger(
      'dataKeyCache.maxMessages',
      options.maxMessages,
      DATA_KEY_CACHE_DEFAULTS.maxMessages,
    );
    this.#maxAgeMs = positiveInteger(
      'dataKeyCache.maxAgeMs',
      options.maxAgeMs,
      DATA_KEY_CACHE_DEFAULTS.maxAgeMs,
    );
    this.#maxEntries = positiveInteger(
      'dataKeyCache.maxEntries',
      options.maxEntries,
      DATA_KEY_CACHE_DEFAULTS.maxEntries,
    );
    const clock = options.clock ?? systemClock;
    if (typeof clock?.now !== 'function')
      throw new InvalidOptionError('dataKeyCache.clock', 'must be a Clock');
    this.#clock = clock;
  }

  /**
   * The encryption materials for one more message under `material` and `partition` (provider id,
   * key name and serialized context): the cached ones while they last, else those `create` makes.
   * `last`: the cache has let go of them, and the caller zeroes the data key after this message.
   */
  forEncryption(
    material: Uint8Array,
    partition: string,
    create: () => EncryptionMaterials,
  ): EncryptionMaterials & { last: boolean } {
    let entries = this.#encrypt.get(material);
    if (!entries) {
      entries = new Map();
      this.#encrypt.set(material, entries);
    }
    const now = this.#clock.now();
    let entry = entries.get(partition);
    if (entry && now >= entry.expiresAt) {
      entries.delete(partition);
      entry.dataKey.fill(0);
      entry = undefined;
    }
    if (!entry) {
      entry = { ...create(), messages: 0, expiresAt: now + this.#maxAgeMs };
      entries.set(partition, entry);
    }
    // Counted before use and dropped at the limit: never more than maxMessages messages per data key.
    // The caller zeroes the data key after the last use.
    const last = ++entry.messages >= this.#maxMessages;
    if (last) entries.delete(partition);
    return { ...entry, last };
  }

  /** A data key `material` unwrapped earlier from exactly this EDK (provider info, EDK, context). */
  forDecryption(material: Uint8Array, edk: string): Buffer | undefined {
    const entries = this.#decrypt.get(material);
    const entry = entries?.get(edk);
    if (!entry) return undefined;
    if (this.#clock.now() >= entry.expiresAt) {
      entries!.delete(edk);
      entry.dataKey.fill(0);
      return undefined;
    }
    return entry.dataKey;
  }

  /** Keeps a data key `material` has just unwrapped from `edk` (the cache owns it from now on). */
  keepDecrypted(material: Uint8Array, edk: string, dataKey: Buffer): void {
    let entries = this.#decrypt.get(material);
    if (!entries) {
      entries = new Map();
      this.#decrypt.set(material, entries);
    }
    const previous = entries.get(edk);
    if (previous) previous.dataKey.fill(0);
    entries.delete(edk);
    entries.set(edk, { dataKey, expiresAt: this.#clock.now() + this.#maxAgeMs });
    // Map iteration is insertion order: the first entries are the oldest.
    for (const [oldest, entry] of entries) {
      if (entries.size <= this.#maxEntries) break;
      entries.delete(oldest);
      entry.dataKey.fill(0);
    }
  }
}

function positiveInteger(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidOptionError(field, 'must be a positive integer');
  return value;
}
