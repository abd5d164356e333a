import { createCipheriv, createDecipheriv, timingSafeEqual } from 'node:crypto';
import {
  DecryptionFailedError,
  InvalidOptionError,
  KeyRevokedError,
  KeyringError,
  RandomSourceError,
} from '../errors.ts';
import { blockRandom, type RandomSource } from '../runtime/random.ts';
import {
  DATA_KEY_CACHE_DEFAULTS,
  DataKeyCache,
  type DataKeyCacheLimits,
  type DataKeyCacheOptions,
  type DataKeyCacheStats,
  dataKeyCacheLimits,
  type EncryptionMaterials,
} from './data-key-cache.ts';
import type { EncryptionContext, EsdkEngine, Plaintext, PreparedKey, WrappingKey } from './engine.ts';
import { deriveKeys } from './key-derivation.ts';
import {
  bodyAad,
  CONTENT_TYPE_FRAMED,
  CONTENT_TYPE_NON_FRAMED,
  DATA_KEY_LENGTH,
  FINAL_FRAME_AAD,
  FRAME_AAD,
  FRAME_OVERHEAD,
  framedBodyLength,
  headerBodyLength,
  IV_LENGTH,
  MAX_FRAME_LENGTH,
  MAX_NON_FRAMED_LENGTH,
  MESSAGE_ID_LENGTH,
  NON_FRAMED_AAD,
  type ParsedHeader,
  parseEncryptionContext,
  parseHeader,
  RAW_AES_EDK_LENGTH,
  RAW_AES_INFO_SUFFIX_LENGTH,
  SEQUENCE_NUMBER_END,
  serializeEncryptionContext,
  TAG_LENGTH,
  writeFrameIv,
  writeHeaderBody,
} from './message-format.ts';

/**
 * Frame length the fast engine writes: 4 MiB. Every Temporal payload (the server refuses blobs
 * over 2 MB by default) fits one final frame, so a message costs one AES-GCM invocation for its
 * body however large; larger plaintexts get 4 MiB regular frames. Within the bound every AWS
 * Encryption SDK reads ({@link MAX_FRAME_LENGTH}, 2^31 - 1); the JS SDK buffers one frame at a
 * time, so a reader holds up to 4 MiB of ciphertext per message.
 */
export const FAST_FRAME_LENGTH = 4 * 1024 * 1024;

const ALGORITHM = 'aes-256-gcm';
const WRAPPING_KEY_LENGTH = 32;
const ZERO_IV = Buffer.alloc(IV_LENGTH);
/** A fresh data key: the key and the IV of its wrap, in one draw. */
const DATA_KEY_DRAW = DATA_KEY_LENGTH + IV_LENGTH;

export interface FastEngineOptions {
  /** Randomness for data keys, message ids and wrap IVs. Default: the OS CSPRNG, drawn in blocks. */
  random?: RandomSource;
  /**
   * Plaintext bytes per frame, 1 .. 2^31 - 1 ({@link MAX_FRAME_LENGTH}: larger ones are valid per
   * spec but not read by every SDK). Default {@link FAST_FRAME_LENGTH}.
   */
  frameLength?: number;
  /**
   * Data key caching ({@link DataKeyCache}), per prepared key. Default: on, with
   * {@link DATA_KEY_CACHE_DEFAULTS} (one data key for up to 10 000 messages, 64 MiB or 60 s per
   * wrapping key and context; unwrapped data keys kept 60 s). Given explicitly, `maxMessages`,
   * `maxAgeMs` and `maxBytes` are all required. `false`: a fresh data key for every message and an
   * unwrap for every decryption, as the SDK does without a caching materials manager.
   */
  dataKeyCache?: DataKeyCacheOptions | false;
}

