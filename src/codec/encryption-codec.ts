import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import proto from '@temporalio/proto';
import {
  DecryptionFailedError,
  InvalidOptionError,
  isKeyringError,
  KeyProviderFaultError,
  MalformedPayloadError,
  NamespaceMismatchError,
  withHint,
} from '../errors.ts';
import type { EsdkEngine, PreparedKey } from '../esdk/engine.ts';
import { fastEngine } from '../esdk/fast-engine.ts';
import { parseEncryptionContext, parseHeader } from '../esdk/message-format.ts';
import type { KeyHandle, KeyProvider } from '../keyring/key-handle.ts';
import { isValidNamespace, validateNamespace } from '../model/namespace.ts';
import {
  ENCODING_ENCRYPTED,
  FORMATS,
  type FormatNames,
  formatContextOf,
  keyIdFor,
  METADATA_ENCODING,
  METADATA_KEY_ID,
  METADATA_KEY_VERSION,
  METADATA_KEYSTORE_ID,
  PAYLOAD_FORMATS,
  type PayloadFormat,
  parseKeyVersion,
} from './payload-format.ts';
import { serializePayload } from './serialize-payload.ts';

// The proto package is CommonJS: its namespaces are reachable through the default export only.
const ProtoPayload = proto.temporal.api.common.v1.Payload;

export interface EncryptionCodecOptions {
  /** The Temporal namespace whose keys encrypt and decrypt. Bound into every ciphertext. */
  namespace: string;
  /** Where keys come from, as {@link KeyHandle}s: usually a `Keyring`. */
  keys: KeyProvider;
  /**
   * How ESDK messages are written and read. Default: `fastEngine` (node:crypto, the same bytes as the
   * AWS Encryption SDK, verified by test/esdk/differential.test.ts); `sdkEngine` is the SDK itself.
   */
  engine?: EsdkEngine;
  /**
   * The format `encode` writes (docs/payload-format.md); `decode` reads both. Default `1`. Format 2
   * (compact) is ~100 bytes smaller per payload, and readers before 0.2.0 cannot read it: switch
   * once every worker, client and codec server reading the namespace runs 0.2.0 or later.
   */
  format?: PayloadFormat;
}

const utf8 = new TextEncoder();
const strictUtf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * A Temporal {@link PayloadCodec} that encrypts every payload with the namespace's active key and
 * decrypts with whichever version a payload names.
 *
 * Pipeline position: `PayloadConverter` → `EncryptionCodec` (this) → wire / Temporal history.
 * Keys come from a {@link KeyProvider} (a `Keyring`); ESDK messages from an {@link EsdkEngine}.
 *
 * - encode: each whole `Payload` (metadata included) is serialized with protobuf and encrypted into
 *   one AWS Encryption SDK message; the batch asks for its key once, accounting for every payload.
 * - decode: payloads whose `encoding` is not `binary/encrypted` pass through unchanged; ours must
 *   name this namespace, and decrypt with an encryption context of exactly {namespace, version}.
 */
export class EncryptionCodec implements PayloadCodec {
  readonly namespace: string;
  readonly #keys: KeyProvider;
  readonly #engine: EsdkEngine;
  readonly #format: FormatNames;

  constructor(options: EncryptionCodecOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    this.namespace = validateNamespace(options.namespace);
    const keys = options.keys;
    if (!keys || typeof keys.encryptionKey !== 'function' || typeof keys.decryptionKey !== 'function') {
      throw new InvalidOptionError('keys', 'must be a KeyProvider (for example a Keyring)');
    }
    const engine = options.engine;
    if (
      engine !== undefined &&
      (typeof engine?.prepare !== 'function' ||
        typeof engine?.encrypt !== 'function' ||
        typeof engine?.decrypt !== 'function')
    ) {
      throw new InvalidOptionError('engine', 'must be an EsdkEngine (sdkEngine or fastEngine)');
    }
    if (options.format !== undefined && !PAYLOAD_FORMATS.includes(options.format)) {
      throw new InvalidOptionError('format', 'must be 1 or 2');
    }
    this.#format = FORMATS[options.format ?? 1];
    this.#keys = keys;
    // The one place the default engine is chosen.
    this.#engine = engine ?? fastEngine;
  }

