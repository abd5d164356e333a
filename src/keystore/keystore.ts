import { isDeepStrictEqual } from 'node:util';
import type { KeyVersion, NamespaceChange } from '../model/key-version.ts';

/**
 * The I/O boundary of the keyring: a narrow async interface that holds key metadata apart from key
 * material, and material only ever wrapped by a key-encryption key (KEK). A keystore never sees a
 * KEK or an unwrapped key, so its contents are useless without the KEK (which lives elsewhere).
 *
 * Backends: `FileKeystore` (embedded default), `PostgresKeystore` (shared), `MemoryKeystore`
 * (tests). Backends are plain storage: they trust their arguments. Argument checks and the
 * KEK-target rule live once above them, in `ValidatingKeystore` (validating-keystore.ts), which
 * `openKeystore` and the keyring always put in front. Every backend, behind it, passes the shared
 * contract suite in `test/keystore/contract.ts`.
 */
export interface Keystore {
  /** Short name of the backend, for logs and `/readyz`: `file`, `postgres`, `memory`. */
  readonly kind: string;

  /** Namespaces that have at least one version, sorted. */
  listNamespaces(): Promise<string[]>;

  /** A namespace's versions, ascending by version; `[]` when it has none. */
  getVersions(namespace: string): Promise<KeyVersion[]>;

  /**
   * Applies a change atomically (see `applyChange` in key-version.ts, which backends must use), and
   * returns the namespace's versions afterwards.
   *
   * - `material` is required exactly when `change.add` is set: the new version's wrapped key, stored
   *   in the same atomic step (or before it, invisibly, so that a crash never leaves a version
   *   without its material).
   * - A transition to `destroyed` erases that version's material in the same change.
   * - `guard.kekInfo`, when given: the commit applies only if the KEK record is still exactly that
   *   one (compared atomically with the change, as `putKekInfo` compares `expected`).
   * - Throws `KeystoreConflictError` when a precondition fails, `InvalidStateTransitionError` on a
   *   rule violation; nothing is written in either case.
   */
  commit(change: NamespaceChange, material?: WrappedKey, guard?: CommitGuard): Promise<KeyVersion[]>;

  /** The wrapped material of a version, or `undefined` if it has none (unknown or destroyed). */
  getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined>;

  /**
   * Replaces a version's wrapped material (KEK rotation re-wraps every key). Compare-and-set on the
   * KEK id it is currently wrapped with: throws `KeystoreConflictError` when it is not `expectedKekId`.
   */
  rewrapMaterial(
    namespace: string,
    version: number,
    material: WrappedKey,
    expectedKekId: string,
  ): Promise<void>;

  /** The KEK check record, or `undefined` for a keystore that was never initialized. */
  getKekInfo(): Promise<KekInfo | undefined>;

  /**
   * Writes the KEK check record. Compare-and-set: `expected` is the record read before (or
   * `undefined` to create it); throws `KeystoreConflictError` when it changed meanwhile.
   */
  putKekInfo(info: KekInfo, expected: KekInfo | undefined): Promise<void>;

  /**
   * Atomically adds `count` to the reserved encryption count of a version and persists it before
   * returning, so the stored count never falls below what processes may have used. Appends a
   * sample `{ at, reserved }` to the version's history.
   */
  reserveUsage(namespace: string, version: number, count: number, at: number): Promise<UsageRecord>;

  /** Records the exact count used so far by one process (`holder`); stores keep the per-holder maximum. */
  recordUsed(namespace: string, version: number, holder: string, used: number, at: number): Promise<void>;

  /** Usage of a version; zeros and no samples if nothing was ever reserved. */
  getUsage(namespace: string, version: number): Promise<UsageRecord>;

  /**
   * Takes or renews a named lease (for example the rotator's) for `holder` until `now + ttlMs`.
   * Returns true when `holder` holds it afterwards; false when another holder's lease is unexpired.
   */
  tryAcquireLease(name: string, holder: string, ttlMs: number, now: number): Promise<boolean>;

  /** Gives up a lease if `holder` holds it. */
  releaseLease(name: string, holder: string): Promise<void>;

  /**
   * Optional push of changes (PostgreSQL LISTEN/NOTIFY). The keyring also polls, so a backend
   * without it is still correct, only slower to propagate. Returns an unsubscribe function.
   */
  subscribe?(listener: (event: KeystoreEvent) => void): () => void;

  /** Throws `KeystoreUnavailableError` if the store cannot be reached. For readiness checks. */
  ping(): Promise<void>;

  close(): Promise<void>;
}

/** A precondition on the KEK record that a {@link Keystore.commit} checks atomically with its change. */
export interface CommitGuard {
  /** The KEK record as read before the commit (`undefined`: there was none). */
  kekInfo: KekInfo | undefined;
}

