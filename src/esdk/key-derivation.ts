import { createHmac } from 'node:crypto';
import { SUITE_ID } from './message-format.ts';

/**
 * Key derivation of suite 0x0478 (ALG_AES_256_GCM_HKDF_SHA512_COMMIT_KEY): HKDF-SHA512 with the
 * data key as input key material and the 32-byte message id as salt, expanded twice: once with
 * info `"COMMITKEY"` into the 32-byte key commitment stored in the header, once with info
 * `suite id (uint16) || "DERIVEKEY"` into the AES-256-GCM key of the header tag and every frame.
 *
 * Pipeline position: `fastEngine` → this → AES-256-GCM. Both outputs are at most one SHA-512
 * block, so each expand is a single HMAC (T(1) = HMAC(PRK, info || 0x01)): three HMACs in all.
 *
 * HMAC comes from `crypto.createHmac`. An earlier version spelled HMAC out over one-shot
 * `crypto.hash` with module-level scratch buffers; bench/kdf-micro.ts (both in one run) found it
 * not measurably faster: 0.81x to 1.37x of `createHmac` over nine runs on Node 20 (2 shared cores),
 * median about 1.1x, a few µs per message at best, within the noise. So the library path
 * stays. Three HMACs beat two `crypto.hkdfSync` calls (which repeat the extract) by 2x to 3x.
 * test/esdk/key-derivation.test.ts compares the result with `crypto.hkdfSync` byte for byte.
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

/**
 * Both outputs as 32-byte copies: each HMAC's full 64-byte output (and the PRK) is zeroed here, so
 * a caller zeroing `key` leaves no derived byte behind.
 */
export function deriveKeys(dataKey: Uint8Array, messageId: Uint8Array): DerivedKeys {
  // Extract: PRK = HMAC(salt = message id, IKM = data key). Expand: T(1) = HMAC(PRK, info || 0x01).
  const prk = createHmac('sha512', messageId).update(dataKey).digest();
  const commitment = firstBytes(createHmac('sha512', prk).update(COMMIT_INFO).digest());
  const key = firstBytes(createHmac('sha512', prk).update(KEY_INFO).digest());
  prk.fill(0);
  return { commitment, key };
}

/**
 * The first {@link OUTPUT_LENGTH} bytes of `mac` copied out (into Node's small-buffer pool: a
 * fresh ArrayBuffer per call cost a measurable share of the KDF); `mac` (all 64 bytes) is zeroed,
 * so zeroing the result leaves no derived byte anywhere.
 */
function firstBytes(mac: Buffer): Buffer {
  const out = Buffer.allocUnsafe(OUTPUT_LENGTH);
  mac.copy(out, 0, 0, OUTPUT_LENGTH);
  mac.fill(0);
  return out;
}