  /** The payload format `encode` writes. */
  get format(): PayloadFormat {
    return this.#format.format;
  }

  /** Name of the engine in use (`sdk` or `fast`), for logs. */
  get engineName(): string {
    return this.#engine.name;
  }

  async encode(payloads: Payload[], serialization?: SerializationContext): Promise<Payload[]> {
    this.#assertContext(serialization);
    if (payloads.length === 0) return [];
    const key = await this.#keys.encryptionKey(this.namespace, payloads.length);
    this.#assertKey(key, key.version);
    const format = this.#format;
    const prepared = this.#preparedKeyOf(key, format);
    const context = formatContextOf(format.format, this.namespace, key.version);
    const metadata: Record<string, Uint8Array> = { [METADATA_ENCODING]: utf8.encode(ENCODING_ENCRYPTED) };
    if (format.keyIdInMetadata)
      metadata[METADATA_KEY_ID] = utf8.encode(keyIdFor(this.namespace, key.version));
    metadata[METADATA_KEY_VERSION] = utf8.encode(String(key.version));
    const keystoreId = this.#keys.keystoreId;
    if (format.keyIdInMetadata && keystoreId) metadata[METADATA_KEYSTORE_ID] = utf8.encode(keystoreId);
    return Promise.all(
      payloads.map(async (payload) => {
        const data = await this.#engine.encrypt(serializePayload(payload), prepared, context);
        // Each payload gets its own metadata object: callers may mutate what they receive.
        return { metadata: { ...metadata }, data };
      }),
    );
  }