/**
 * The KEK new material must be wrapped with: the target of a KEK rotation in progress, else the
 * current one; `undefined` for a keystore without a KEK record yet.
 */
export function kekTarget(info: KekInfo | undefined): string | undefined {
  return info?.rekey?.toKekId ?? info?.currentKekId;
}

/** Whether two KEK records are the same, by content (key order and undefined fields ignored). */
export function sameKekInfo(a: KekInfo | undefined, b: KekInfo | undefined): boolean {
  const plain = (v: unknown) => (v === undefined ? undefined : JSON.parse(JSON.stringify(v)));
  return isDeepStrictEqual(plain(a), plain(b));
}

/** A data key wrapped by a KEK. The keystore stores it as it is and never unwraps it. */
export interface WrappedKey {
  /** Id of the KEK that wrapped it (its fingerprint: see kek.ts). */
  kekId: string;
  /** The wrapping algorithm, for future-proofing: `A256GCM` = AES-256-GCM, iv(12) || ciphertext || tag(16). */
  alg: 'A256GCM';
  /** Opaque wrapped bytes. */
  ciphertext: Uint8Array;
}

/**
 * What a keystore keeps so that a wrong KEK is detected at open, before any write, and so that a
 * KEK rotation can resume after a crash.
 */
export interface KekInfo {
  /** Format of this record. */
  format: 1;
  /** Id of the KEK every key is (or, during a rekey, is being) wrapped with. */
  currentKekId: string;
  /** A constant wrapped by each KEK in use: unwrapping proves a candidate KEK is the right one. */
  checks: { kekId: string; check: string }[];
  /** Set while a KEK rotation is in progress: keys may be wrapped by either KEK until it ends. */
  rekey?: { fromKekId: string; toKekId: string; startedAt: number };
  /** Salt for passphrase-derived KEKs (base64), created with the record. */
  passphraseSalt?: string;
  /**
   * Namespaces marked exportable, and when (see keyring/key-export.ts). Kept in this record because
   * it is the keystore's one compare-and-set document every backend already stores as it is; a
   * mark is only ever added, never removed (Vault Transit's rule).
   */
  exportableNamespaces?: { namespace: string; markedAt: number }[];
  /**
   * The keystore's short random non-secret id (16 hex chars: see keystore-id.ts), created with
   * the record; `Keyring.open` adds it to records written before it existed.
   */
  keystoreId?: string;
  /**
   * Split parameters of each Shamir-sealed KEK (`temporal-keyring operator init`): the KEK itself
   * is never stored, only its check value in `checks` and how many shares rebuild it.
   */
  shamir?: ShamirParams[];
  /**
   * Upgrade keys (as Vault hands standbys the new keyring key under the old one): during a rekey,
   * and for a propagation delay after it, the new KEK wrapped by the old one, so that a process
   * that still holds only the old KEK reads every key. Dropped by the next rekey once `until` passed.
   */
  upgrades?: KekUpgrade[];
}

/** The KEK `toKekId` wrapped by the KEK `fromKekId` (base64, AES-GCM under KEK_UPGRADE_AAD). */
export interface KekUpgrade {
  fromKekId: string;
  toKekId: string;
  wrapped: string;
  /** When the rekey completed plus the propagation delay; unset while the rekey runs. */
  until?: number;
}

/** How a Shamir-sealed KEK was split: `threshold` of the `shares` unseal keys rebuild it. */
export interface ShamirParams {
  kekId: string;
  threshold: number;
  shares: number;
}

/** Encryption counts of one key version, shared by every process using the keystore. */
export interface UsageRecord {
  /** Upper bound on encryptions performed: never below the truth, even after a crash. */
  reserved: number;
  /** Sum over processes of the exact counts they reported (lags the truth by one flush interval). */
  used: number;
  /** Reservation history, oldest first: at least the last 25 hours, at most 10,000 samples. */
  samples: UsageSample[];
}

export interface UsageSample {
  at: number;
  reserved: number;
}

export type KeystoreEvent = { type: 'namespace-changed'; namespace: string } | { type: 'kek-changed' };

/** Retention rules every backend applies to usage samples. */
export const USAGE_SAMPLE_RETENTION_MS = 25 * 60 * 60 * 1000;
export const USAGE_SAMPLE_MAX = 10_000;

/** Trims a sample history to the retention rules; shared by all backends. */
export function trimSamples(samples: UsageSample[], now: number): UsageSample[] {
  const cutoff = now - USAGE_SAMPLE_RETENTION_MS;
  let kept = samples.filter((s) => s.at >= cutoff);
  // Always keep one sample at or before the cutoff, so day-long windows have a starting point.
  const before = samples.filter((s) => s.at < cutoff).at(-1);
  if (before) kept = [before, ...kept];
  if (kept.length > USAGE_SAMPLE_MAX) kept = kept.slice(kept.length - USAGE_SAMPLE_MAX);
  return kept;
}
