import { createHash } from 'node:crypto';
import { UnsealShareMalformedError } from '../errors.ts';
import { KEYSTORE_ID_PATTERN } from '../keystore/keystore-id.ts';

/**
 * The text form of one unseal key (a Shamir share of a KEK), as `operator init` prints it:
 *
 * `tks1-<keystoreId>-<base64(kekId(8) || share(33) || checksum(4))>`
 *
 * The keystore id says at a glance which keystore a share opens, and lets a server refuse a share
 * of another keystore before counting it; the KEK id refuses a share of a KEK the keystore no
 * longer uses (after `operator rekey`); the checksum (first 4 bytes of SHA-256 over everything
 * before it) catches a mistyped or truncated share. None of these is secret. The share bytes are
 * what `shamir-secret-sharing` produces (the x coordinate is its last byte).
 */
export interface UnsealShare {
  keystoreId: string;
  kekId: string;
  /** The share as the Shamir library takes it. Secret. */
  share: Uint8Array;
}

const PREFIX = 'tks1';
const KEK_ID_BYTES = 8;
const CHECKSUM_BYTES = 4;
/** A 32-byte KEK split by `shamir-secret-sharing`: 32 bytes of y values plus the x coordinate. */
export const SHARE_BYTES = 33;

export function encodeUnsealShare(share: UnsealShare): string {
  if (!KEYSTORE_ID_PATTERN.test(share.keystoreId)) throw new Error('invalid keystore id');
  const kekId = Buffer.from(share.kekId, 'hex');
  if (kekId.length !== KEK_ID_BYTES || share.share.length !== SHARE_BYTES) throw new Error('invalid share');
  const body = Buffer.concat([kekId, share.share]);
  const sum = checksum(share.keystoreId, body);
  return `${PREFIX}-${share.keystoreId}-${Buffer.concat([body, sum]).toString('base64')}`;
}

/** Parses a share; throws {@link UnsealShareMalformedError} without echoing any of it. */
export function decodeUnsealShare(text: unknown): UnsealShare {
  if (typeof text !== 'string') throw new UnsealShareMalformedError('the unseal key must be a string');
  const parts = text.trim().split('-');
  if (parts.length !== 3 || parts[0] !== PREFIX) {
    throw new UnsealShareMalformedError(
      `not an unseal key: unseal keys look like ${PREFIX}-<keystore id>-<base64>, as operator init printed them`,
    );
  }
  const [, keystoreId, b64] = parts as [string, string, string];
  if (!KEYSTORE_ID_PATTERN.test(keystoreId)) {
    throw new UnsealShareMalformedError('the unseal key does not start with a valid keystore id');
  }
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) {
    throw new UnsealShareMalformedError('the unseal key is not valid base64 after its keystore id');
  }
  const bytes = Buffer.from(b64, 'base64');
  if (bytes.length !== KEK_ID_BYTES + SHARE_BYTES + CHECKSUM_BYTES) {
    throw new UnsealShareMalformedError('the unseal key has the wrong length (truncated or mistyped?)');
  }
  const body = bytes.subarray(0, KEK_ID_BYTES + SHARE_BYTES);
  if (!checksum(keystoreId, body).equals(bytes.subarray(KEK_ID_BYTES + SHARE_BYTES))) {
    throw new UnsealShareMalformedError('the unseal key fails its checksum (mistyped?)');
  }
  return {
    keystoreId,
    kekId: body.subarray(0, KEK_ID_BYTES).toString('hex'),
    share: Uint8Array.from(body.subarray(KEK_ID_BYTES)),
  };
}

function checksum(keystoreId: string, body: Uint8Array): Buffer {
  return createHash('sha256')
    .update(`${PREFIX}-${keystoreId}-`)
    .update(body)
    .digest()
    .subarray(0, CHECKSUM_BYTES);
}
