import { randomBytes } from 'node:crypto';
import { EncryptedDataKey } from '@aws-crypto/client-node';
import { aadFactory } from '@aws-crypto/serialize';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError, InvalidOptionError, MalformedPayloadError } from '../../src/errors.ts';
import {
  bodyAad,
  CONTENT_TYPE_FRAMED,
  CONTENT_TYPE_NON_FRAMED,
  FINAL_FRAME_AAD,
  FINAL_FRAME_OVERHEAD,
  FRAME_AAD,
  FRAME_OVERHEAD,
  framedBodyLength,
  type HeaderFields,
  headerBodyLength,
  MAX_FRAME_LENGTH,
  NON_FRAMED_AAD,
  parseEncryptionContext,
  parseHeader,
  SUITE_ID,
  serializeEncryptionContext,
  TAG_LENGTH,
  writeFrameIv,
  writeHeaderBody,
} from '../../src/esdk/message-format.ts';
import { fromUtf8, sdkDeserialize, sdkSerialize } from './craft.ts';

/*
 * message-format.ts field by field, checked against the AWS Encryption SDK's own serializer and
 * deserializer (@aws-crypto/serialize, the code @aws-crypto/client-node runs), not against itself.
 */

const sdkAad = aadFactory(fromUtf8);

/** A uint16-length-prefixed field. */
const field = (bytes: Uint8Array) => {
  const out = Buffer.alloc(2 + bytes.length);
  out.writeUInt16BE(bytes.length, 0);
  out.set(bytes, 2);
  return out;
};
/** A serialized context from raw key/value byte pairs, in the order given (canonical or not). */
const rawContext = (pairs: [Uint8Array, Uint8Array][], count = pairs.length) =>
  Buffer.concat([
    Buffer.from([count >> 8, count & 0xff]),
    ...pairs.flatMap(([k, v]) => [field(k), field(v)]),
  ]);

const contextArb = fc.dictionary(
  fc.string({ unit: 'binary', maxLength: 12 }).filter((k) => k !== 'aws-crypto-public-key'),
  fc.string({ unit: 'binary', maxLength: 20 }),
  { maxKeys: 6 },
);

function expectOpaque(fn: () => unknown): void {
  expect(fn).toThrow(DecryptionFailedError);
}

describe('serializeEncryptionContext', () => {
  it('is byte for byte what the SDK serializes (with utf8Sorting), for random contexts', () => {
    fc.assert(
      fc.property(contextArb, (context) => {
        const ours = serializeEncryptionContext(context);
        // The SDK's form carries the AAD length in front; ours is the field content.
        const sdk = Buffer.from(sdkSerialize.serializeEncryptionContext(context));
        expect(sdk.readUInt16BE(0)).toBe(ours.length);
        expect(sdk.subarray(2).equals(ours)).toBe(true);
      }),
      { numRuns: 300 },
    );
  });

  it('writes nothing for the empty context (the count is omitted, per spec)', () => {
    expect(serializeEncryptionContext({})).toHaveLength(0);
  });

  it('sorts by UTF-8 bytes, not UTF-16 code units nor locale', () => {
    // U+FFFF (EF BF BF) sorts before U+10000 (F0 90 80 80) in UTF-8, after it in UTF-16.
    const bytes = serializeEncryptionContext({ '\u{10000}': 'b', '\uffff': 'a', B: '1', a: '2' });
    expect(bytes.readUInt16BE(0)).toBe(4);
    expect(Object.keys(parseEncryptionContext(bytes))).toEqual(['B', 'a', '\uffff', '\u{10000}']);
  });

  it('refuses what cannot be serialized canonically, naming the field', () => {
    expect(() => serializeEncryptionContext({ 'aws-crypto-public-key': 'x' })).toThrow(InvalidOptionError);
    expect(() => serializeEncryptionContext({ a: '\udc00' })).toThrow(/well-formed/);
    expect(() => serializeEncryptionContext({ '\ud800': 'a' })).toThrow(/well-formed/);
    expect(() => serializeEncryptionContext({ a: 1 as never })).toThrow(/strings/);
    expect(() => serializeEncryptionContext({ a: 'x'.repeat(0x10000) })).toThrow(/too long/);
    expect(() => serializeEncryptionContext({ a: 'x'.repeat(0xfff0), b: 'y'.repeat(20) })).toThrow(/65535/);
    // The largest context that fits: 2 + 4 + 1 + 65528 = 65535 bytes.
    expect(serializeEncryptionContext({ a: 'x'.repeat(65528) })).toHaveLength(0xffff);
  });
});

