import { DecryptionFailedError, InvalidOptionError, MalformedPayloadError } from '../errors.ts';
import type { EncryptionContext } from './engine.ts';

/**
 * The AWS Encryption SDK message format, version 2, as far as suite 0x0478 with one raw AES
 * encrypted data key needs it: constants, encryption context serialization, header writing and
 * parsing, and the body AAD. Byte layouts follow the ESDK specification (data-format/
 * message-header.md, message-body.md, message-body-aad.md) and what `@aws-crypto/serialize` and
 * `@aws-crypto/raw-aes-keyring-node` write; the differential tests hold both to the same bytes.
 *
 * Pipeline position: `fastEngine` → this (serialization only, no cryptography).
 *
 * Header body: version (1) · suite id (2) · message id (32) · AAD length (2) · encryption context ·
 * EDK count (2) · per EDK: provider id (2+n), provider info (2+n), ciphertext (2+n) · content
 * type (1) · frame length (4) · key commitment (32). Then the header tag (16; the IV is implicit
 * zeros in version 2).
 */

export const MESSAGE_FORMAT_VERSION = 0x02;
/** ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY. */
export const SUITE_ID = 0x0478;
export const MESSAGE_ID_LENGTH = 32;
export const DATA_KEY_LENGTH = 32;
export const COMMITMENT_LENGTH = 32;
export const IV_LENGTH = 12;
export const TAG_LENGTH = 16;
export const CONTENT_TYPE_NON_FRAMED = 0x01;
export const CONTENT_TYPE_FRAMED = 0x02;
export const SEQUENCE_NUMBER_END = 0xffffffff;
/**
 * Largest frame length this library writes: 2^31 - 1. The header field is a uint32 and the spec
 * allows up to 2^32 - 1, but some SDKs refuse larger ones when they read (the Java SDK holds the
 * length in a signed 32-bit int): a message is portable only within this bound. Reading
 * accepts any frame length from 1 to 2^32 - 1, as the JS and Python SDKs do.
 */
export const MAX_FRAME_LENGTH = 2 ** 31 - 1;
/** Largest non-framed content the spec allows (one AES-GCM invocation: 2^36 - 32 bytes). */
export const MAX_NON_FRAMED_LENGTH = 2 ** 36 - 32;
/** Reserved by the SDK for signing suites; refused in the context of unsigned ones. */
export const ENCODED_SIGNER_KEY = 'aws-crypto-public-key';
/** A raw AES keyring's EDK ciphertext: the wrapped 32-byte data key and its 16-byte tag. */
export const RAW_AES_EDK_LENGTH = DATA_KEY_LENGTH + TAG_LENGTH;
/** Provider info after the key name: tag length in bits (uint32) · IV length (uint32) · IV. */
export const RAW_AES_INFO_SUFFIX_LENGTH = 4 + 4 + IV_LENGTH;

export const FRAME_AAD = Buffer.from('AWSKMSEncryptionClient Frame', 'latin1');
export const FINAL_FRAME_AAD = Buffer.from('AWSKMSEncryptionClient Final Frame', 'latin1');
export const NON_FRAMED_AAD = Buffer.from('AWSKMSEncryptionClient Single Block', 'latin1');

/** Header bytes before the encryption context: version, suite, message id, AAD length. */
const FIXED_PREFIX_LENGTH = 1 + 2 + MESSAGE_ID_LENGTH + 2;
/** Regular frame: sequence number (4) · IV (12) · content · tag (16). */
export const FRAME_OVERHEAD = 4 + IV_LENGTH + TAG_LENGTH;
/** Final frame: end marker (4) · sequence number (4) · IV (12) · content length (4) · content · tag (16). */
export const FINAL_FRAME_OVERHEAD = 4 + 4 + IV_LENGTH + 4 + TAG_LENGTH;
/** Non-framed body: IV (12) · content length (uint64) · content · tag (16). */
export const NON_FRAMED_OVERHEAD = IV_LENGTH + 8 + TAG_LENGTH;

const UINT16_MAX = 0xffff;
const LONE_SURROGATE = /\p{Surrogate}/u;

/**
 * Serializes an encryption context as the header's AAD field content (without its uint16
 * length): pair count (uint16), then key and value as uint16-length-prefixed UTF-8, sorted by
 * key bytes. The empty context serializes to zero bytes (the count is omitted, per spec). These
 * same bytes are the raw AES keyring's wrapping AAD.
 */