/**
 * Builds an {@link EsdkEngine} on `node:crypto` alone: the same message bytes as
 * `@aws-crypto/client-node` with a `RawAesKeyringNode` (message format 2, suite 0x0478, one raw
 * AES encrypted data key), without streams, materials managers or per-message promise chains.
 * Per message it draws a message id, and uses three HMACs and two AES-GCM contexts (header tag,
 * body); a data key is drawn and wrapped (a third context) only when the {@link DataKeyCache} has
 * none to reuse. Verified byte-compatible with the SDK in both directions by
 * test/esdk/differential.test.ts.
 *
 * Decrypt reads framed messages of any frame length (1 .. 2^32 - 1) and non-framed messages. Where
 * the spec is explicit it conforms, and where the SDKs are lax it refuses (trailing bytes, frame
 * length 0 in a framed message or non-zero in a non-framed one, a non-canonical encryption
 * context, more than one data key): the full list is in docs/payload-format.md.
 */
export function createFastEngine(options: FastEngineOptions = {}): EsdkEngine {
  const random = options.random ?? blockRandom();
  if (typeof random?.bytes !== 'function') throw new InvalidOptionError('random', 'must be a RandomSource');
  const frameLength = options.frameLength ?? FAST_FRAME_LENGTH;
  if (!Number.isInteger(frameLength) || frameLength < 1 || frameLength > MAX_FRAME_LENGTH) {
    throw new InvalidOptionError('frameLength', `must be an integer from 1 to ${MAX_FRAME_LENGTH}`);
  }
  const cacheOptions = options.dataKeyCache;
  const cacheLimits =
    cacheOptions === false
      ? undefined
      : dataKeyCacheLimits(cacheOptions === undefined ? DATA_KEY_CACHE_DEFAULTS : cacheOptions);
  // Identifies this engine's prepared keys: another engine's (other limits, other frames) are refused.
  const owner = {};

  const { clock: _clock, ...limits } = cacheLimits ?? { clock: undefined };
  return {
    name: 'fast',
    dataKeyCacheLimits: cacheLimits ? (Object.freeze(limits) as DataKeyCacheLimits) : undefined,

    prepare(key: WrappingKey): PreparedKey {
      return new FastPreparedKey(owner, key, cacheLimits && new DataKeyCache(cacheLimits));
    },

    async encrypt(plaintext: Plaintext, key: PreparedKey, context: EncryptionContext): Promise<Uint8Array> {
      return encryptMessage(plaintext, FastPreparedKey.stateOf(key, owner), context, random, frameLength);
    },

    async decrypt(
      message: Uint8Array,
      key: PreparedKey,
    ): Promise<{ plaintext: Uint8Array; context: EncryptionContext }> {
      const state = FastPreparedKey.stateOf(key, owner);
      try {
        return decryptMessage(message, state);
      } catch (error) {
        // Parse errors are already KeyringErrors; anything else (an OpenSSL tag failure) is opaque.
        if (error instanceof KeyringError) throw error;
        throw new DecryptionFailedError({ cause: error });
      }
    },
  };
}

/** The default fast engine: OS randomness, {@link FAST_FRAME_LENGTH} frames. */
export const fastEngine: EsdkEngine = createFastEngine();

/** What the fast engine derives once per key term. Every buffer here is the prepared key's own. */
interface KeyState {
  /** UTF-8 provider id. */
  providerId: Buffer;
  /** UTF-8 key name. */
  keyName: Buffer;
  /** A copy of the wrapping key material. */
  material: Buffer;
  cache: DataKeyCache | undefined;
  /**
   * The header fields of the last message decrypted, with what was derived from them. Messages
   * written close together share their context and (through the writer's data key cache) their
   * EDK, so a batch parses the context and builds the cache id once. Not secret: all of it is in
   * the message; derived only from the bytes compared, so reuse gives what parsing again would.
   */
  recent?: RecentHeader;
  /**
   * The encryption context of the last message encrypted, serialized, and the data key cache's
   * partition for it: a batch is written under one context, so it is serialized once. Reused only
   * when the next context has the same keys and values in the same order (read afresh each time),
   * so it gives exactly what serializing again would.
   */
  lastContext?: SerializedContext;
}

interface SerializedContext {
  keys: string[];
  values: string[];
  bytes: Buffer;
  partition: string;
}

interface RecentHeader {
  contextBytes: Buffer;
  context: EncryptionContext;
  providerInfo: Buffer;
  encryptedDataKey: Buffer;
  edkId: string;
}