  async decode(payloads: Payload[], serialization?: SerializationContext): Promise<Payload[]> {
    this.#assertContext(serialization);
    // Parse everything first, so a malformed payload fails the batch before any key is fetched.
    const named = payloads.map((p) => (isEncryptedPayload(p) ? this.#versionOf(p) : undefined));
    const lookups = new Map<number, Promise<KeyHandle>>();
    for (const n of named) {
      if (n !== undefined && !lookups.has(n.version)) {
        lookups.set(n.version, this.#keys.decryptionKey(this.namespace, n.version));
      }
    }
    // Settle every lookup (no unhandled rejections), then fail on the first error in order.
    const versions = [...lookups.keys()];
    const settled = await Promise.allSettled(lookups.values());
    const keys = new Map(versions.map((v, i) => [v, settled[i]!]));
    // One prepared key per (version, format) in the batch, not a lookup per payload.
    const prepared = new Map<string, { key: KeyHandle; prepared: PreparedKey }>();
    return Promise.all(
      payloads.map((payload, i) => {
        const n = named[i];
        if (n === undefined) return payload;
        try {
          const result = keys.get(n.version)!;
          if (result.status === 'rejected') throw result.reason;
          const id = `${n.version}/${n.format.format}`;
          let entry = prepared.get(id);
          if (!entry) {
            this.#assertKey(result.value, n.version);
            entry = { key: result.value, prepared: this.#preparedKeyOf(result.value, n.format) };
            prepared.set(id, entry);
          }
          return this.#decryptOne(payload, entry.key, entry.prepared, n.format);
        } catch (error) {
          return Promise.reject(this.#explainOtherKeystore(error, payload));
        }
      }),
    );
  }

  /** One payload, its errors explained (see {@link #explainOtherKeystore}); one promise beyond the engine's. */
  #decryptOne(
    payload: Payload,
    key: KeyHandle,
    prepared: PreparedKey,
    format: FormatNames,
  ): Promise<Payload> {
    const data = payload.data;
    if (!(data instanceof Uint8Array) || data.length === 0) {
      const error = new MalformedPayloadError('an encrypted payload has no data');
      return Promise.reject(this.#explainOtherKeystore(error, payload));
    }
    return this.#engine.decrypt(data, prepared).then(
      ({ plaintext, context }) => {
        try {
          return this.#opened(plaintext, context, key, format);
        } catch (error) {
          throw this.#explainOtherKeystore(error, payload);
        }
      },
      (error: unknown) => {
        // The failure stays opaque: its code is ERR_DECRYPTION_FAILED whatever the bytes claim.
        // What the (now unauthenticated) header says may help a person, as a labelled hint only.
        if (error instanceof DecryptionFailedError && error.hint === undefined) {
          const hint = this.#hintFor(data, format);
          if (hint !== undefined) error = new DecryptionFailedError({ cause: error, hint });
        }
        throw this.#explainOtherKeystore(error, payload);
      },
    );
  }

  /** The payload inside a decrypted message, once its encryption context is exactly ours. */
  #opened(
    plaintext: Uint8Array,
    context: Readonly<Record<string, string>>,
    key: KeyHandle,
    format: FormatNames,
  ): Payload {
    const boundTo = context[format.contextNamespace];
    if (boundTo !== undefined && boundTo !== this.namespace) {
      throw new NamespaceMismatchError(
        `the payload is bound to another namespace than "${this.namespace}" (its encryption context differs)`,
      );
    }
    // Exactly our two keys with our two values: nothing missing, nothing added.
    if (
      Object.keys(context).length !== 2 ||
      boundTo === undefined ||
      context[format.contextKeyVersion] !== String(key.version)
    ) {
      throw new DecryptionFailedError();
    }
    try {
      return ProtoPayload.decode(plaintext);
    } catch {
      throw new MalformedPayloadError('the decrypted content is not a Temporal payload');
    }
  }

  /**
   * What a payload that failed to decrypt claims in its message header, for the failure's `hint`:
   * a format 2 payload of another namespace (the namespace lives only in its encryption context),
   * or a format 1 message whose `encryption-key-id` metadata was removed. The header failed to
   * authenticate, so this is only what the bytes say: anyone can forge it, and it never becomes
   * the error's code. Only valid namespace names and fixed text go into it.
   */
  #hintFor(data: Uint8Array, format: FormatNames): string | undefined {
    if (format.format !== 2) return undefined;
    let context: Record<string, string>;
    try {
      const header = parseHeader(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      context = parseEncryptionContext(header.context as Buffer);
    } catch {
      return undefined;
    }
    if (Object.hasOwn(context, FORMATS[1].contextNamespace)) {
      return `the header carries format 1 names: a format 1 payload without its "${METADATA_KEY_ID}" metadata?`;
    }
    const claimed = Object.hasOwn(context, FORMATS[2].contextNamespace)
      ? context[FORMATS[2].contextNamespace]
      : undefined;
    if (claimed !== undefined && claimed !== this.namespace && isValidNamespace(claimed)) {
      return `the header names namespace "${claimed}", not "${this.namespace}"`;
    }
    return undefined;
  }

  /**
   * The version and format an encrypted payload names: format 1 carries the key id too, checked
   * strictly against the version and our namespace; format 2 carries the version alone.
   */
  #versionOf(payload: Payload): { version: number; format: FormatNames } {
    const versionText = metadataString(payload, METADATA_KEY_VERSION);
    const version = versionText === undefined ? undefined : parseKeyVersion(versionText);
    if (version === undefined) {
      throw new MalformedPayloadError(`an encrypted payload has no valid "${METADATA_KEY_VERSION}" metadata`);
    }
    if (payload.metadata?.[METADATA_KEY_ID] === undefined) return { version, format: FORMATS[2] };
    const keyId = metadataString(payload, METADATA_KEY_ID);
    if (keyId === keyIdFor(this.namespace, version)) return { version, format: FORMATS[1] };
    const slash = keyId?.lastIndexOf('/') ?? -1;
    const claimed = keyId?.slice(0, slash);
    if (
      keyId !== undefined &&
      slash > 0 &&
      isValidNamespace(claimed) &&
      keyId.slice(slash) === `/v${version}`
    ) {
      // Names are not secret: saying which namespace the payload claims helps find the right codec.
      throw new NamespaceMismatchError(
        `the payload was encrypted for namespace "${claimed}", not "${this.namespace}"`,
      );
    }
    throw new MalformedPayloadError(
      `an encrypted payload's "${METADATA_KEY_ID}" does not match namespace "${this.namespace}" and version ${version}`,
    );
  }

  /** The engine's prepared key for a handle under a format's names; the handle makes and owns it. */
  #preparedKeyOf(key: KeyHandle, format: FormatNames): PreparedKey {
    return key.prepared(this.#engine, {
      providerId: format.providerId,
      keyName: format.keyName(key.namespace, key.version),
    });
  }

