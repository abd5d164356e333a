import { createCipheriv, createHash } from 'node:crypto';
import { NodeAlgorithmSuite } from '@aws-crypto/client-node';
import { deserializeFactory, serializeFactory } from '@aws-crypto/serialize';
import type { WrappingKey } from '../../src/esdk/engine.ts';
import { deriveKeys } from '../../src/esdk/key-derivation.ts';
import {
  bodyAad,
  CONTENT_TYPE_FRAMED,
  CONTENT_TYPE_NON_FRAMED,
  FINAL_FRAME_AAD,
  FRAME_AAD,
  headerBodyLength,
  NON_FRAMED_AAD,
  SEQUENCE_NUMBER_END,
  writeHeaderBody,
} from '../../src/esdk/message-format.ts';

/*
 * Test-only message crafting: authentic ESDK messages (right keys, right tags) whose layout the
 * test chooses, including layouts the engines never write (non-framed bodies, empty final frames,
 * out-of-spec frame lengths, non-canonical contexts). The data key is wrapped with the AAD the
 * SDK's raw AES keyring computes when it reads the message (its own re-serialization of the
 * context it decoded), so whatever the SDK can open, a crafted message lets it open.
 */

export const fromUtf8 = (s: string) => Buffer.from(s, 'utf8');
const toUtf8 = (b: Uint8Array) => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('utf8');
/** The AWS Encryption SDK's own serializer and deserializer (@aws-crypto/serialize), as client-node runs them. */
export const sdkSerialize = serializeFactory(fromUtf8, { utf8Sorting: true });
export const sdkDeserialize = deserializeFactory(toUtf8, NodeAlgorithmSuite);

/** Deterministic bytes from a seed and a label (SHA-256 in counter mode). */
export function seededBytes(seed: string | number, length: number, label = ''): Buffer {
  const out = Buffer.alloc(length);
  for (let pos = 0, i = 0; pos < length; i++) {
    pos += createHash('sha256').update(`${seed}\0${label}\0${i}`).digest().copy(out, pos);
  }
  return out;
}

export interface CraftOptions {
  key: WrappingKey;
  /** The header's context field content, exactly as it will appear (canonical or not). */
  contextBytes: Buffer;
  plaintext: Uint8Array;
  /** `framed` (default) or `non-framed`. */
  content?: 'framed' | 'non-framed';
  /** The header's frame length field. Framed default 4096; non-framed default 0. */
  frameLength?: number;
  /** Plaintext bytes per regular frame (framed): default the header's frame length. */
  chunk?: number;
  /** Framed: end with an empty final frame even when the plaintext fills the last regular frame. */
  emptyFinalFrame?: boolean;
  seed?: string | number;
}

/** An authentic message built by hand (see the file comment). */
export function craftMessage(o: CraftOptions): Buffer {
  const seed = o.seed ?? 'craft';
  const dataKey = seededBytes(seed, 32, 'data key');
  const messageId = seededBytes(seed, 32, 'message id');
  const wrapIv = seededBytes(seed, 12, 'wrap iv');
  const keyName = fromUtf8(o.key.keyName);
  const providerInfo = Buffer.concat([keyName, Buffer.from([0, 0, 0, 128, 0, 0, 0, 12]), wrapIv]);
  // The wrapping AAD the SDK's keyring will use: its serialization of the context it decodes.
  const decoded = o.contextBytes.length === 0 ? {} : sdkDeserialize.decodeEncryptionContext(o.contextBytes);
  const wrapAad = Buffer.from(sdkSerialize.serializeEncryptionContext(decoded)).subarray(2);
  const wrap = createCipheriv('aes-256-gcm', o.key.material, wrapIv);
  wrap.setAAD(wrapAad);
  const edk = Buffer.concat([wrap.update(dataKey), wrap.final(), wrap.getAuthTag()]);
  const derived = deriveKeys(dataKey, messageId);
  const nonFramed = o.content === 'non-framed';
  const frameLength = o.frameLength ?? (nonFramed ? 0 : 4096);
  const fields = {
    messageId,
    context: o.contextBytes,
    providerId: fromUtf8(o.key.providerId),
    providerInfo,
    encryptedDataKey: edk,
    contentType: nonFramed ? CONTENT_TYPE_NON_FRAMED : CONTENT_TYPE_FRAMED,
    frameLength,
    commitment: derived.commitment,
  };
  const header = Buffer.alloc(headerBodyLength(fields));
  writeHeaderBody(fields, header);
  const auth = createCipheriv('aes-256-gcm', derived.key, Buffer.alloc(12));
  auth.setAAD(header);
  auth.final();
  const parts: Buffer[] = [header, auth.getAuthTag()];
  const seal = (iv: Buffer, aad: Buffer, content: Uint8Array) => {
    const c = createCipheriv('aes-256-gcm', derived.key, iv);
    c.setAAD(aad);
    return [c.update(content), c.final(), c.getAuthTag()];
  };
  const ivOf = (n: number) => {
    const iv = Buffer.alloc(12);
    iv.writeUInt32BE(n, 8);
    return iv;
  };
  const plaintext = Buffer.from(o.plaintext);
  if (nonFramed) {
    const length = Buffer.alloc(8);
    length.writeBigUInt64BE(BigInt(plaintext.length));
    parts.push(
      ivOf(1),
      length,
      ...seal(ivOf(1), bodyAad(messageId, NON_FRAMED_AAD, 1, plaintext.length), plaintext),
    );
  } else {
    const chunk = o.chunk ?? frameLength;
    let offset = 0;
    let n = 1;
    const regularWhile = () =>
      o.emptyFinalFrame ? plaintext.length - offset >= chunk && chunk > 0 : plaintext.length - offset > chunk;
    while (regularWhile()) {
      const sequence = Buffer.alloc(4);
      sequence.writeUInt32BE(n);
      const content = plaintext.subarray(offset, offset + chunk);
      parts.push(sequence, ivOf(n), ...seal(ivOf(n), bodyAad(messageId, FRAME_AAD, n, chunk), content));
      offset += chunk;
      n++;
    }
    const rest = plaintext.subarray(offset);
    const head = Buffer.alloc(8);
    head.writeUInt32BE(SEQUENCE_NUMBER_END, 0);
    head.writeUInt32BE(n, 4);
    const length = Buffer.alloc(4);
    length.writeUInt32BE(rest.length);
    parts.push(
      head,
      ivOf(n),
      length,
      ...seal(ivOf(n), bodyAad(messageId, FINAL_FRAME_AAD, n, rest.length), rest),
    );
  }
  derived.key.fill(0);
  dataKey.fill(0);
  return Buffer.concat(parts);
}
