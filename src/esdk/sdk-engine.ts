import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import {
  DecryptionFailedError,
  InvalidOptionError,
  KeyRevokedError,
  MalformedPayloadError,
} from '../errors.ts';
import {
  type EncryptionContext,
  type EsdkEngine,
  joinPlaintext,
  type Plaintext,
  type PreparedKey,
  type WrappingKey,
} from './engine.ts';

/** ESDK message format version this library writes and reads. */
export const ESDK_MESSAGE_VERSION = 0x02;
/** ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY: key commitment, no signature. */
export const ESDK_SUITE_ID = 0x0478;
/** Plaintext bytes per ESDK frame: the SDK's default, written down so other engines match it. */
export const ESDK_FRAME_LENGTH = 4096;

// Built once: the client holds only policy, no per-call state.
const client = buildClient({
  commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
  // One key per message: refuses messages crafted with many data keys (a decryption DoS).
  maxEncryptedDataKeys: 1,
});

/**
 * Refuses bytes that are not a message this library writes, before any parsing by the SDK.
 * Bytes that cannot be an ESDK message at all (too short, unknown format byte) are
 * {@link MalformedPayloadError}; an ESDK message of another version or suite is a
 * {@link DecryptionFailedError}. Every engine applies this same rule, so they fail alike.
 */
export function assertSupportedHeader(message: Uint8Array): void {
  if (message.length < 3 || (message[0] !== 0x01 && message[0] !== ESDK_MESSAGE_VERSION)) {
    throw new MalformedPayloadError('the payload data is not an AWS Encryption SDK message');
  }
  const suite = (message[1]! << 8) | message[2]!;
  if (message[0] !== ESDK_MESSAGE_VERSION || suite !== ESDK_SUITE_ID) throw new DecryptionFailedError();
}

/**
 * The sdk engine's {@link PreparedKey}: one `RawAesKeyringNode` per key term, built on a copy of
 * the material that the prepared key owns (and zeroes on dispose).
 */
class SdkPreparedKey implements PreparedKey {
  readonly engine = 'sdk';
  #material: Uint8Array | undefined;
  #keyring: RawAesKeyringNode | undefined;

  constructor(key: WrappingKey) {
    if (!(key?.material instanceof Uint8Array) || key.material.length !== 32) {
      throw new InvalidOptionError('key.material', 'must be 32 bytes');
    }
    if (typeof key.providerId !== 'string' || key.providerId.length === 0) {
      throw new InvalidOptionError('key.providerId', 'must be a non-empty string');
    }
    if (typeof key.keyName !== 'string' || key.keyName.length === 0) {
      throw new InvalidOptionError('key.keyName', 'must be a non-empty string');
    }
    // The keyring keeps the buffer it is given: give it one this prepared key owns.
    this.#material = Uint8Array.from(key.material);
    this.#keyring = new RawAesKeyringNode({
      keyNamespace: key.providerId,
      keyName: key.keyName,
      unencryptedMasterKey: this.#material,
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
      // Serialize the context as the message header does (by UTF-8 bytes, as every other ESDK),
      // not by localeCompare: otherwise keys like "B" and "a" make messages other SDKs cannot open.
      utf8Sorting: true,
    });
  }

  get disposed(): boolean {
    return this.#keyring === undefined;
  }

  cacheStats(): undefined {
    return undefined;
  }

  dispose(): void {
    this.#material?.fill(0);
    this.#material = undefined;
    this.#keyring = undefined;
  }

  static keyringOf(key: PreparedKey): RawAesKeyringNode {
    if (!(key instanceof SdkPreparedKey)) {
      throw new InvalidOptionError('key', 'must be a key prepared by this engine (engine.prepare)');
    }
    if (!key.#keyring) throw new KeyRevokedError();
    return key.#keyring;
  }
}

/**
 * The reference {@link EsdkEngine}: `@aws-crypto/client-node` itself, with a raw AES keyring,
 * suite 0x0478, commitment required on encrypt and decrypt, and at most one encrypted data key.
 * Whatever it writes, any AWS Encryption SDK (Go, Java, Python, C, CLI) decrypts with the raw key.
 */
export const sdkEngine: EsdkEngine = {
  name: 'sdk',
  dataKeyCacheLimits: undefined,

  prepare(key: WrappingKey): PreparedKey {
    return new SdkPreparedKey(key);
  },

  async encrypt(parts: Plaintext, key: PreparedKey, context: EncryptionContext): Promise<Uint8Array> {
    const keyring = SdkPreparedKey.keyringOf(key);
    const plaintext = joinPlaintext(parts);
    const { result } = await client.encrypt(keyring, plaintext, {
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
      encryptionContext: context,
      frameLength: ESDK_FRAME_LENGTH,
      plaintextLength: plaintext.length,
    });
    return new Uint8Array(result.buffer, result.byteOffset, result.byteLength);
  },

  async decrypt(
    message: Uint8Array,
    key: PreparedKey,
  ): Promise<{ plaintext: Uint8Array; context: EncryptionContext }> {
    const keyring = SdkPreparedKey.keyringOf(key);
    assertSupportedHeader(message);
    let out: Awaited<ReturnType<typeof client.decrypt>>;
    try {
      out = await client.decrypt(keyring, message);
    } catch (cause) {
      // Wrong key, flipped bit, truncation and parse errors all look the same from outside.
      throw new DecryptionFailedError({ cause });
    }
    const header = out.messageHeader;
    if (header.suiteId !== ESDK_SUITE_ID || header.encryptedDataKeys.length !== 1)
      throw new DecryptionFailedError();
    const { plaintext } = out;
    return {
      plaintext: new Uint8Array(plaintext.buffer, plaintext.byteOffset, plaintext.byteLength),
      context: { ...header.encryptionContext },
    };
  },
};
