import { InvalidOptionError, KeyRevokedError } from '../errors.ts';
import type { EsdkEngine, PreparedKey } from '../esdk/engine.ts';
import { validateNamespace } from '../model/namespace.ts';

/** Length of a key version's material: AES-256. */
const KEY_LENGTH = 32;

/** A key version's raw material, to make a {@link KeyHandle} of (see {@link createKeyHandle}). */
export interface RawKey {
  namespace: string;
  /** Positive integer. */
  version: number;
  /** Default `<namespace>/v<version>`. */
  keyId?: string;
  /** 32 bytes. Copied: the handle owns its copy, and the caller may zero this one at once. */
  material: Uint8Array;
}

/** The ESDK names a key is used under (they differ between payload formats). */
export interface KeyNames {
  providerId: string;
  keyName: string;
}

/** A handle and the right to revoke it: the owner keeps this, and hands out `handle` only. */
export interface OwnedKeyHandle {
  readonly handle: KeyHandle;
  /**
   * Disposes every prepared key the handle made and zeroes its material. Every later use of the
   * handle (and of prepared keys it gave out) throws `KeyRevokedError` (`ERR_KEY_REVOKED`).
   * Idempotent.
   */
  revoke(reason?: string): void;
}

/**
 * One key version, as a {@link KeyProvider} hands it to the codec: opaque and revocable, in the
 * spirit of Vault's one prepared cipher per key term. It holds privately what encryption needs (its
 * own copy of the material, and the engines' prepared keys: derived names, the AES key, each with
 * its own bounded data-key cache), made lazily once per engine and ESDK names and then reused. Who
 * holds a handle never needs to know whether it is the same object as last time.
 *
 * Pipeline position: `EncryptionCodec` → `KeyProvider` → `KeyHandle` (this) → `EsdkEngine`.
 *
 * The keyring makes one handle per version and revokes them all on `close()`; a caller holding a
 * handle across the close gets `ERR_KEY_REVOKED` from it, never a zeroed key that would encrypt
 * garbage. A provider that holds keys another way makes handles with {@link createKeyHandle}.
 */
export class KeyHandle {
  readonly namespace: string;
  readonly version: number;
  readonly keyId: string;
  #material: Uint8Array | undefined;
  #revokedBecause = '';
  // Per engine, per ESDK names: the engine's prepared key, owned (and disposed) by this handle.
  readonly #prepared = new Map<EsdkEngine, Map<string, PreparedKey>>();

  private constructor(key: RawKey) {
    if (!key || typeof key !== 'object') throw new InvalidOptionError('key', 'must be an object');
    this.namespace = validateNamespace(key.namespace);
    if (!Number.isSafeInteger(key.version) || key.version < 1) {
      throw new InvalidOptionError('version', 'must be a positive integer');
    }
    this.version = key.version;
    this.keyId = key.keyId ?? `${this.namespace}/v${this.version}`;
    if (typeof this.keyId !== 'string' || this.keyId.length === 0) {
      throw new InvalidOptionError('keyId', 'must be a non-empty string');
    }
    if (!(key.material instanceof Uint8Array) || key.material.length !== KEY_LENGTH) {
      throw new InvalidOptionError('material', `must be ${KEY_LENGTH} bytes`);
    }
    const material = new Uint8Array(KEY_LENGTH);
    material.set(key.material);
    this.#material = material;
  }

  /** Makes a handle with its own copy of `key.material`, and the function that revokes it. */
  static create(key: RawKey): OwnedKeyHandle {
    const handle = new KeyHandle(key);
    return { handle, revoke: (reason) => handle.#revoke(reason) };
  }

  /** True once revoked: every use then throws `ERR_KEY_REVOKED`. */
  get revoked(): boolean {
    return this.#material === undefined;
  }

  /**
   * The prepared key of this key for `engine` under `names`: made on first use, then the same one
   * until the handle is revoked (which disposes it). Owned by the handle: do not dispose it.
   */
  prepared(engine: EsdkEngine, names: KeyNames): PreparedKey {
    const material = this.#usable();
    let byNames = this.#prepared.get(engine);
    if (!byNames) {
      byNames = new Map();
      this.#prepared.set(engine, byNames);
    }
    const id = `${names.providerId}\0${names.keyName}`;
    let prepared = byNames.get(id);
    if (!prepared) {
      prepared = engine.prepare({ providerId: names.providerId, keyName: names.keyName, material });
      byNames.set(id, prepared);
    }
    return prepared;
  }

  /**
   * A copy of the raw key, for code that must hand it to another ESDK implementation (see
   * docs/payload-format.md). The caller owns the copy: never log it, zero it when done.
   */
  exportMaterial(): Uint8Array {
    return Uint8Array.from(this.#usable());
  }

  #usable(): Uint8Array {
    const material = this.#material;
    if (!material)
      throw new KeyRevokedError(`the handle of key ${this.keyId} was revoked${this.#revokedBecause}`);
    return material;
  }

  #revoke(reason?: string): void {
    const material = this.#material;
    if (!material) return;
    this.#material = undefined;
    this.#revokedBecause = reason ? ` (${reason})` : '';
    material.fill(0);
    for (const byNames of this.#prepared.values())
      for (const prepared of byNames.values()) prepared.dispose();
    this.#prepared.clear();
  }

  /** Never the material: a handle in a log line or `JSON.stringify` shows which key it is. */
  toJSON(): { namespace: string; version: number; keyId: string; revoked: boolean } {
    return { namespace: this.namespace, version: this.version, keyId: this.keyId, revoked: this.revoked };
  }
}

/**
 * Makes a {@link KeyHandle} from raw material, for a {@link KeyProvider} that holds keys another
 * way than a `Keyring` (a KMS, a test fixture). Keep one handle per version and return it every
 * time (prepared keys and their data-key caches live in it), and call `revoke()` when the key's
 * term ends. A fresh handle per call also works, only slower.
 */
export function createKeyHandle(key: RawKey): OwnedKeyHandle {
  return KeyHandle.create(key);
}

/**
 * What the codec needs from a keyring: the key to encrypt with now, and the key a payload names,
 * as {@link KeyHandle}s. {@link Keyring} implements it; so can anything that holds keys another
 * way, with {@link createKeyHandle}.
 */
export interface KeyProvider {
  /** The namespace's active key, after accounting for `count` encryptions with it. */
  encryptionKey(namespace: string, count: number): Promise<KeyHandle>;
  /** The key of a version, if its state allows decryption. Refreshes once if the version is unknown. */
  decryptionKey(namespace: string, version: number): Promise<KeyHandle>;
  /**
   * The keystore's non-secret id, when the provider has one: the codec writes it into payload
   * metadata as a hint, and names it when a payload of another keystore fails to decrypt.
   */
  readonly keystoreId?: string;
}
