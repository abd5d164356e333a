import type { DataKeyCacheLimits, DataKeyCacheStats } from './data-key-cache.ts';

/**
 * An engine writes and reads AWS Encryption SDK messages (message format version 2, algorithm
 * suite 0x0478 ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY, no signature) with one raw AES-256 wrapping
 * key, exactly as `@aws-crypto/client-node`'s `RawAesKeyringNode` does. Two implementations:
 * `sdkEngine` (the SDK itself: the reference) and `fastEngine` (node:crypto directly, same bytes).
 *
 * Pipeline position: `EncryptionCodec` → `EsdkEngine` (this) → bytes in `Payload.data`.
 */
export interface EsdkEngine {
  /** Short name for logs and benchmarks: `sdk` or `fast`. */
  readonly name: string;
  /** The limits of each prepared key's data-key cache; `undefined` when the engine caches none. */
  readonly dataKeyCacheLimits: DataKeyCacheLimits | undefined;
  /**
   * Derives, once per key term, what every message under `key` needs (the UTF-8 names, the
   * engine's own copy of the material or the SDK keyring) and gives the key its own bounded
   * data-key cache. Validates the key (field names in the error). The caller disposes the result
   * when the key term ends; the engine keeps no reference to it.
   */
  prepare(key: WrappingKey): PreparedKey;
  /**
   * Encrypts `plaintext` into one ESDK message under `key`, binding `context` into it. The
   * plaintext may come in parts, encrypted as their concatenation: the codec passes a large
   * payload's serialized header and its data apart, so that the data is not first copied into one
   * buffer.
   */
  encrypt(plaintext: Plaintext, key: PreparedKey, context: EncryptionContext): Promise<Uint8Array>;
  /**
   * Decrypts one ESDK message with `key`. Refuses any suite other than 0x0478, more than one
   * encrypted data key, and a data key not wrapped by exactly `key`. Every failure is a
   * `DecryptionFailedError` (opaque) or, for bytes that are not an ESDK message at all,
   * `MalformedPayloadError`. The caller checks the returned context.
   */
  decrypt(
    message: Uint8Array,
    key: PreparedKey,
  ): Promise<{ plaintext: Uint8Array; context: EncryptionContext }>;
}

/**
 * A wrapping key as one engine prepared it (see {@link EsdkEngine.prepare}). Opaque: only the
 * engine that made it can use it (another engine refuses it with `ERR_INVALID_OPTION`).
 * `dispose()` zeroes every buffer it owns and empties its data-key cache; any later use throws
 * `KeyRevokedError` (`ERR_KEY_REVOKED`). Disposing twice is harmless.
 */
export interface PreparedKey {
  /** Name of the engine that prepared it. */
  readonly engine: string;
  /** True once {@link PreparedKey.dispose} ran. */
  readonly disposed: boolean;
  /**
   * This key's data-key cache: limits, entries, hits and misses (no key material), for
   * `keys status` and metrics. `undefined` when the engine caches nothing or the key is disposed.
   */
  cacheStats(): DataKeyCacheStats | undefined;
  dispose(): void;
}

/** Bytes to encrypt: one buffer, or parts in order. */
export type Plaintext = Uint8Array | readonly Uint8Array[];

/** One buffer holding `plaintext` (the buffer itself when it is one already). */
export function joinPlaintext(plaintext: Plaintext): Uint8Array {
  return plaintext instanceof Uint8Array ? plaintext : Buffer.concat(plaintext);
}

/** A raw AES wrapping key as the ESDK's raw AES keyring names it. */
export interface WrappingKey {
  /** The ESDK "key namespace" (provider id). Ours: {@link PROVIDER_ID}. */
  providerId: string;
  /** The ESDK "key name" (provider info prefix). Ours: see `esdkKeyName`. */
  keyName: string;
  /** 32 bytes. */
  material: Uint8Array;
}

export type EncryptionContext = Record<string, string>;

/** The ESDK provider id (raw keyring "key namespace") of every key this library writes. */
export const PROVIDER_ID = 'temporal-keyring';

/**
 * The ESDK key name of a key version: `<namespace>/v<version>/`. The trailing `/` matters: the JS
 * raw AES keyring matches key names by prefix, so without it `default/v1` would also match
 * `default/v10`'s data keys. Namespaces cannot contain `/`, so names are unambiguous.
 */
export function esdkKeyName(namespace: string, version: number): string {
  return `${namespace}/v${version}/`;
}