/**
 * The fast engine's {@link PreparedKey}: names encoded and checked once, its own copy of the
 * material, its own data key cache. Its state is reachable only through {@link stateOf}, by the
 * engine that made it, and only until {@link dispose}.
 */
class FastPreparedKey implements PreparedKey {
  readonly engine = 'fast';
  readonly #owner: object;
  #state: KeyState | undefined;

  constructor(owner: object, key: WrappingKey, cache: DataKeyCache | undefined) {
    if (!(key?.material instanceof Uint8Array) || key.material.length !== WRAPPING_KEY_LENGTH) {
      throw new InvalidOptionError('key.material', `must be ${WRAPPING_KEY_LENGTH} bytes`);
    }
    if (typeof key.providerId !== 'string' || key.providerId.length === 0) {
      throw new InvalidOptionError('key.providerId', 'must be a non-empty string');
    }
    if (typeof key.keyName !== 'string' || key.keyName.length === 0) {
      throw new InvalidOptionError('key.keyName', 'must be a non-empty string');
    }
    const providerId = ownedUtf8(key.providerId);
    const keyName = ownedUtf8(key.keyName);
    if (providerId.length > 0xffff || keyName.length + RAW_AES_INFO_SUFFIX_LENGTH > 0xffff) {
      throw new InvalidOptionError('key', 'provider id or key name is too long');
    }
    const material = Buffer.alloc(WRAPPING_KEY_LENGTH);
    material.set(key.material);
    this.#owner = owner;
    this.#state = { providerId, keyName, material, cache };
  }

  get disposed(): boolean {
    return this.#state === undefined;
  }

  cacheStats(): DataKeyCacheStats | undefined {
    return this.#state?.cache?.stats();
  }

  dispose(): void {
    const state = this.#state;
    if (!state) return;
    this.#state = undefined;
    state.material.fill(0);
    state.providerId.fill(0);
    state.keyName.fill(0);
    state.cache?.dispose();
  }

