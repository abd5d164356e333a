import type { Payload, PayloadCodec, SerializationContext } from '@temporalio/common';
import { EncryptionCodec, type EncryptionCodecOptions } from '../codec/encryption-codec.ts';
import { InvalidOptionError, NamespaceMismatchError } from '../errors.ts';
import { validateNamespace } from '../model/namespace.ts';

export interface NamespaceCodecOptions extends Omit<EncryptionCodecOptions, 'namespace'> {
  /**
   * The namespace whose keys encrypt when the SDK passes no `SerializationContext`. With a fixed
   * namespace, a context naming another one is an error (`ERR_NAMESPACE_MISMATCH`).
   */
  namespace?: string;
  /** Fixed: `namespace` is the only one accepted. Not fixed: a default the context overrides. */
  fixed?: boolean;
}

/**
 * A {@link PayloadCodec} that encrypts each batch with the keys of the namespace the Temporal SDK
 * names in its `SerializationContext` (a client talking to several namespaces gets each one's
 * keys), through one {@link EncryptionCodec} per namespace on the same key provider.
 *
 * Pipeline position: SDK data converter → `NamespaceCodec` (this) → `EncryptionCodec` → keyring.
 */
export class NamespaceCodec implements PayloadCodec {
  readonly #options: NamespaceCodecOptions;
  readonly #fallback: string | undefined;
  readonly #codecs = new Map<string, EncryptionCodec>();

  constructor(options: NamespaceCodecOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    this.#fallback = options.namespace === undefined ? undefined : validateNamespace(options.namespace);
    if (options.fixed && this.#fallback === undefined) {
      throw new InvalidOptionError('namespace', 'is required when fixed');
    }
    this.#options = options;
    // Validates keys, engine and format once, up front.
    if (this.#fallback !== undefined) this.codecFor(this.#fallback);
  }

  encode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.codecFor(this.#namespaceOf(context)).encode(payloads, context);
  }

  decode(payloads: Payload[], context?: SerializationContext): Promise<Payload[]> {
    return this.codecFor(this.#namespaceOf(context)).decode(payloads, context);
  }

  /** The codec of one namespace (created once, then reused). */
  codecFor(namespace: string): EncryptionCodec {
    let codec = this.#codecs.get(namespace);
    if (!codec) {
      codec = new EncryptionCodec({ ...this.#options, namespace });
      this.#codecs.set(namespace, codec);
    }
    return codec;
  }

  #namespaceOf(context: SerializationContext | undefined): string {
    const owner = context?.namespace;
    if (owner === undefined) {
      if (this.#fallback === undefined) {
        throw new InvalidOptionError(
          'namespace',
          'the Temporal SDK passed no serialization context and no namespace was given: pass namespace to KeyringPlugin',
        );
      }
      return this.#fallback;
    }
    if (this.#options.fixed && owner !== this.#fallback) {
      throw new NamespaceMismatchError(
        `the Temporal SDK passes payloads of namespace "${owner}", but this codec is fixed to namespace "${this.#fallback}"`,
      );
    }
    return owner;
  }
}
