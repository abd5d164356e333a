import { combine, split } from 'shamir-secret-sharing';
import {
  InvalidOptionError,
  KekMismatchError,
  SealedError,
  UnsealCheckFailedError,
  UnsealShareDuplicateError,
  UnsealShareForeignError,
} from '../errors.ts';
import type { KekInfo, Keystore, ShamirParams } from '../keystore/keystore.ts';
import { generateKeystoreId } from '../keystore/keystore-id.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import { KEK_CHECK_AAD, KEK_CHECK_PLAINTEXT, KEK_LENGTH, type KeyEncryptionKey, LocalKek } from './kek.ts';
import { decodeUnsealShare, encodeUnsealShare } from './unseal-share.ts';

/** What `/admin/seal-status` and `/admin/unseal` answer (Vault's `sys/seal-status` fields). */
export interface SealStatus {
  sealed: boolean;
  /** Threshold: shares needed. */
  t: number;
  /** Shares made. */
  n: number;
  /** Distinct valid shares given so far in this unseal attempt. */
  progress: number;
  keystoreId: string;
  kekId: string;
}

/**
 * A KEK that exists only as Shamir shares (Vault's unseal keys): `operator init` generates it at
 * random, splits it with the audited `shamir-secret-sharing` library and stores only its check
 * value and the split parameters. The process starts **sealed** (wrap and unwrap throw
 * `SealedError`) and unseals once `t` distinct shares of this keystore's KEK have been given; the
 * rebuilt key must pass the keystore's check value, or progress is reset. `seal()` zeroes it.
 *
 * Pipeline position: keyring → KEK (this) → AES-256-GCM in memory once unsealed.
 */
export class ShamirKek implements KeyEncryptionKey {
  readonly kind = 'shamir' as const;
  readonly id: string;
  readonly keystoreId: string;
  readonly threshold: number;
  readonly shareCount: number;
  readonly #check: Buffer;
  readonly #random: RandomSource;
  #key: LocalKek | undefined;
  /** Given shares by x coordinate (the share's last byte). */
  readonly #given = new Map<number, Uint8Array>();
  #queue: Promise<unknown> = Promise.resolve();

  private constructor(
    params: ShamirParams,
    keystoreId: string,
    check: string,
    random: RandomSource,
    key?: LocalKek,
  ) {
    this.id = params.kekId;
    this.threshold = params.threshold;
    this.shareCount = params.shares;
    this.keystoreId = keystoreId;
    this.#check = Buffer.from(check, 'base64');
    this.#random = random;
    this.#key = key;
  }

  /**
   * The keystore's Shamir-sealed KEK, sealed: the one its keys are wrapped with now
   * (`currentKekId`; during an unfinished rekey that is still the old one, so the old shares open
   * it). Throws `KekMismatchError` when the keystore's KEK is not Shamir-sealed.
   */
  static async fromKeystore(keystore: Keystore, options: { random?: RandomSource } = {}): Promise<ShamirKek> {
    const info = await keystore.getKekInfo();
    if (!info) {
      throw new KekMismatchError(
        'this keystore has no KEK yet; create a sealed one with: temporal-keyring operator init --key-shares 5 --key-threshold 3',
      );
    }
    return ShamirKek.fromRecord(info, info.currentKekId, options.random);
  }

  /** The sealed KEK `kekId` of a KEK record. */
  static fromRecord(info: KekInfo, kekId: string, random: RandomSource = systemRandom): ShamirKek {
    const params = info.shamir?.find((p) => p.kekId === kekId);
    const check = info.checks.find((c) => c.kekId === kekId);
    if (!params || !check) {
      throw new KekMismatchError(
        `this keystore's KEK (id ${kekId}) is not sealed with unseal keys; give it as a file, an env var, a passphrase or a PKCS#11 key`,
      );
    }
    if (!info.keystoreId)
      throw new KekMismatchError('this keystore has no keystore id yet; open it once first');
    return new ShamirKek(params, info.keystoreId, check.check, random);
  }

  get sealed(): boolean {
    return this.#key === undefined;
  }

  status(): SealStatus {
    return {
      sealed: this.sealed,
      t: this.threshold,
      n: this.shareCount,
      progress: this.sealed ? this.#given.size : 0,
      keystoreId: this.keystoreId,
      kekId: this.id,
    };
  }

  /**
   * Adds one unseal key. A malformed share, a share of another keystore or KEK, or a share given
   * twice throws (with its own code) and is not counted. At the threshold the KEK is rebuilt and
   * checked: on success the KEK is unsealed; on failure progress is reset and
   * `UnsealCheckFailedError` says so. Calls are serialized. Giving a share when unsealed is a no-op.
   */
  submit(shareText: unknown): Promise<SealStatus> {
    const run = this.#queue.then(() => this.#submit(shareText));
    this.#queue = run.catch(() => {});
    return run;
  }

