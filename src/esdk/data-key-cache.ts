import { InvalidOptionError, KeyRevokedError } from '../errors.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';

/**
 * Data key caching for one prepared key of the fast engine, the counterpart of the AWS Encryption
 * SDK's caching cryptographic materials manager (`NodeCachingMaterialsManager`):
 *
 * - encrypt: one data key, wrapped once under the wrapping key, serves up to `maxMessages`
 *   messages, `maxBytes` plaintext bytes or `maxAgeMs`, whichever comes first, per encryption
 *   context. Every message still has its own random message id, so its own HKDF-derived key and
 *   commitment: the bytes are ordinary ESDK messages that every SDK decrypts. What it saves per
 *   message is the data key draw and the AES-GCM wrap (one of the three AES-GCM contexts).
 * - decrypt: a data key unwrapped from an encrypted data key (EDK) is kept for `maxAgeMs`, so
 *   further messages carrying the same EDK (all those of a cached encrypt data key, and the same
 *   payloads read again, as the Web UI does on every refresh) skip the unwrap.
 *
 * Pipeline position: `fastEngine` → prepared key → this → data key → HKDF.
 *
 * Each prepared key owns one cache, so a lookup is only ever answered with a data key that this
 * very wrapping key unwrapped (or wrapped) under the same provider info, EDK and encryption
 * context: a hit proves what the unwrap would have proved. The cache hands out copies, never its
 * own buffers; it zeroes every data key it lets go of (expired, used up, evicted, disposed).
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
  /** Unwrapped data keys kept for decryption (and contexts for encryption), per wrapping key; the oldest goes first. Default 1 000. */
  maxEntries?: number;
  /** Time source for `maxAgeMs`. Default: the system clock. */
  clock?: Clock;
}

export const DATA_KEY_CACHE_DEFAULTS = { maxMessages: 10_000, maxAgeMs: 60_000, maxEntries: 1_000 } as const;

/** The validated limits of a cache. */
export interface DataKeyCacheLimits {
  readonly maxMessages: number;
  readonly maxAgeMs: number;
  readonly maxEntries: number;
}

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

/** Validates cache options once, up front; the result configures every prepared key's cache. */
export function dataKeyCacheLimits(options: DataKeyCacheOptions): DataKeyCacheLimits & { clock: Clock } {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError('dataKeyCache', 'must be an object or false');
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock?.now !== 'function') throw new InvalidOptionError('dataKeyCache.clock', 'must be a Clock');
  return {
    maxMessages: positiveInteger(
      'dataKeyCache.maxMessages',
      options.maxMessages,
      DATA_KEY_CACHE_DEFAULTS.maxMessages,
    ),
    maxAgeMs: positiveInteger('dataKeyCache.maxAgeMs', options.maxAgeMs, DATA_KEY_CACHE_DEFAULTS.maxAgeMs),
    maxEntries: positiveInteger(
      'dataKeyCache.maxEntries',
      options.maxEntries,
      DATA_KEY_CACHE_DEFAULTS.maxEntries,
    ),
    clock,
  };
}

export class DataKeyCache {
  readonly #limits: DataKeyCacheLimits;
  readonly #clock: Clock;
  readonly #encrypt = new Map<string, EncryptEntry>();
  readonly #decrypt = new Map<string, DecryptEntry>();
  #disposed = false;

  constructor(limits: DataKeyCacheLimits & { clock: Clock }) {
    this.#limits = {
      maxMessages: limits.maxMessages,
      maxAgeMs: limits.maxAgeMs,
      maxEntries: limits.maxEntries,
    };
    this.#clock = limits.clock;
  }

  /**
   * The encryption materials for one more message under `partition` (the serialized context):
   * the cached ones while they last, else those `create` makes. The data key returned is the
   * caller's own copy: it zeroes it after use.
   */
  forEncryption(partition: string, create: () => EncryptionMaterials): EncryptionMaterials {
    this.#assertLive();
    const { maxMessages, maxAgeMs } = this.#limits;
    const now = this.#clock.now();
    let entry = this.#encrypt.get(partition);
    if (entry && now >= entry.expiresAt) {
      this.#encrypt.delete(partition);
      entry.dataKey.fill(0);
      entry = undefined;
    }
    if (!entry) {
      entry = { ...create(), messages: 0, expiresAt: now + maxAgeMs };
      this.#encrypt.set(partition, entry);
      evict(this.#encrypt, this.#limits.maxEntries);
    }
    const out = { ...entry, dataKey: Buffer.from(entry.dataKey) };
    // Counted before use and dropped at the limit: never more than maxMessages messages per data key.
    if (++entry.messages >= maxMessages) {
      this.#encrypt.delete(partition);
      entry.dataKey.fill(0);
    }
    return out;
  }

  /** A copy of the data key unwrapped earlier from exactly this EDK (provider info, EDK, context). */
  forDecryption(edk: string): Buffer | undefined {
    this.#assertLive();
    const entry = this.#decrypt.get(edk);
    if (!entry) return undefined;
    if (this.#clock.now() >= entry.expiresAt) {
      this.#decrypt.delete(edk);
      entry.dataKey.fill(0);
      return undefined;
    }
    return Buffer.from(entry.dataKey);
  }

  /** Keeps a copy of a data key just unwrapped from `edk`; the caller still owns (and zeroes) its own. */
  keepDecrypted(edk: string, dataKey: Buffer): void {
    this.#assertLive();
    const previous = this.#decrypt.get(edk);
    if (previous) previous.dataKey.fill(0);
    this.#decrypt.delete(edk);
    this.#decrypt.set(edk, {
      dataKey: Buffer.from(dataKey),
      expiresAt: this.#clock.now() + this.#limits.maxAgeMs,
    });
    evict(this.#decrypt, this.#limits.maxEntries);
  }

  /** Zeroes every data key held and empties the cache; any later use throws `KeyRevokedError`. */
  dispose(): void {
    for (const entry of this.#encrypt.values()) entry.dataKey.fill(0);
    for (const entry of this.#decrypt.values()) entry.dataKey.fill(0);
    this.#encrypt.clear();
    this.#decrypt.clear();
    this.#disposed = true;
  }

  #assertLive(): void {
    if (this.#disposed) throw new KeyRevokedError();
  }
}

/** Drops the oldest entries (Map iteration is insertion order) beyond `max`, zeroing their keys. */
function evict(entries: Map<string, { dataKey: Buffer }>, max: number): void {
  for (const [oldest, entry] of entries) {
    if (entries.size <= max) break;
    entries.delete(oldest);
    entry.dataKey.fill(0);
  }
}

function positiveInteger(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback;
  if (!Number.isSafeInteger(value) || value < 1)
    throw new InvalidOptionError(field, 'must be a positive integer');
  return value;
}
