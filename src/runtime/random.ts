import { randomBytes, randomFillSync } from 'node:crypto';

/** Randomness, injected: key generation and IVs draw from it. Production uses the OS CSPRNG. */
export interface RandomSource {
  bytes(length: number): Uint8Array;
}

export const systemRandom: RandomSource = {
  bytes: (length) => randomBytes(length),
};

/**
 * The OS CSPRNG drawn in blocks: one `randomFillSync` per `blockSize` bytes instead of one
 * `randomBytes` call per request, which at one small draw per encrypted payload was a measurable
 * part of the fast engine's cost (Node's `randomUUID` buffers its entropy the same way). Each
 * request gets a copy, and the bytes handed out are zeroed in the block, so the block only ever
 * holds bytes nobody has seen. Requests larger than an eighth of the block go to `randomBytes`.
 */
export function blockRandom(blockSize = 4096): RandomSource {
  if (!Number.isSafeInteger(blockSize) || blockSize < 64)
    throw new RangeError('blockSize must be an integer >= 64');
  const block = Buffer.alloc(blockSize);
  let offset = blockSize;
  return {
    bytes(length) {
      if (length > blockSize / 8) return randomBytes(length);
      if (offset + length > blockSize) {
        randomFillSync(block);
        offset = 0;
      }
      const out = Buffer.from(block.subarray(offset, offset + length));
      block.fill(0, offset, offset + length);
      offset += length;
      return out;
    },
  };
}
