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
  /** Messages encrypted under one data key before a fresh one is drawn and wrapped: 1 .. 2^32. */
  maxMessages: number;
  /** How long one data key is used for encryption, and an unwrapped one kept for decryption (ms). */
  maxAgeMs: number;
  /**
   * Plaintext bytes encrypted under one data key: 1 .. 2^53 - 1. A message larger than this gets a
   * data key of its own that is not cached.
   */
  maxBytes: number;
  /** Data keys kept per prepared key (each of encryption contexts and unwrapped EDKs); the oldest goes first. Default 1 000. */
  maxEntries?: number;
  /** Time source for `maxAgeMs`. Default: the system clock. */
  clock?: Clock;
}

/**
 * The fast engine's cache limits when none are given: one data key for up to 10 000 messages,
 * 64 MiB of plaintext or 60 s per wrapping key and context; unwrapped data keys kept 60 s.
 */
export const DATA_KEY_CACHE_DEFAULTS = {
  maxMessages: 10_000,
  maxAgeMs: 60_000,
  maxBytes: 64 * 1024 * 1024,
  maxEntries: 1_000,
} as const;

/** The validated limits of a cache. */
export interface DataKeyCacheLimits {
  readonly maxMessages: number;
  readonly maxAgeMs: number;
  readonly maxBytes: number;
  readonly maxEntries: number;
}

/** What a prepared key's cache holds and has done, for `keys status` and metrics. No key material. */
export interface DataKeyCacheStats {
  readonly limits: DataKeyCacheLimits;
  /** Data keys held for encryption (one per encryption context in use). */
  readonly encryptEntries: number;
  /** Unwrapped data keys held for decryption. */
  readonly decryptEntries: number;
  /** Encryptions served by a cached data key / that drew and wrapped a fresh one. */
  readonly encryptHits: number;
  readonly encryptMisses: number;
  /** Decryptions served by a cached data key / that unwrapped. */
  readonly decryptHits: number;
  readonly decryptMisses: number;
}

/** A data key in use for encryption, with its wrapped form as the header carries it. */
export interface EncryptionMaterials {
  dataKey: Buffer;
  providerInfo: Buffer;
  encryptedDataKey: Buffer;
}

interface EncryptEntry extends EncryptionMaterials {
  messages: number;
  bytes: number;
  expiresAt: number;
}

interface DecryptEntry {
  dataKey: Buffer;
  expiresAt: number;
}

/** The SDK caching manager's bounds (`Maximum.MESSAGES_PER_CACHED_KEY_LIMIT`, `BYTES_PER_CACHED_KEY_LIMIT`). */
const MAX_MESSAGES = 2 ** 32;
const MAX_BYTES = 2 ** 53 - 1;

/**
 * Validates cache options once, up front: `maxMessages`, `maxAgeMs` and `maxBytes` are required,
 * as the SDK's caching manager requires `maxAge` (the engine's own default supplies all three).
 */
export function dataKeyCacheLimits(options: DataKeyCacheOptions): DataKeyCacheLimits & { clock: Clock } {
  if (options === null || typeof options !== 'object') {
    throw new InvalidOptionError(
      'dataKeyCache',
      'must be an object with maxMessages, maxAgeMs and maxBytes, or false',
    );
  }
  const clock = options.clock ?? systemClock;
  if (typeof clock?.now !== 'function') throw new InvalidOptionError('dataKeyCache.clock', 'must be a Clock');
  return {
    maxMessages: limit('dataKeyCache.maxMessages', options.maxMessages, MAX_MESSAGES),
    maxAgeMs: limit('dataKeyCache.maxAgeMs', options.maxAgeMs, Number.MAX_SAFE_INTEGER),
    maxBytes: limit('dataKeyCache.maxBytes', options.maxBytes, MAX_BYTES),
    maxEntries:
      options.maxEntries === undefined
        ? DATA_KEY_CACHE_DEFAULTS.maxEntries
        : limit('dataKeyCache.maxEntries', options.maxEntries, Number.MAX_SAFE_INTEGER),
    clock,
  };
}

export class DataKeyCache {
  readonly #limits: DataKeyCacheLimits;
  readonly #clock: Clock;
  readonly #encrypt = new Map<string, EncryptEntry>();
  readonly #decrypt = new Map<string, DecryptEntry>();
  #disposed = false;
  #encryptHits = 0;
  #encryptMisses = 0;
  #decryptHits = 0;
  #decryptMisses = 0;

