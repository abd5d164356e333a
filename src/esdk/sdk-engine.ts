import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { DecryptionFailedError, MalformedPayloadError } from '../errors.ts';
import {
  type EncryptionContext,
  type EsdkEngine,
  joinPlaintext,
  type Plaintext,
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

function keyringFor(key: WrappingKey): RawAesKeyringNode {
  return new RawAesKeyringNode({
    keyNamespace: key.providerId,
    keyName: key.keyName,
    // The keyring takes ownership of the buffer it is given (it may zero it): pass a copy.
    unencryptedMasterKey: Uint8Array.from(key.material),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    // Serialize the context as the message header does (by UTF-8 bytes, as every other ESDK),
    // not by localeCompare: otherwise keys like "B" and "a" make messages other SDKs cannot open.
    utf8Sorting: true,
  });
}

/**
 * The reference {@link EsdkEngine}: `@aws-crypto/client-node` itself, with a raw AES keyring,
 * suite 0x0478, commitment required on encrypt and decrypt, and at most one encrypted data key.
 * Whatever it writes, any AWS Encryption SDK (Go, Java, Python, C, CLI) decrypts with the raw key.
 */
export const sdkEngine: EsdkEngine = {
  name: 'sdk',

  async encrypt(parts: Plaintext, key: WrappingKey, context: EncryptionContext): Promise<Uint8Array> {
    const plaintext = joinPlaintext(parts);
    const { result } = await client.encrypt(keyringFor(key), plaintext, {
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
      encryptionContext: context,
      frameLength: ESDK_FRAME_LENGTH,
      plaintextLength: plaintext.length,
    });
    return new Uint8Array(result.buffer, result.byteOffset, result.byteLength);
  },

  async decrypt(
    message: Uint8Array,
    key: WrappingKey,
  ): Promise<{ plaintext: Uint8Array; context: EncryptionContext }> {
    assertSupportedHeader(message);
    let out: Awaited<ReturnType<typeof client.decrypt>>;
    try {
      out = await client.decrypt(keyringFor(key), message);
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
