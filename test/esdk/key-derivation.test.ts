import { createHmac, hkdfSync } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { deriveKeys } from '../../src/esdk/key-derivation.ts';

/*
 * deriveKeys (suite 0x0478's HKDF-SHA512: salt = message id, IKM = data key, two 32-byte outputs)
 * byte for byte against node:crypto's own HKDF and HMAC, on random inputs of varied lengths,
 * called in random interleavings so that no state can carry from one call to the next.
 */

const COMMIT_INFO = Buffer.from('COMMITKEY');
const KEY_INFO = Buffer.concat([Buffer.from([0x04, 0x78]), Buffer.from('DERIVEKEY')]);

const hkdf = (ikm: Uint8Array, salt: Uint8Array, info: Buffer) =>
  Buffer.from(hkdfSync('sha512', ikm, salt, info, 32));

/** RFC 5869 with createHmac, spelled out: extract, then one expand block per output. */
function hmacHkdf(ikm: Uint8Array, salt: Uint8Array, info: Buffer): Buffer {
  const prk = createHmac('sha512', salt).update(ikm).digest();
  return createHmac('sha512', prk)
    .update(info)
    .update(Buffer.from([1]))
    .digest()
    .subarray(0, 32);
}

describe('deriveKeys', () => {
  it('equals crypto.hkdfSync and an HKDF built from crypto.createHmac, for sequences of inputs of any length', () => {
    // Lengths around the HMAC block (128) and digest (64) sizes, where a hand-written HMAC would
    // hash, pad or reuse buffers differently; the engine's own inputs are 32 and 32 bytes.
    const bytes = fc.oneof(
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.uint8Array({ maxLength: 300 }),
      fc.integer({ min: 60, max: 140 }).chain((n) => fc.uint8Array({ minLength: n, maxLength: n })),
    );
    fc.assert(
      fc.property(fc.array(fc.tuple(bytes, bytes), { minLength: 1, maxLength: 6 }), (calls) => {
        for (const [dataKey, messageId] of calls) {
          const { commitment, key } = deriveKeys(dataKey, messageId);
          expect(commitment).toHaveLength(32);
          expect(key).toHaveLength(32);
          expect(commitment.equals(hkdf(dataKey, messageId, COMMIT_INFO))).toBe(true);
          expect(key.equals(hkdf(dataKey, messageId, KEY_INFO))).toBe(true);
          expect(commitment.equals(hmacHkdf(dataKey, messageId, COMMIT_INFO))).toBe(true);
          expect(key.equals(hmacHkdf(dataKey, messageId, KEY_INFO))).toBe(true);
        }
      }),
      { numRuns: 500, seed: 16 },
    );
  });

  it('returns 32 bytes each, apart: zeroing the key leaves the commitment as it was', () => {
    const { commitment, key } = deriveKeys(Buffer.alloc(32, 1), Buffer.alloc(32, 2));
    expect(key).toHaveLength(32);
    expect(commitment).toHaveLength(32);
    key.fill(0);
    expect(commitment.equals(hkdf(Buffer.alloc(32, 1), Buffer.alloc(32, 2), COMMIT_INFO))).toBe(true);
  });
});
