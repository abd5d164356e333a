import { randomBytes } from 'node:crypto';

/** Randomness, injected: key generation and IVs draw from it. Production uses the OS CSPRNG. */
export interface RandomSource {
  bytes(length: number): Uint8Array;
}

export const systemRandom: RandomSource = {
  bytes: (length) => randomBytes(length),
};