export function serializeEncryptionContext(context: EncryptionContext): Buffer {
  const entries = Object.entries(context);
  if (entries.length === 0) return Buffer.alloc(0);
  if (entries.length > UINT16_MAX) throw new InvalidOptionError('context', 'has too many entries');
  const encoded: [Buffer, Buffer][] = [];
  let length = 2;
  for (const [key, value] of entries) {
    if (typeof value !== 'string') throw new InvalidOptionError('context', 'values must be strings');
    if (LONE_SURROGATE.test(key) || LONE_SURROGATE.test(value)) {
      throw new InvalidOptionError('context', 'keys and values must be well-formed Unicode');
    }
    if (key === ENCODED_SIGNER_KEY)
      throw new InvalidOptionError('context', `the key ${ENCODED_SIGNER_KEY} is reserved`);
    const k = Buffer.from(key, 'utf8');
    const v = Buffer.from(value, 'utf8');
    if (k.length > UINT16_MAX || v.length > UINT16_MAX)
      throw new InvalidOptionError('context', 'an entry is too long');
    length += 4 + k.length + v.length;
    encoded.push([k, v]);
  }
  if (length > UINT16_MAX) throw new InvalidOptionError('context', 'serializes to more than 65535 bytes');
  if (encoded.length > 1) encoded.sort((a, b) => Buffer.compare(a[0], b[0]));
  const out = Buffer.allocUnsafe(length);
  out.writeUInt16BE(encoded.length, 0);
  let pos = 2;
  for (const [k, v] of encoded) {
    out.writeUInt16BE(k.length, pos);
    k.copy(out, pos + 2);
    pos += 2 + k.length;
    out.writeUInt16BE(v.length, pos);
    v.copy(out, pos + 2);
    pos += 2 + v.length;
  }
  return out;
}

const strictUtf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/**
 * Parses the header's encryption context, accepting only the canonical serialization: strictly
 * ascending key bytes (so no duplicates), valid UTF-8, no trailing bytes, no reserved key. Only
 * then are the raw bytes equal to what the SDK re-serializes as the keyring's wrapping AAD.
 */
export function parseEncryptionContext(bytes: Buffer): EncryptionContext {
  if (bytes.length === 0) return {};
  if (bytes.length < 2) throw new DecryptionFailedError();
  const count = bytes.readUInt16BE(0);
  if (count === 0) throw new DecryptionFailedError();
  const entries: [string, string][] = [];
  let pos = 2;
  let previousKey: Buffer | undefined;
  try {
    for (let i = 0; i < count; i++) {
      const key = readField(bytes, pos);
      pos += 2 + key.length;
      const value = readField(bytes, pos);
      pos += 2 + value.length;
      if (previousKey !== undefined && Buffer.compare(previousKey, key) >= 0)
        throw new DecryptionFailedError();
      previousKey = key;
      entries.push([strictUtf8.decode(key), strictUtf8.decode(value)]);
    }
  } catch (cause) {
    throw cause instanceof DecryptionFailedError ? cause : new DecryptionFailedError({ cause });
  }
  if (pos !== bytes.length) throw new DecryptionFailedError();
  // fromEntries defines own properties, so a key such as `__proto__` stays plain data.
  const context = Object.fromEntries(entries);
  if (Object.hasOwn(context, ENCODED_SIGNER_KEY)) throw new DecryptionFailedError();
  return context;
}

/** A uint16-length-prefixed field at `pos`, bounds-checked. */
function readField(bytes: Buffer, pos: number): Buffer {
  if (pos + 2 > bytes.length) throw new DecryptionFailedError();
  const length = bytes.readUInt16BE(pos);
  if (pos + 2 + length > bytes.length) throw new DecryptionFailedError();
  return bytes.subarray(pos + 2, pos + 2 + length);
}

/** The fields of a header with exactly one encrypted data key. */
export interface HeaderFields {
  messageId: Uint8Array;
  /** Serialized encryption context (see {@link serializeEncryptionContext}). */
  context: Uint8Array;
  providerId: Uint8Array;
  providerInfo: Uint8Array;
  /** EDK ciphertext. */
  encryptedDataKey: Uint8Array;
  contentType: number;
  frameLength: number;
  commitment: Uint8Array;
}

/** Length of the header body (without the 16-byte header tag). */
export function headerBodyLength(f: HeaderFields): number {
  return (
    FIXED_PREFIX_LENGTH +
    f.context.length +
    2 +
    (2 + f.providerId.length) +
    (2 + f.providerInfo.length) +
    (2 + f.encryptedDataKey.length) +
    1 +
    4 +
    COMMITMENT_LENGTH
  );
}

/** Writes the header body at the start of `out`; returns its length. */
export function writeHeaderBody(f: HeaderFields, out: Buffer): number {
  out[0] = MESSAGE_FORMAT_VERSION;
  out.writeUInt16BE(SUITE_ID, 1);
  out.set(f.messageId, 3);
  let pos = 3 + MESSAGE_ID_LENGTH;
  pos = writeField(out, pos, f.context);
  pos = out.writeUInt16BE(1, pos);
  pos = writeField(out, pos, f.providerId);
  pos = writeField(out, pos, f.providerInfo);
  pos = writeField(out, pos, f.encryptedDataKey);
  out[pos++] = f.contentType;
  pos = out.writeUInt32BE(f.frameLength, pos);
  out.set(f.commitment, pos);
  return pos + COMMITMENT_LENGTH;
}

function writeField(out: Buffer, pos: number, bytes: Uint8Array): number {
  out.writeUInt16BE(bytes.length, pos);
  out.set(bytes, pos + 2);
  return pos + 2 + bytes.length;
}

