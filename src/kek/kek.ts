import { createCipheriv, createDecipheriv, createHmac } from 'node:crypto';
import { DecryptionFailedError, InvalidKekError, SealedError } from '../errors.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';

/**
 * Where a KEK lives: `local` (AES key in memory, from a file, an env var or a passphrase),
 * `shamir` (AES key in memory, rebuilt from a threshold of unseal keys, never stored), `pkcs11`
 * (AES key inside an HSM token; it never enters the process).
 */
export type KekKind = 'local' | 'shamir' | 'pkcs11';

/**
 * A key-encryption key: wraps and unwraps data keys before they reach a keystore. Every kind
 * (see {@link KekKind}) wraps with AES-256-GCM into `iv(12) || ciphertext || tag(16)` under the
 * same associated data, and passes the one contract suite (`test/kek/contract.ts`). The interface
 * is async so that a KMS- or HSM-backed KEK implements it without touching anything else.
 */
export interface KeyEncryptionKey {
  /**
   * Stable, non-secret fingerprint of the KEK (for a local KEK: the first 8 bytes of
   * HMAC-SHA256(kek, "temporal-keyring kek id"), hex). Stored beside each wrapped key.
   */
  readonly id: string;
  /** Which kind of KEK this is (for status, logs and `/readyz`); absent on KEKs written elsewhere. */
  readonly kind?: KekKind;
  /**
   * True while a sealable KEK (Shamir) holds no key: wrap and unwrap throw `SealedError`. The
   * keyring then leaves the check value to the KEK itself, which checks it when it is unsealed.
   */
  readonly sealed?: boolean;
  /** Sealable KEKs: forget (zero) the key, so that it takes a threshold of shares again. */
  seal?(): void;
  /**
   * Why the KEK cannot serve now, or `undefined` when it can (an HSM whose token went away says so
   * here without throwing); `/readyz` reports it.
   */
  health?(): Promise<string | undefined>;
  wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /** Throws {@link DecryptionFailedError} when the ciphertext or AAD does not authenticate. */
  unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array>;
  /**
   * KEKs held in process memory (local, Shamir): this KEK's key wrapped by `other`, for the upgrade
   * key a rekey leaves for processes that hold only the old KEK. Absent on KEKs that cannot leave
   * their HSM.
   */
  wrapWith?(other: KeyEncryptionKey): Promise<Uint8Array>;
}

/** Associated data of an upgrade key (a KEK wrapped by the KEK it replaces). */
export function upgradeAad(fromKekId: string, toKekId: string): Uint8Array {
  return Buffer.from(`temporal-keyring/kek-upgrade/v1\0${fromKekId}\0${toKekId}`, 'utf8');
}

export const KEK_LENGTH = 32;
const IV_LENGTH = 12;
const TAG_LENGTH = 16;

/** An AES-256-GCM KEK held in process memory. */
export class LocalKek implements KeyEncryptionKey {
  readonly id: string;
  readonly kind: KekKind = 'local';
  #disposed = false;
  readonly #key: Buffer;
  readonly #random: RandomSource;

  constructor(key: Uint8Array, random: RandomSource = systemRandom) {
    if (key.length !== KEK_LENGTH) {
      throw new InvalidKekError(`a KEK must be ${KEK_LENGTH} bytes (256 bits), got ${key.length}`);
    }
    this.#key = Buffer.from(key);
    this.#random = random;
    this.id = createHmac('sha256', this.#key)
      .update('temporal-keyring kek id')
      .digest()
      .subarray(0, 8)
      .toString('hex');
  }

  /** Parses a base64 KEK as printed by `temporal-keyring keygen`. */
  static fromBase64(text: string, random?: RandomSource): LocalKek {
    const trimmed = text.trim();
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(trimmed)) {
      throw new InvalidKekError('the KEK is not valid base64 (generate one with: temporal-keyring keygen)');
    }
    return new LocalKek(Buffer.from(trimmed, 'base64'), random);
  }

  async wrapWith(other: KeyEncryptionKey): Promise<Uint8Array> {
    if (this.#disposed) throw new SealedError();
    return other.wrap(this.#key, upgradeAad(other.id, this.id));
  }

  /** Zeroes the key; any later use throws `SealedError`. For KEKs that are sealed again. */
  dispose(): void {
    this.#key.fill(0);
    this.#disposed = true;
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (this.#disposed) throw new SealedError();
    const iv = this.#random.bytes(IV_LENGTH);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(aad);
    const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
    return Buffer.concat([iv, body, cipher.getAuthTag()]);
  }

  async unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (this.#disposed) throw new SealedError();
    if (ciphertext.length < IV_LENGTH + TAG_LENGTH) throw new DecryptionFailedError();
    const buf = Buffer.from(ciphertext);
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, buf.subarray(0, IV_LENGTH));
      decipher.setAAD(aad);
      decipher.setAuthTag(buf.subarray(buf.length - TAG_LENGTH));
      return Buffer.concat([
        decipher.update(buf.subarray(IV_LENGTH, buf.length - TAG_LENGTH)),
        decipher.final(),
      ]);
    } catch (cause) {
      throw new DecryptionFailedError({ cause });
    }
  }

  /** Keeps key bytes out of `console.log`, `util.inspect` and JSON. */
  toJSON(): string {
    return `LocalKek(${this.id})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toJSON();
  }
}

/** Associated data that binds wrapped material to its namespace, version and key id. */
export function materialAad(namespace: string, version: number, keyId: string): Uint8Array {
  return Buffer.from(`temporal-keyring/material/v1\0${namespace}\0${version}\0${keyId}`, 'utf8');
}

/** The constant a KEK wraps into `KekInfo.checks`, and its AAD. */
export const KEK_CHECK_PLAINTEXT = Buffer.from('temporal-keyring kek check v1', 'utf8');
export const KEK_CHECK_AAD = Buffer.from('temporal-keyring/kek-check/v1', 'utf8');
