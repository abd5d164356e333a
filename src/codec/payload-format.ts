/**
 * The wire format of an encrypted payload: the names a Temporal payload's metadata and an ESDK
 * message's encryption context carry. These strings are a stored format (payloads live in workflow
 * histories for years): never change one, only add. Documented for other languages in
 * docs/payload-format.md.
 *
 * An encrypted payload is `{ metadata: { encoding, encryption-key-id, encryption-key-version },
 * data: <ESDK message> }`, whose plaintext is the whole original `temporal.api.common.v1.Payload`
 * serialized with protobuf (so its own metadata, such as `encoding: json/plain`, is protected too).
 */

import { keyIdOf } from '../key-version.ts';

/** `metadata.encoding` of an encrypted payload. Anything else passes through decode untouched. */
export const ENCODING_ENCRYPTED = 'binary/encrypted';

/** Metadata key holding the key id `<namespace>/v<version>`, readable by humans and audit logs. */
export const METADATA_ENCODING = 'encoding';
export const METADATA_KEY_ID = 'encryption-key-id';
/**
 * Metadata key holding the key version in decimal. Redundant with the key id on purpose: the codec
 * finds the key from it without parsing the id, and requires the two to agree.
 */
export const METADATA_KEY_VERSION = 'encryption-key-version';

/** Encryption context key binding the namespace into the ciphertext (authenticated, not secret). */
export const CONTEXT_NAMESPACE = 'temporal-keyring:namespace';
/** Encryption context key binding the key version into the ciphertext. */
export const CONTEXT_KEY_VERSION = 'temporal-keyring:key-version';

/** The exact encryption context of a payload encrypted under a namespace's version. */
export function encryptionContextOf(namespace: string, version: number): Record<string, string> {
  return { [CONTEXT_NAMESPACE]: namespace, [CONTEXT_KEY_VERSION]: String(version) };
}

/** `<namespace>/v<version>`: the value of {@link METADATA_KEY_ID}. */
export const keyIdFor = keyIdOf;

/** Largest key version accepted from metadata: keeps parsing exact (safe integers only). */
export const MAX_KEY_VERSION = Number.MAX_SAFE_INTEGER;

/**
 * Parses a decimal key version strictly: digits only, no sign, no leading zero, no spaces, at
 * least 1. Returns `undefined` for anything else.
 */
export function parseKeyVersion(text: string): number | undefined {
  if (!/^[1-9][0-9]{0,15}$/.test(text)) return undefined;
  const version = Number(text);
  return Number.isSafeInteger(version) ? version : undefined;
}