  /** The state of `key` if this engine (`owner`) prepared it and it is not disposed. */
  static stateOf(key: PreparedKey, owner: object): KeyState {
    if (!(key instanceof FastPreparedKey) || key.#owner !== owner) {
      throw new InvalidOptionError('key', 'must be a key prepared by this engine (engine.prepare)');
    }
    if (!key.#state) throw new KeyRevokedError();
    return key.#state;
  }
}

/** UTF-8 bytes in a buffer of their own (not a slice of Node's shared pool), so zeroing it is complete. */
function ownedUtf8(text: string): Buffer {
  const bytes = Buffer.alloc(Buffer.byteLength(text, 'utf8'));
  bytes.write(text, 'utf8');
  return bytes;
}

/**
 * A fresh data key wrapped exactly as the raw AES keyring does: AES-256-GCM under the wrapping
 * key, AAD = the serialized context; provider info = key name · tag bits · IV length · IV.
 */
function newDataKey(identity: KeyState, contextBytes: Buffer, random: RandomSource): EncryptionMaterials {
  const draw = random.bytes(DATA_KEY_DRAW);
  if (draw.length !== DATA_KEY_DRAW)
    throw new RandomSourceError('the random source returned the wrong number of bytes');
  const dataKey = Buffer.from(draw.subarray(0, DATA_KEY_LENGTH));
  const wrapIv = draw.subarray(DATA_KEY_LENGTH);
  const { keyName } = identity;
  const providerInfo = Buffer.allocUnsafe(keyName.length + RAW_AES_INFO_SUFFIX_LENGTH);
  keyName.copy(providerInfo, 0);
  providerInfo.writeUInt32BE(TAG_LENGTH * 8, keyName.length);
  providerInfo.writeUInt32BE(IV_LENGTH, keyName.length + 4);
  providerInfo.set(wrapIv, keyName.length + 8);
  const wrap = createCipheriv(ALGORITHM, identity.material, wrapIv);
  wrap.setAAD(contextBytes);
  const encryptedDataKey = Buffer.allocUnsafe(RAW_AES_EDK_LENGTH);
  wrap.update(dataKey).copy(encryptedDataKey, 0);
  wrap.final();
  wrap.getAuthTag().copy(encryptedDataKey, DATA_KEY_LENGTH);
  draw.fill(0);
  return { dataKey, providerInfo, encryptedDataKey };
}

/** `context` serialized, from {@link KeyState.lastContext} when it holds the same pairs in the same order. */
function serializedContext(identity: KeyState, context: EncryptionContext): SerializedContext {
  const keys = Object.keys(context);
  const last = identity.lastContext;
  if (last && last.keys.length === keys.length) {
    let same = true;
    for (let i = 0; i < keys.length && same; i++) {
      same = keys[i] === last.keys[i] && context[keys[i]!] === last.values[i];
    }
    if (same) return last;
  }
  const bytes = serializeEncryptionContext(context);
  const serialized = {
    keys,
    values: keys.map((k) => context[k]!),
    bytes,
    partition: bytes.toString('latin1'),
  };
  identity.lastContext = serialized;
  return serialized;
}

function encryptMessage(
  input: Plaintext,
  identity: KeyState,
  context: EncryptionContext,
  random: RandomSource,
  frameLength: number,
): Uint8Array {
  // Parts that fit one frame are encrypted where they lie; more than a frame's worth is joined first.
  let plaintext: Uint8Array | undefined;
  let parts: readonly Uint8Array[] = [];
  let total = 0;
  if (input instanceof Uint8Array) {
    plaintext = input;
    total = input.length;
  } else if (Array.isArray(input) && input.every((part) => part instanceof Uint8Array)) {
    for (const part of input) total += part.length;
    if (total > frameLength) plaintext = Buffer.concat(input);
    else parts = input;
  } else {
    throw new InvalidOptionError('plaintext', 'must be a Uint8Array or an array of them');
  }
  const serialized = serializedContext(identity, context);
  const contextBytes = serialized.bytes;
  const fresh = () => newDataKey(identity, contextBytes, random);
  const materials = identity.cache
    ? identity.cache.forEncryption(serialized.partition, total, fresh)
    : fresh();

  const messageId = random.bytes(MESSAGE_ID_LENGTH);
  if (messageId.length !== MESSAGE_ID_LENGTH) {
    throw new RandomSourceError('the random source returned the wrong number of bytes');
  }
  const derived = deriveKeys(materials.dataKey, messageId);
  materials.dataKey.fill(0);

  const fields = {
    messageId,
    context: contextBytes,
    providerId: identity.providerId,
    providerInfo: materials.providerInfo,
    encryptedDataKey: materials.encryptedDataKey,
    contentType: CONTENT_TYPE_FRAMED,
    frameLength,
    commitment: derived.commitment,
  };
  const headerLength = headerBodyLength(fields);
  const out = Buffer.allocUnsafe(headerLength + TAG_LENGTH + framedBodyLength(total, frameLength));
  writeHeaderBody(fields, out);
  const headerAuth = createCipheriv(ALGORITHM, derived.key, ZERO_IV);
  headerAuth.setAAD(out.subarray(0, headerLength));
  headerAuth.final();
  headerAuth.getAuthTag().copy(out, headerLength);

  let pos = headerLength + TAG_LENGTH;
  let offset = 0;
  let sequenceNumber = 1;
  // Regular frames while more than one frame's worth remains; the rest (maybe 0 bytes) is final.
  while (total - offset > frameLength) {
    out.writeUInt32BE(sequenceNumber, pos);
    writeFrameIv(out, pos + 4, sequenceNumber);
    pos = sealFrame(out, pos + 4, derived.key, messageId, FRAME_AAD, sequenceNumber, frameLength, [
      plaintext!.subarray(offset, offset + frameLength),
    ]);
    offset += frameLength;
    sequenceNumber++;
  }
  const last = total - offset;
  out.writeUInt32BE(SEQUENCE_NUMBER_END, pos);
  out.writeUInt32BE(sequenceNumber, pos + 4);
  writeFrameIv(out, pos + 8, sequenceNumber);
  out.writeUInt32BE(last, pos + 8 + IV_LENGTH);
  // sealFrame expects the IV at `ivPos` and writes content right after it; the final frame has
  // its content length in between, so shift the write position by those 4 bytes.
  sealFrame(
    out,
    pos + 8,
    derived.key,
    messageId,
    FINAL_FRAME_AAD,
    sequenceNumber,
    last,
    plaintext ? [plaintext.subarray(offset)] : parts,
    4,
  );
  derived.key.fill(0);
  return out;
}

/** Encrypts one frame of `length` bytes (`content`, in parts) whose IV is at `ivPos`; returns the position after its tag. */
function sealFrame(
  out: Buffer,
  ivPos: number,
  key: Buffer,
  messageId: Uint8Array,
  aadContent: Buffer,
  sequenceNumber: number,
  length: number,
  content: readonly Uint8Array[],
  gap = 0,
): number {
  const cipher = createCipheriv(ALGORITHM, key, out.subarray(ivPos, ivPos + IV_LENGTH));
  cipher.setAAD(bodyAad(messageId, aadContent, sequenceNumber, length));
  let pos = ivPos + IV_LENGTH + gap;
  for (const part of content) if (part.length > 0) pos += cipher.update(part).copy(out, pos);
  cipher.final();
  return pos + cipher.getAuthTag().copy(out, pos);
}

function decryptMessage(
  message: Uint8Array,
  identity: KeyState,
): { plaintext: Uint8Array; context: EncryptionContext } {
  const bytes = Buffer.isBuffer(message)
    ? message
    : Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  const header = parseHeader(bytes);
  const { cache } = identity;
  const contextBytes = header.context as Buffer;
  const providerInfo = header.providerInfo as Buffer;
  const encryptedDataKey = header.encryptedDataKey as Buffer;
  let recent = identity.recent;
  if (!recent?.contextBytes.equals(contextBytes)) recent = undefined;
  // Frozen: the same object may be handed to the next message's caller.
  const context = recent?.context ?? Object.freeze(parseEncryptionContext(contextBytes));
  assertOurDataKey(header, identity);
  let edkId = '';
  if (cache) {
    if (recent?.providerInfo.equals(providerInfo) && recent.encryptedDataKey.equals(encryptedDataKey)) {
      edkId = recent.edkId;
    } else {
      // The EDK as the cache knows it: provider info (wrap IV included), EDK and context, all of
      // which the unwrap authenticates.
      edkId = `${providerInfo.toString('latin1')}\0${encryptedDataKey.toString('latin1')}\0${contextBytes.toString('latin1')}`;
      recent = {
        contextBytes: Buffer.from(contextBytes),
        context,
        providerInfo: Buffer.from(providerInfo),
        encryptedDataKey: Buffer.from(encryptedDataKey),
        edkId,
      };
      identity.recent = recent;
    }
  }
  let dataKey = cache?.forDecryption(edkId);
  if (!dataKey) {
    dataKey = unwrapDataKey(header, identity);
    cache?.keepDecrypted(edkId, dataKey);
  }
  const derived = deriveKeys(dataKey, header.messageId);
  dataKey.fill(0);
  if (!timingSafeEqual(derived.commitment, header.commitment)) throw new DecryptionFailedError();
  try {
    const headerAuth = createDecipheriv(ALGORITHM, derived.key, ZERO_IV);
    headerAuth.setAAD(bytes.subarray(0, header.bodyLength));
    headerAuth.setAuthTag(header.headerTag);
    headerAuth.final();
    const plaintext =
      header.contentType === CONTENT_TYPE_NON_FRAMED
        ? openNonFramed(bytes, header, derived.key)
        : openFramed(bytes, header, derived.key);
    return { plaintext, context };
  } finally {
    derived.key.fill(0);
  }
}

/**
 * Refuses an EDK that is not exactly ours: same provider id bytes, provider info = our key name
 * followed by exactly 128 · 12 · IV (no prefix match), 48-byte ciphertext.
 */
function assertOurDataKey(header: ParsedHeader, identity: KeyState): void {
  const info = header.providerInfo as Buffer;
  const nameLength = identity.keyName.length;
  if (
    !identity.providerId.equals(header.providerId) ||
    info.length !== nameLength + RAW_AES_INFO_SUFFIX_LENGTH ||
    !identity.keyName.equals(info.subarray(0, nameLength)) ||
    info.readUInt32BE(nameLength) !== TAG_LENGTH * 8 ||
    info.readUInt32BE(nameLength + 4) !== IV_LENGTH ||
    header.encryptedDataKey.length !== RAW_AES_EDK_LENGTH
  ) {
    throw new DecryptionFailedError();
  }
}

/** Unwraps the data key of an EDK {@link assertOurDataKey} accepted. */
function unwrapDataKey(header: ParsedHeader, identity: KeyState): Buffer {
  const info = header.providerInfo as Buffer;
  const nameLength = identity.keyName.length;
  const edk = header.encryptedDataKey as Buffer;
  const unwrap = createDecipheriv(ALGORITHM, identity.material, info.subarray(nameLength + 8));
  unwrap.setAAD(header.context);
  unwrap.setAuthTag(edk.subarray(DATA_KEY_LENGTH));
  const dataKey = unwrap.update(edk.subarray(0, DATA_KEY_LENGTH));
  unwrap.final();
  return dataKey;
}

/** Decrypts one frame or block after checking it lies inside the message. */
function openFrame(
  bytes: Buffer,
  key: Buffer,
  iv: Buffer,
  aad: Buffer,
  contentStart: number,
  contentLength: number,
): Buffer {
  const decipher = createDecipheriv(ALGORITHM, key, iv);
  decipher.setAAD(aad);
  decipher.setAuthTag(
    bytes.subarray(contentStart + contentLength, contentStart + contentLength + TAG_LENGTH),
  );
  const plaintext = decipher.update(bytes.subarray(contentStart, contentStart + contentLength));
  decipher.final();
  return plaintext;
}

function openFramed(bytes: Buffer, header: ParsedHeader, key: Buffer): Buffer {
  const { frameLength, messageId } = header;
  const end = bytes.length;
  const chunks: Buffer[] = [];
  let pos = header.bodyStart;
  let sequenceNumber = 1;
  for (;;) {
    if (pos + 4 > end) throw new DecryptionFailedError();
    const marker = bytes.readUInt32BE(pos);
    if (marker === SEQUENCE_NUMBER_END) {
      if (pos + 4 + 4 + IV_LENGTH + 4 > end || bytes.readUInt32BE(pos + 4) !== sequenceNumber) {
        throw new DecryptionFailedError();
      }
      const iv = bytes.subarray(pos + 8, pos + 8 + IV_LENGTH);
      const length = bytes.readUInt32BE(pos + 8 + IV_LENGTH);
      const start = pos + 8 + IV_LENGTH + 4;
      // Exactly to the end: a shorter message is truncated, a longer one has trailing bytes.
      if (length > frameLength || start + length + TAG_LENGTH !== end) throw new DecryptionFailedError();
      const aad = bodyAad(messageId, FINAL_FRAME_AAD, sequenceNumber, length);
      chunks.push(openFrame(bytes, key, iv, aad, start, length));
      break;
    }
    if (marker !== sequenceNumber || pos + FRAME_OVERHEAD + frameLength > end)
      throw new DecryptionFailedError();
    const iv = bytes.subarray(pos + 4, pos + 4 + IV_LENGTH);
    const aad = bodyAad(messageId, FRAME_AAD, sequenceNumber, frameLength);
    chunks.push(openFrame(bytes, key, iv, aad, pos + 4 + IV_LENGTH, frameLength));
    pos += FRAME_OVERHEAD + frameLength;
    sequenceNumber++;
  }
  return chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks);
}

function openNonFramed(bytes: Buffer, header: ParsedHeader, key: Buffer): Buffer {
  const pos = header.bodyStart;
  if (pos + IV_LENGTH + 8 > bytes.length) throw new DecryptionFailedError();
  const iv = bytes.subarray(pos, pos + IV_LENGTH);
  const length = bytes.readUInt32BE(pos + IV_LENGTH) * 2 ** 32 + bytes.readUInt32BE(pos + IV_LENGTH + 4);
  const start = pos + IV_LENGTH + 8;
  if (length > MAX_NON_FRAMED_LENGTH || start + length + TAG_LENGTH !== bytes.length)
    throw new DecryptionFailedError();
  return openFrame(bytes, key, iv, bodyAad(header.messageId, NON_FRAMED_AAD, 1, length), start, length);
}
