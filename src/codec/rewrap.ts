import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { InvalidOptionError, NoActiveKeyError } from '../errors.ts';
import type { EsdkEngine } from '../esdk/engine.ts';
import type { Keyring } from '../keyring/keyring.ts';
import { validateNamespace } from '../model/namespace.ts';
import { EncryptionCodec, isEncryptedPayload, keyVersionOf } from './encryption-codec.ts';
import { METADATA_KEY_ID } from './payload-format.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;
const bytesOf = (p: Payload) => Buffer.from(ProtoPayload.encode(p).finish());

/** What one {@link Rewrapper.rewrap} call did. */
export interface RewrapResult {
  /** Same length and order as the input. */
  payloads: Payload[];
  /** Payloads re-encrypted under the active version. */
  rewrapped: number;
  /** Encrypted payloads left as they were: already under the active version (without `force`). */
  current: number;
  /** Payloads that are not ours (another encoding), left as they were. */
  passedThrough: number;
  /** The version the rewrapped payloads are under now. */
  activeVersion: number;
}

/**
 * Re-encrypts payloads under the namespace's active key version (Vault Transit's rewrap, Nomad's
 * full rotation): for archived and exported histories after a rotation, so that the old version
 * can be deprecated and destroyed while the archive still decodes.
 *
 * Pipeline position: history JSON (CLI `rewrap`) or `POST /rewrap` → `Rewrapper` (this) →
 * `EncryptionCodec` decode + encode → keyring. Encryptions go through `Keyring.encryptionKey`, so
 * the usage meter counts them like any other.
 *
 * Each payload keeps its format (1 or 2). Before a rewrapped payload is handed back, it is decoded
 * again and its plaintext compared byte for byte with the original's: a rewrap never returns what
 * it could not read back.
 */
export class Rewrapper {
  readonly namespace: string;
  readonly #keyring: Keyring;
  readonly #codecs: Record<1 | 2, EncryptionCodec>;
  readonly #force: boolean;

  constructor(options: { keyring: Keyring; namespace: string; force?: boolean; engine?: EsdkEngine }) {
    if (!options?.keyring) throw new InvalidOptionError('keyring', 'is required');
    this.namespace = validateNamespace(options.namespace);
    this.#keyring = options.keyring;
    this.#force = options.force ?? false;
    const codec = (format: 1 | 2) =>
      new EncryptionCodec({
        namespace: this.namespace,
        keys: options.keyring,
        engine: options.engine,
        format,
      });
    this.#codecs = { 1: codec(1), 2: codec(2) };
  }

  /** The namespace's active version, fresh from the keystore. */
  async activeVersion(): Promise<number> {
    const active = (await this.#keyring.versions(this.namespace)).find((v) => v.state === 'active');
    if (!active) throw new NoActiveKeyError(this.namespace);
    return active.version;
  }

  /**
   * Rewraps a batch. `activeVersion` (from {@link activeVersion}) decides which payloads are
   * current; pass it in to read it once for a whole file.
   */
  async rewrap(payloads: readonly Payload[], activeVersion?: number): Promise<RewrapResult> {
    const active = activeVersion ?? (await this.activeVersion());
    const result: RewrapResult = {
      payloads: [...payloads],
      rewrapped: 0,
      current: 0,
      passedThrough: 0,
      activeVersion: active,
    };
    const byFormat: Record<1 | 2, number[]> = { 1: [], 2: [] };
    for (const [i, p] of payloads.entries()) {
      if (!isEncryptedPayload(p)) result.passedThrough++;
      else if (!this.#force && keyVersionOf(p) === active) result.current++;
      else byFormat[p.metadata?.[METADATA_KEY_ID] === undefined ? 2 : 1].push(i);
    }
    for (const format of [1, 2] as const) {
      const indexes = byFormat[format];
      if (indexes.length === 0) continue;
      const codec = this.#codecs[format];
      const inner = await codec.decode(indexes.map((i) => payloads[i]!));
      const outer = await codec.encode(inner);
      const check = await codec.decode(outer);
      for (const [j, i] of indexes.entries()) {
        if (!bytesOf(check[j]!).equals(bytesOf(inner[j]!))) {
          throw new Error('a rewrapped payload did not decode to its original plaintext');
        }
        result.payloads[i] = outer[j]!;
      }
      result.rewrapped += indexes.length;
    }
    return result;
  }
}
