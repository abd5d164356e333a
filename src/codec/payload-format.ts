/**
 * The wire format of an encrypted payload: the names a Temporal payload's metadata and an ESDK
 * message's encryption context carry. These strings are a stored format (payloads live in workflow
 * histories for years): never change one, only add. Documented for other languages in
 * docs/payload-format.md.
 *
 * An encrypted payload is `{ metadata: { encoding, [encryption-key-id,] encryption-key-version },
 * data: <ESDK message> }`, whose plaintext is the whole original `temporal.api.common.v1.Payload`
 * serialized with protobuf (so its own metadata, such as `encoding: json/plain`, is protected too).
 *
 * Two formats, both always read; the codec writes the one it is configured with:
 * - format 1 (the default): `encryption-key-id` in the metadata, self-describing ESDK names
 *   (provider id `temporal-keyring`, key name `<namespace>/v<version>/`, context keys
 *   `temporal-keyring:namespace` and `temporal-keyring:key-version`). 400 bytes over a 1 KiB payload.
 * - format 2 (compact): no `encryption-key-id`, and short ESDK names (provider id `tk`, key name
 *   `v<version>/`, context keys `ns` and `v`): 294 bytes over a 1 KiB payload. Readers before
 *   0.2.0 cannot read it: write it once every reader is 0.2.0 or later.
 * A payload with `encryption-key-id` is format 1; one without is format 2.
 */

import { esdkKeyName, PROVIDER_ID } from '../esdk/engine.ts';
import { keyIdOf } from '../model/key-version.ts';

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

/**
 * Metadata key holding the id of the keystore whose key encrypted the payload (16 hex characters,
 * `Keyring.keystoreId`). Not secret and not authenticated: a hint read before decryption, so that
 * a payload of another keystore is told apart from a tampered one in messages. It never decides
 * whether a payload decrypts, and never changes an error's code.
 */
export const METADATA_KEYSTORE_ID = 'encryption-keystore-id';

/** Encryption context key binding the namespace into the ciphertext (authenticated, not secret). */
export const CONTEXT_NAMESPACE = 'temporal-keyring:namespace';
/** Encryption context key binding the key version into the ciphertext. */
export const CONTEXT_KEY_VERSION = 'temporal-keyring:key-version';

/** The exact encryption context of a payload encrypted under a namespace's version. */
export function encryptionContextOf(namespace: string, version: number): Record<string, string> {
  return { [CONTEXT_NAMESPACE]: namespace, [CONTEXT_KEY_VERSION]: String(version) };
}

/** Format 2's ESDK provider id (raw AES keyring "key namespace"). */
export const COMPACT_PROVIDER_ID = 'tk';
/** Format 2's encryption context key binding the namespace. */
export const COMPACT_CONTEXT_NAMESPACE = 'ns';
/** Format 2's encryption context key binding the key version. */
export const COMPACT_CONTEXT_KEY_VERSION = 'v';

/** The payload formats: see the top of this file. */
export type PayloadFormat = 1 | 2;
export const PAYLOAD_FORMATS: readonly PayloadFormat[] = [1, 2];

/** Everything that differs between the two formats, in one place. */
export interface FormatNames {
  format: PayloadFormat;
  providerId: string;
  contextNamespace: string;
  contextKeyVersion: string;
  /** The ESDK key name of a version. Ends in `/`: the JS raw AES keyring matches by prefix. */
  keyName(namespace: string, version: number): string;
  /** Whether the metadata carries {@link METADATA_KEY_ID}. */
  keyIdInMetadata: boolean;
}

export const FORMATS: Readonly<Record<PayloadFormat, FormatNames>> = {
  1: {
    format: 1,
    providerId: PROVIDER_ID,
    contextNamespace: CONTEXT_NAMESPACE,
    contextKeyVersion: CONTEXT_KEY_VERSION,
    keyName: esdkKeyName,
    keyIdInMetadata: true,
  },
  2: {
    format: 2,
    providerId: COMPACT_PROVIDER_ID,
    contextNamespace: COMPACT_CONTEXT_NAMESPACE,
    contextKeyVersion: COMPACT_CONTEXT_KEY_VERSION,
    keyName: (_namespace, version) => `v${version}/`,
    keyIdInMetadata: false,
  },
};

/** The exact encryption context of a payload of `format` encrypted under a namespace's version. */
export function formatContextOf(
  format: PayloadFormat,
  namespace: string,
  version: number,
): Record<string, string> {
  const names = FORMATS[format];
  return { [names.contextNamespace]: namespace, [names.contextKeyVersion]: String(version) };
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