  constructor(limits: DataKeyCacheLimits & { clock: Clock }) {
    this.#limits = Object.freeze({
      maxMessages: limits.maxMessages,
      maxAgeMs: limits.maxAgeMs,
      maxBytes: limits.maxBytes,
      maxEntries: limits.maxEntries,
    });
    this.#clock = limits.clock;
  }

  /**
   * The encryption materials for one more message of `bytes` plaintext bytes under `partition`
   * (the serialized context): the cached ones while they last, else those `create` makes. Every
   * buffer returned is the caller's own copy: it zeroes the data key after use.
   */
  forEncryption(partition: string, bytes: number, create: () => EncryptionMaterials): EncryptionMaterials {
    this.#assertLive();
    const { maxMessages, maxAgeMs, maxBytes, maxEntries } = this.#limits;
    // Larger than a data key may ever encrypt: a fresh one, never cached (as the SDK does).
    if (bytes > maxBytes) {
      this.#encryptMisses++;
      return create();
    }
    const now = this.#clock.now();
    dropExpired(this.#encrypt, now);
    let entry = this.#encrypt.get(partition);
    if (entry && (now >= entry.expiresAt || entry.bytes + bytes > maxBytes)) {
      this.#encrypt.delete(partition);
      entry.dataKey.fill(0);
      entry = undefined;
    }
    if (entry) {
      this.#encryptHits++;
    } else {
      this.#encryptMisses++;
      entry = { ...create(), messages: 0, bytes: 0, expiresAt: now + maxAgeMs };
      this.#encrypt.set(partition, entry);
      evict(this.#encrypt, maxEntries);
    }
    const out = {
      dataKey: Buffer.from(entry.dataKey),
      providerInfo: Buffer.from(entry.providerInfo),
      encryptedDataKey: Buffer.from(entry.encryptedDataKey),
    };
    // Counted before use and dropped at a limit: never more than maxMessages messages or maxBytes
    // bytes per data key.
    entry.messages++;
    entry.bytes += bytes;
    if (entry.messages >= maxMessages || entry.bytes >= maxBytes) {
      this.#encrypt.delete(partition);
      entry.dataKey.fill(0);
    }
    return out;
  }

  /** A copy of the data key unwrapped earlier from exactly this EDK (provider info, EDK, context). */
  forDecryption(edk: string): Buffer | undefined {
    this.#assertLive();
    const now = this.#clock.now();
    dropExpired(this.#decrypt, now);
    let entry = this.#decrypt.get(edk);
    if (entry && now >= entry.expiresAt) {
      this.#decrypt.delete(edk);
      entry.dataKey.fill(0);
      entry = undefined;
    }
    if (!entry) {
      this.#decryptMisses++;
      return undefined;
    }
    this.#decryptHits++;
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

  /** Limits, entry counts and hit counters; no key material. */
  stats(): DataKeyCacheStats {
    const now = this.#clock.now();
    dropExpired(this.#encrypt, now);
    dropExpired(this.#decrypt, now);
    return {
      limits: this.#limits,
      encryptEntries: this.#encrypt.size,
      decryptEntries: this.#decrypt.size,
      encryptHits: this.#encryptHits,
      encryptMisses: this.#encryptMisses,
      decryptHits: this.#decryptHits,
      decryptMisses: this.#decryptMisses,
    };
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

/**
 * Drops (and zeroes) expired entries. Every entry lives `maxAgeMs` from its insertion, so Map
 * order (insertion order) is expiry order: the scan stops at the first live entry.
 */
function dropExpired(entries: Map<string, { dataKey: Buffer; expiresAt: number }>, now: number): void {
  for (const [id, entry] of entries) {
    if (now < entry.expiresAt) break;
    entries.delete(id);
    entry.dataKey.fill(0);
  }
}

/** Drops the oldest entries beyond `max`, zeroing their keys. */
function evict(entries: Map<string, { dataKey: Buffer }>, max: number): void {
  for (const [oldest, entry] of entries) {
    if (entries.size <= max) break;
    entries.delete(oldest);
    entry.dataKey.fill(0);
  }
}

function limit(field: string, value: unknown, max: number): number {
  if (value === undefined)
    throw new InvalidOptionError(field, 'is required (the cache refuses to run unbounded)');
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 1 || value > max)
    throw new InvalidOptionError(field, `must be an integer from 1 to ${max}`);
  return value;
}