  async #submit(shareText: unknown): Promise<SealStatus> {
    const share = decodeUnsealShare(shareText);
    if (share.keystoreId !== this.keystoreId) {
      throw new UnsealShareForeignError(
        `this unseal key belongs to keystore ${share.keystoreId}, not to this keystore (${this.keystoreId})`,
      );
    }
    if (share.kekId !== this.id) {
      throw new UnsealShareForeignError(
        `this unseal key is for KEK ${share.kekId}, but this keystore is sealed with KEK ${this.id} (an older set of unseal keys, replaced by operator rekey?)`,
      );
    }
    if (!this.sealed) return this.status();
    const x = share.share[share.share.length - 1]!;
    if (this.#given.has(x)) {
      throw new UnsealShareDuplicateError('this unseal key was already given in this unseal attempt');
    }
    this.#given.set(x, share.share);
    if (this.#given.size < this.threshold) return this.status();
    const shares = [...this.#given.values()];
    this.#given.clear();
    const secret = await combine(shares).finally(() => {
      for (const s of shares) s.fill(0);
    });
    try {
      const candidate = new LocalKek(secret, this.#random);
      if (candidate.id !== this.id || !(await passesCheck(candidate, this.#check))) {
        candidate.dispose();
        throw new UnsealCheckFailedError(
          'the unseal keys given rebuild a KEK that fails this keystore check value; progress was reset: give the threshold of unseal keys again',
        );
      }
      this.#key = candidate;
    } finally {
      secret.fill(0);
    }
    return this.status();
  }

  /** Discards the shares given so far (Vault's `{"reset": true}`). */
  reset(): SealStatus {
    this.#clearProgress();
    return this.status();
  }

  /** Zeroes the KEK and any shares given so far: a threshold of shares is needed again. */
  seal(): void {
    this.#clearProgress();
    this.#key?.dispose();
    this.#key = undefined;
  }

  async wrapWith(other: KeyEncryptionKey): Promise<Uint8Array> {
    if (!this.#key) throw new SealedError();
    return this.#key.wrapWith(other);
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (!this.#key) throw new SealedError();
    return this.#key.wrap(plaintext, aad);
  }

  async unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (!this.#key) throw new SealedError();
    return this.#key.unwrap(ciphertext, aad);
  }

  #clearProgress(): void {
    for (const s of this.#given.values()) s.fill(0);
    this.#given.clear();
  }

  toJSON(): string {
    return `ShamirKek(${this.id}, ${this.sealed ? 'sealed' : 'unsealed'})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toJSON();
  }

  /**
   * A new random KEK split into `shares` unseal keys, `threshold` of which rebuild it. Returns the
   * KEK (unsealed, for a rekey or init to wrap with), its split parameters and check value (for the
   * KEK record) and the shares' text. The key is never written anywhere.
   */
  static async generate(options: {
    keystoreId: string;
    shares: number;
    threshold: number;
    random?: RandomSource;
  }): Promise<{ kek: ShamirKek; params: ShamirParams; check: string; shares: string[] }> {
    validateSplit(options.shares, options.threshold);
    const random = options.random ?? systemRandom;
    // A plain Uint8Array: the library refuses Buffer.
    const secret = Uint8Array.from(random.bytes(KEK_LENGTH));
    try {
      const local = new LocalKek(secret, random);
      const parts = await split(secret, options.shares, options.threshold);
      const check = Buffer.from(await local.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString('base64');
      const params: ShamirParams = { kekId: local.id, threshold: options.threshold, shares: options.shares };
      const shares = parts.map((share) => {
        const text = encodeUnsealShare({ keystoreId: options.keystoreId, kekId: local.id, share });
        share.fill(0);
        return text;
      });
      return { kek: new ShamirKek(params, options.keystoreId, check, random, local), params, check, shares };
    } finally {
      secret.fill(0);
    }
  }
}

/**
 * `operator init`: creates the KEK record of a new keystore whose KEK is Shamir-sealed. Refuses a
 * keystore that already has one (that would orphan its keys). Returns the shares (print them once).
 */
export async function initShamirKeystore(
  keystore: Keystore,
  options: { shares: number; threshold: number; random?: RandomSource },
): Promise<{ keystoreId: string; kekId: string; shares: string[] }> {
  validateSplit(options.shares, options.threshold);
  if (await keystore.getKekInfo()) {
    throw new InvalidOptionError(
      'keystore',
      'already has a KEK; operator init only initializes a new keystore (to move an existing one to unseal keys: temporal-keyring operator rekey)',
    );
  }
  const keystoreId = generateKeystoreId(options.random);
  const made = await ShamirKek.generate({ ...options, keystoreId });
  made.kek.seal();
  const info: KekInfo = {
    format: 1,
    currentKekId: made.params.kekId,
    checks: [{ kekId: made.params.kekId, check: made.check }],
    keystoreId,
    shamir: [made.params],
  };
  await keystore.putKekInfo(info, undefined);
  return { keystoreId, kekId: made.params.kekId, shares: made.shares };
}

/** Adds a new Shamir KEK's split parameters to the record before a rekey moves keys to it. */
export async function addShamirParams(keystore: Keystore, params: ShamirParams): Promise<void> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const info = await keystore.getKekInfo();
    if (!info) throw new KekMismatchError('this keystore has no KEK record');
    const next: KekInfo = {
      ...info,
      shamir: [...(info.shamir ?? []).filter((p) => p.kekId !== params.kekId), params],
    };
    try {
      await keystore.putKekInfo(next, info);
      return;
    } catch (error) {
      if ((error as { code?: string }).code !== 'ERR_KEYSTORE_CONFLICT') throw error;
    }
  }
}

function validateSplit(shares: number, threshold: number): void {
  if (!Number.isInteger(shares) || shares < 2 || shares > 255) {
    throw new InvalidOptionError('--key-shares', 'must be a whole number from 2 to 255');
  }
  if (!Number.isInteger(threshold) || threshold < 2 || threshold > shares) {
    throw new InvalidOptionError(
      '--key-threshold',
      `must be a whole number from 2 to --key-shares (${shares})`,
    );
  }
}

async function passesCheck(kek: LocalKek, check: Buffer): Promise<boolean> {
  try {
    const plain = await kek.unwrap(check, KEK_CHECK_AAD);
    return Buffer.from(plain).equals(KEK_CHECK_PLAINTEXT);
  } catch {
    return false;
  }
}
