import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { keyIdOfPayload } from '../../src/codec/encryption-codec.ts';

const strict = new TextDecoder('utf-8', { fatal: true });
const encrypted = new TextEncoder().encode('binary/encrypted');

/** What the codec must read from metadata: the strict UTF-8 decoding, or undefined if invalid. */
function expected(bytes: Uint8Array): string | undefined {
  try {
    return strict.decode(bytes);
  } catch {
    return undefined;
  }
}

describe('metadata text (the codec reads short ASCII without a decoder call)', () => {
  it('reads every byte string as the strict UTF-8 decoder does', () => {
    const ascii = fc.uint8Array({ maxLength: 80 }).map((a) => a.map((b) => b & 0x7f));
    const any = fc.uint8Array({ maxLength: 80 });
    const utf8 = fc.string({ unit: 'binary', maxLength: 40 }).map((s) => new TextEncoder().encode(s));
    fc.assert(
      fc.property(fc.oneof(ascii, any, utf8), (bytes) => {
        const payload = { metadata: { encoding: encrypted, 'encryption-key-id': bytes } };
        expect(keyIdOfPayload(payload)).toBe(expected(bytes));
      }),
      { numRuns: 3000 },
    );
  });

  it('keeps the decoder for a byte-order mark, NUL and the 64/65-byte boundary', () => {
    for (const bytes of [
      Uint8Array.of(0xef, 0xbb, 0xbf, 0x61),
      Uint8Array.of(0x61, 0x00, 0x62),
      new Uint8Array(64).fill(0x61),
      new Uint8Array(65).fill(0x61),
      Uint8Array.of(0x80),
    ]) {
      const payload = { metadata: { encoding: encrypted, 'encryption-key-id': bytes } };
      expect(keyIdOfPayload(payload)).toBe(expected(bytes));
    }
  });
});