/** A parsed, not yet authenticated, header. Views point into the message. */
export interface ParsedHeader extends HeaderFields {
  /** Header body length: the header tag starts here. */
  bodyLength: number;
  headerTag: Buffer;
  /** First byte of the message body. */
  bodyStart: number;
}

/**
 * The same first check as `sdkEngine` applies, so that both engines fail alike: bytes that cannot
 * be an ESDK message at all (too short, first byte neither 1 nor 2) are a
 * {@link MalformedPayloadError}; an ESDK message of another version or suite is a
 * {@link DecryptionFailedError}.
 */
export function assertSupportedMessage(message: Uint8Array): void {
  if (message.length < 3 || (message[0] !== 0x01 && message[0] !== MESSAGE_FORMAT_VERSION)) {
    throw new MalformedPayloadError('the payload data is not an AWS Encryption SDK message');
  }
  const suite = (message[1]! << 8) | message[2]!;
  if (message[0] !== MESSAGE_FORMAT_VERSION || suite !== SUITE_ID) throw new DecryptionFailedError();
}

/**
 * Parses a version 2, suite 0x0478 header with exactly one encrypted data key. Every length is
 * checked against the bytes present before use, so nothing is allocated from a claimed length.
 */
export function parseHeader(message: Buffer): ParsedHeader {
  assertSupportedMessage(message);
  if (message.length < FIXED_PREFIX_LENGTH) throw new DecryptionFailedError();
  const messageId = message.subarray(3, 3 + MESSAGE_ID_LENGTH);
  const context = readField(message, 3 + MESSAGE_ID_LENGTH);
  let pos = FIXED_PREFIX_LENGTH + context.length;
  if (pos + 2 > message.length) throw new DecryptionFailedError();
  const edkCount = message.readUInt16BE(pos);
  pos += 2;
  // One data key, always: more would let a crafted message make us try many unwraps.
  if (edkCount !== 1) throw new DecryptionFailedError();
  const providerId = readField(message, pos);
  pos += 2 + providerId.length;
  const providerInfo = readField(message, pos);
  pos += 2 + providerInfo.length;
  const encryptedDataKey = readField(message, pos);
  pos += 2 + encryptedDataKey.length;
  if (pos + 1 + 4 + COMMITMENT_LENGTH + TAG_LENGTH > message.length) throw new DecryptionFailedError();
  const contentType = message[pos]!;
  if (contentType !== CONTENT_TYPE_FRAMED && contentType !== CONTENT_TYPE_NON_FRAMED)
    throw new DecryptionFailedError();
  const frameLength = message.readUInt32BE(pos + 1);
  // The spec: a non-framed message's frame length is 0; a framed one's is not (the JS SDK reads
  // both anyway; we refuse, see docs/payload-format.md).
  if (contentType === CONTENT_TYPE_NON_FRAMED ? frameLength !== 0 : frameLength === 0)
    throw new DecryptionFailedError();
  pos += 5;
  const commitment = message.subarray(pos, pos + COMMITMENT_LENGTH);
  pos += COMMITMENT_LENGTH;
  return {
    messageId,
    context,
    providerId,
    providerInfo,
    encryptedDataKey,
    contentType,
    frameLength,
    commitment,
    bodyLength: pos,
    headerTag: message.subarray(pos, pos + TAG_LENGTH),
    bodyStart: pos + TAG_LENGTH,
  };
}

/**
 * The message body AAD of one frame (or of the single non-framed block): message id · content
 * string · sequence number (uint32) · plaintext length (uint64).
 */
export function bodyAad(
  messageId: Uint8Array,
  content: Buffer,
  sequenceNumber: number,
  length: number,
): Buffer {
  const out = Buffer.allocUnsafe(MESSAGE_ID_LENGTH + content.length + 12);
  out.set(messageId, 0);
  content.copy(out, MESSAGE_ID_LENGTH);
  const pos = MESSAGE_ID_LENGTH + content.length;
  out.writeUInt32BE(sequenceNumber, pos);
  out.writeUInt32BE(Math.floor(length / 2 ** 32), pos + 4);
  out.writeUInt32BE(length >>> 0, pos + 8);
  return out;
}

/** The IV of frame `sequenceNumber`: the number, big-endian, left-padded with zeros to 12 bytes. */
export function writeFrameIv(out: Buffer, pos: number, sequenceNumber: number): void {
  out.fill(0, pos, pos + IV_LENGTH - 4);
  out.writeUInt32BE(sequenceNumber, pos + IV_LENGTH - 4);
}

/** Length of a framed body for `plaintextLength` bytes: full regular frames, then a final frame. */
export function framedBodyLength(plaintextLength: number, frameLength: number): number {
  const regular = plaintextLength === 0 ? 0 : Math.ceil(plaintextLength / frameLength) - 1;
  return (
    regular * (FRAME_OVERHEAD + frameLength) +
    FINAL_FRAME_OVERHEAD +
    (plaintextLength - regular * frameLength)
  );
}
