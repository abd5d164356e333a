import { type RandomSource, systemRandom } from '../runtime/random.ts';

/**
 * A keystore's short, random, non-secret identity (16 hex characters), kept in its KEK record
 * (`KekInfo.keystoreId`). It lets a share, a payload hint or an error say which keystore it
 * belongs to without revealing anything: it is not derived from any key.
 */
export const KEYSTORE_ID_PATTERN = /^[0-9a-f]{16}$/;

/** A fresh keystore id from the injected randomness. */
export function generateKeystoreId(random: RandomSource = systemRandom): string {
  return Buffer.from(random.bytes(8)).toString('hex');
}