describe('parseEncryptionContext: only the canonical form', () => {
  const a = fromUtf8('a');
  const b = fromUtf8('b');
  const one = fromUtf8('1');

  it('reads what serializeEncryptionContext and the SDK write, to the same context', () => {
    fc.assert(
      fc.property(contextArb, (context) => {
        const bytes = serializeEncryptionContext(context);
        const parsed = parseEncryptionContext(bytes);
        expect(parsed).toEqual(context);
        expect({ ...sdkDeserialize.decodeEncryptionContext(bytes) }).toEqual(context);
      }),
      { numRuns: 300 },
    );
  });

  it('accepts nothing it would not write itself: whatever parses re-serializes to the same bytes', () => {
    // Mutations of valid serializations: anything accepted is canonical.
    fc.assert(
      fc.property(contextArb, fc.nat(), fc.integer({ min: 0, max: 255 }), (context, at, byte) => {
        const bytes = Buffer.from(serializeEncryptionContext(context));
        if (bytes.length === 0) return;
        bytes[at % bytes.length] = byte;
        let parsed: Record<string, string> | undefined;
        try {
          parsed = parseEncryptionContext(bytes);
        } catch (error) {
          expect(error).toBeInstanceOf(DecryptionFailedError);
          return;
        }
        expect(serializeEncryptionContext(parsed).equals(bytes)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses two bytes with count 0 (the empty context is zero bytes; the SDK accepts it)', () => {
    expectOpaque(() => parseEncryptionContext(Buffer.from([0, 0])));
    expect({ ...sdkDeserialize.decodeEncryptionContext(Buffer.from([0, 0])) }).toEqual({});
  });

  it('refuses a lone byte, a count larger than the pairs present, and trailing bytes', () => {
    expectOpaque(() => parseEncryptionContext(Buffer.from([1])));
    expectOpaque(() => parseEncryptionContext(rawContext([[a, one]], 2)));
    expectOpaque(() => parseEncryptionContext(Buffer.concat([rawContext([[a, one]]), Buffer.from([0])])));
  });

  it('refuses a key or value length running past the end', () => {
    const valid = rawContext([[a, one]]);
    for (const at of [2, 5]) {
      const bad = Buffer.from(valid);
      bad.writeUInt16BE(2, at);
      expectOpaque(() => parseEncryptionContext(bad));
    }
    for (let length = 1; length < valid.length; length++) {
      expectOpaque(() => parseEncryptionContext(valid.subarray(0, length)));
    }
  });

  it('refuses duplicate keys and keys out of byte order (the SDK accepts the latter)', () => {
    expectOpaque(() =>
      parseEncryptionContext(
        rawContext([
          [a, one],
          [a, one],
        ]),
      ),
    );
    const descending = rawContext([
      [b, one],
      [a, one],
    ]);
    expectOpaque(() => parseEncryptionContext(descending));
    expect({ ...sdkDeserialize.decodeEncryptionContext(descending) }).toEqual({ a: '1', b: '1' });
  });

  it('refuses invalid UTF-8 in a key or a value (the SDK decodes it to U+FFFD)', () => {
    const invalid = Buffer.from([0xc3, 0x28]);
    expectOpaque(() => parseEncryptionContext(rawContext([[invalid, one]])));
    expectOpaque(() => parseEncryptionContext(rawContext([[a, invalid]])));
    expectOpaque(() => parseEncryptionContext(rawContext([[a, Buffer.from([0xed, 0xa0, 0x80])]]))); // a surrogate
  });

  it('refuses the key the SDK reserves for signing suites', () => {
    expectOpaque(() => parseEncryptionContext(rawContext([[fromUtf8('aws-crypto-public-key'), one]])));
  });

  it('keeps a key named __proto__ as plain data', () => {
    const parsed = parseEncryptionContext(rawContext([[fromUtf8('__proto__'), one]]));
    expect(Object.getPrototypeOf(parsed)).toBe(Object.prototype);
    expect(Object.keys(parsed)).toEqual(['__proto__']);
  });
});

/** Header fields of a valid message, as the fast engine writes them. */
function fieldsOf(overrides: Partial<HeaderFields> = {}): HeaderFields {
  const keyName = fromUtf8('default/v1/');
  const info = Buffer.alloc(keyName.length + 20);
  keyName.copy(info);
  info.writeUInt32BE(128, keyName.length);
  info.writeUInt32BE(12, keyName.length + 4);
  randomBytes(12).copy(info, keyName.length + 8);
  return {
    messageId: randomBytes(32),
    context: serializeEncryptionContext({ ns: 'default', v: '1' }),
    providerId: fromUtf8('temporal-keyring'),
    providerInfo: info,
    encryptedDataKey: randomBytes(48),
    contentType: CONTENT_TYPE_FRAMED,
    frameLength: 4096,
    commitment: randomBytes(32),
    ...overrides,
  };
}

/** A header body, its 16-byte tag, and `body` bytes after it. */
function messageOf(fields: HeaderFields, body = Buffer.alloc(0)): Buffer {
  const length = headerBodyLength(fields);
  const out = Buffer.alloc(length + TAG_LENGTH + body.length);
  expect(writeHeaderBody(fields, out)).toBe(length);
  randomBytes(TAG_LENGTH).copy(out, length);
  body.copy(out, length + TAG_LENGTH);
  return out;
}

/** Offsets of each field in a header with an empty-or-not context and one EDK. */
function offsetsOf(f: HeaderFields) {
  const contextLength = 35;
  const edkCount = contextLength + 2 + f.context.length;
  const providerId = edkCount + 2;
  const providerInfo = providerId + 2 + f.providerId.length;
  const edk = providerInfo + 2 + f.providerInfo.length;
  const contentType = edk + 2 + f.encryptedDataKey.length;
  return {
    contextLength,
    edkCount,
    providerId,
    providerInfo,
    edk,
    contentType,
    frameLength: contentType + 1,
  };
}

describe('writeHeaderBody', () => {
  it('writes what the SDK serializes for the same header, byte for byte', () => {
    fc.assert(
      fc.property(
        contextArb,
        fc.integer({ min: 1, max: MAX_FRAME_LENGTH }),
        fc.string({ minLength: 1, maxLength: 40 }),
        (context, frameLength, keyName) => {
          const info = Buffer.concat([fromUtf8(keyName), randomBytes(20)]);
          const f = fieldsOf({
            context: serializeEncryptionContext(context),
            frameLength,
            providerInfo: info,
          });
          const out = Buffer.alloc(headerBodyLength(f));
          writeHeaderBody(f, out);
          const sdk = sdkSerialize.serializeMessageHeader({
            version: 2,
            suiteId: SUITE_ID,
            messageId: f.messageId,
            encryptionContext: context,
            encryptedDataKeys: [
              new EncryptedDataKey({
                providerId: 'temporal-keyring',
                providerInfo: info.toString('latin1'),
                rawInfo: info,
                encryptedDataKey: f.encryptedDataKey,
              }),
            ],
            contentType: CONTENT_TYPE_FRAMED,
            frameLength,
            suiteData: f.commitment,
          } as never);
          expect(Buffer.from(sdk).equals(out)).toBe(true);
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('parseHeader, field by field', () => {
  it('reads back every field written, and the SDK deserializer agrees', () => {
    const f = fieldsOf();
    const message = messageOf(f, Buffer.alloc(40));
    const h = parseHeader(message);
    for (const name of [
      'messageId',
      'context',
      'providerId',
      'providerInfo',
      'encryptedDataKey',
      'commitment',
    ] as const) {
      expect(Buffer.from(h[name]).equals(Buffer.from(f[name])), name).toBe(true);
    }
    expect(h.contentType).toBe(CONTENT_TYPE_FRAMED);
    expect(h.frameLength).toBe(4096);
    expect(h.bodyLength).toBe(headerBodyLength(f));
    expect(h.bodyStart).toBe(headerBodyLength(f) + TAG_LENGTH);
    expect(Buffer.from(h.headerTag).equals(message.subarray(h.bodyLength, h.bodyStart))).toBe(true);
    const sdk = sdkDeserialize.deserializeMessageHeader(message, { maxEncryptedDataKeys: 1 });
    if (sdk === false) throw new Error('the SDK did not parse the header');
    expect(sdk.headerLength).toBe(h.bodyLength);
    expect(sdk.messageHeader.frameLength).toBe(4096);
    const suiteData = (sdk as unknown as { messageHeader: { suiteData: Uint8Array } }).messageHeader
      .suiteData;
    expect(Buffer.from(suiteData).equals(h.commitment as Buffer)).toBe(true);
  });

  it('version and suite: not an ESDK message is malformed; another version or suite is opaque', () => {
    const message = messageOf(fieldsOf());
    for (const bytes of [Buffer.alloc(0), message.subarray(0, 2), Buffer.from([3, 4, 0x78])]) {
      expect(() => parseHeader(bytes)).toThrow(MalformedPayloadError);
    }
    const v1 = Buffer.from(message);
    v1[0] = 1;
    expectOpaque(() => parseHeader(v1));
    for (const suite of [0x0578, 0x0178, 0x0014, 0x0479]) {
      const other = Buffer.from(message);
      other.writeUInt16BE(suite, 1);
      expectOpaque(() => parseHeader(other));
    }
  });

  it('every truncation of the header (tag included) is refused, before any length is trusted', () => {
    const message = messageOf(fieldsOf());
    const end = parseHeader(message).bodyStart;
    for (let length = 3; length < end; length++) expectOpaque(() => parseHeader(message.subarray(0, length)));
  });

  it('each length field claiming more than is present is refused: context, provider id, provider info, EDK', () => {
    const f = fieldsOf();
    const message = messageOf(f);
    const at = offsetsOf(f);
    for (const [name, offset] of [
      ['context length', at.contextLength],
      ['provider id length', at.providerId],
      ['provider info length', at.providerInfo],
      ['EDK length', at.edk],
    ] as const) {
      const bad = Buffer.from(message);
      bad.writeUInt16BE(0xffff, offset);
      expect(() => parseHeader(bad), name).toThrow(DecryptionFailedError);
      // A claim just past the end of the header is refused too.
      const past = Buffer.from(message);
      past.writeUInt16BE(message.length - offset, offset);
      expect(() => parseHeader(past), `${name} past the end`).toThrow(DecryptionFailedError);
    }
  });

  it('EDK count: exactly one', () => {
    const f = fieldsOf();
    const at = offsetsOf(f);
    for (const count of [0, 2, 0xffff]) {
      const bad = messageOf(f);
      bad.writeUInt16BE(count, at.edkCount);
      expectOpaque(() => parseHeader(bad));
    }
  });

  it('content type: 1 (non-framed) or 2 (framed), nothing else', () => {
    for (const contentType of [0, 3, 0xff])
      expectOpaque(() => parseHeader(messageOf(fieldsOf({ contentType }))));
  });

  it('frame length: 0 for a non-framed message, 1 .. 2^32 - 1 for a framed one', () => {
    expect(
      parseHeader(messageOf(fieldsOf({ contentType: CONTENT_TYPE_NON_FRAMED, frameLength: 0 }))).frameLength,
    ).toBe(0);
    for (const frameLength of [1, 4096, 2 ** 32 - 1]) {
      expectOpaque(() =>
        parseHeader(messageOf(fieldsOf({ contentType: CONTENT_TYPE_NON_FRAMED, frameLength }))),
      );
      expect(parseHeader(messageOf(fieldsOf({ frameLength }))).frameLength).toBe(frameLength);
    }
    expectOpaque(() => parseHeader(messageOf(fieldsOf({ frameLength: 0 }))));
  });

  it('an empty context has AAD length 0 and no count', () => {
    const f = fieldsOf({ context: Buffer.alloc(0) });
    const message = messageOf(f);
    expect(message.readUInt16BE(35)).toBe(0);
    expect(message.readUInt16BE(37)).toBe(1); // the EDK count right after
    expect(parseHeader(message).context).toHaveLength(0);
  });
});

describe('body layout', () => {
  it('bodyAad is what the SDK computes, for each content string and 64-bit lengths', () => {
    const messageId = randomBytes(32);
    const cases: [Buffer, string, number, number][] = [
      [FRAME_AAD, 'AWSKMSEncryptionClient Frame', 7, 4096],
      [FINAL_FRAME_AAD, 'AWSKMSEncryptionClient Final Frame', 0xffffffff, 0],
      [NON_FRAMED_AAD, 'AWSKMSEncryptionClient Single Block', 1, 2 ** 36 - 32],
    ];
    for (const [content, text, sequenceNumber, length] of cases) {
      const sdk = sdkAad.messageAAD(messageId, text as never, sequenceNumber, length);
      expect(bodyAad(messageId, content, sequenceNumber, length).equals(Buffer.from(sdk))).toBe(true);
    }
  });

  it('frame IVs are the sequence number, big-endian, left-padded to 12 bytes, as the SDK builds them', () => {
    for (const n of [1, 2, 255, 256, 0xfffffffe]) {
      const out = Buffer.alloc(12, 0xaa);
      writeFrameIv(out, 0, n);
      expect(out.equals(Buffer.from(sdkSerialize.frameIv(12, n)))).toBe(true);
    }
  });

  it('framedBodyLength: full regular frames, then a final frame of the rest (a full one when it divides)', () => {
    expect(framedBodyLength(0, 10)).toBe(FINAL_FRAME_OVERHEAD);
    expect(framedBodyLength(5, 10)).toBe(FINAL_FRAME_OVERHEAD + 5);
    expect(framedBodyLength(10, 10)).toBe(FINAL_FRAME_OVERHEAD + 10);
    expect(framedBodyLength(11, 10)).toBe(FRAME_OVERHEAD + 10 + FINAL_FRAME_OVERHEAD + 1);
    expect(framedBodyLength(30, 10)).toBe(2 * (FRAME_OVERHEAD + 10) + FINAL_FRAME_OVERHEAD + 10);
  });
});