  /**
   * A payload whose metadata names another keystore than ours fails for that reason, not because
   * it was tampered with or because our version of the same number is destroyed: say so in a hint.
   * The metadata is unauthenticated, so the error's code is kept (a decryption failure stays
   * `ERR_DECRYPTION_FAILED`); ids are not secret and tell an attacker nothing they did not write.
   */
  #explainOtherKeystore(error: unknown, payload: Payload): unknown {
    const ours = this.#keys.keystoreId;
    const theirs = metadataString(payload, METADATA_KEYSTORE_ID);
    if (!isKeyringError(error) || !ours || theirs === undefined || theirs === ours) return error;
    if (!/^[0-9a-f]{16}$/.test(theirs)) return error;
    return withHint(
      error,
      `this payload's key belongs to keystore ${theirs}; this process opened keystore ${ours}. Decode it with the keystore and KEK that encrypted it (TEMPORAL_KEYRING_KEYSTORE, TEMPORAL_KEYRING_KEK_FILE)`,
    );
  }

  /**
   * The SDK says which namespace owns the payloads (its `SerializationContext`); a codec fixed to
   * another namespace would encrypt them under the wrong keys, or fail to decrypt them for an
   * unclear reason. `KeyringPlugin` picks the codec by that namespace instead.
   */
  #assertContext(context: SerializationContext | undefined): void {
    const owner = context?.namespace;
    if (owner !== undefined && owner !== this.namespace) {
      throw new NamespaceMismatchError(
        `the Temporal SDK passes payloads of namespace "${owner}" to the codec of namespace "${this.namespace}" (use KeyringPlugin, or one EncryptionCodec per namespace)`,
      );
    }
  }

  #assertKey(key: KeyHandle, version: number): void {
    // Guards against a KeyProvider that answers with something else than a handle of the key asked
    // for: a fault of the provider (5xx), not of the payload or the caller.
    if (typeof key?.prepared !== 'function') {
      throw new KeyProviderFaultError(
        'the key provider returned something other than a KeyHandle (make one with createKeyHandle)',
      );
    }
    if (key.namespace !== this.namespace || key.version !== version) {
      throw new KeyProviderFaultError(
        `the key provider returned a key other than ${keyIdFor(this.namespace, version)}`,
      );
    }
  }
}

/** A metadata value as UTF-8 text; `undefined` when absent or not valid UTF-8. */
function metadataString(payload: Payload, name: string): string | undefined {
  const value = payload.metadata?.[name];
  if (!(value instanceof Uint8Array)) return undefined;
  // Our metadata is short ASCII, read several times per payload: ASCII is its own UTF-8, so a
  // char-code copy gives what the strict decoder would, without a decoder call per read.
  if (value.length <= 64) {
    let ascii = true;
    for (let i = 0; i < value.length; i++) {
      if (value[i]! > 0x7f) {
        ascii = false;
        break;
      }
    }
    if (ascii) return String.fromCharCode.apply(null, value as unknown as number[]);
  }
  try {
    return strictUtf8.decode(value);
  } catch {
    return undefined;
  }
}

/** True when a payload's `encoding` says it was written by {@link EncryptionCodec}. */
export function isEncryptedPayload(payload: Payload | null | undefined): boolean {
  return payload != null && metadataString(payload, METADATA_ENCODING) === ENCODING_ENCRYPTED;
}

/**
 * The key version an encrypted payload names (for audit logs: which versions a request used), or
 * `undefined` when the payload is not ours or its version metadata is not a valid version.
 * Reads metadata only: nothing is decrypted or verified.
 */
export function keyVersionOf(payload: Payload | null | undefined): number | undefined {
  if (!isEncryptedPayload(payload)) return undefined;
  const text = metadataString(payload!, METADATA_KEY_VERSION);
  return text === undefined ? undefined : parseKeyVersion(text);
}

/** The key id (`<namespace>/v<version>`) an encrypted payload names, unverified; for logs. */
export function keyIdOfPayload(payload: Payload | null | undefined): string | undefined {
  if (!isEncryptedPayload(payload)) return undefined;
  return metadataString(payload!, METADATA_KEY_ID);
}
