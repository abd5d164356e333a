import {
  DecryptionFailedError,
  InvalidOptionError,
  KekMismatchError,
  KekUnavailableError,
  KeyBudgetExhaustedError,
  KeyringClosedError,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeyVersionDeprecatedError,
  KeyVersionDestroyedError,
  KeyVersionNotFoundError,
  NamespaceExistsError,
  NamespaceNotFoundError,
  NoActiveKeyError,
  SealedError,
} from '../errors.ts';
import { KEK_CHECK_AAD, KEK_CHECK_PLAINTEXT, type KeyEncryptionKey, materialAad } from '../kek/kek.ts';
import { DEFAULT_KEK_PROPAGATION_MS, learnUpgrades } from '../kek/kek-upgrade.ts';
import type { KekInfo, Keystore, WrappedKey } from '../keystore/keystore.ts';
import { generateKeystoreId } from '../keystore/keystore-id.ts';
import { ValidatingKeystore } from '../keystore/validating-keystore.ts';
import type { KeyState, KeyVersion } from '../model/key-version.ts';
import { validateNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import type { EncryptionMeter } from './encryption-meter.ts';
import { KeyHandle, type KeyProvider, type OwnedKeyHandle } from './key-handle.ts';
import {
  DATA_KEY_LENGTH,
  KeyManager,
  type LifecycleEvent,
  type LifecyclePolicy,
  type RotateOptions,
  type RotationResult,
} from './key-manager.ts';

export type { KeyProvider } from './key-handle.ts';
export {
  DATA_KEY_LENGTH,
  type LifecycleEvent,
  type LifecyclePolicy,
  type RotateOptions,
  type RotationMode,
  type RotationResult,
  type StateChangeResult,
} from './key-manager.ts';
export { DEFAULT_KEK_PROPAGATION_MS };

export interface KeyringOptions {
  keystore: Keystore;
  /** The KEK new keys are wrapped with, and the one that must match the keystore. */
  kek: KeyEncryptionKey;
  /** Further KEKs accepted for unwrapping (during and after an interrupted KEK rotation). */
  previousKeks?: KeyEncryptionKey[];
  clock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /** Accounts for encryptions before they are made. Default: none (counting is off). */
  meter?: EncryptionMeter;
  /** How often cached key metadata is re-read from the keystore. Default 30 s. */
  refreshIntervalMs?: number;
  /** Shortest time between two on-demand refreshes of a namespace (unknown versions). Default 1 s. */
  minOnDemandRefreshMs?: number;
  /** Create a namespace's first key when it is first used. Dev mode only. Default false. */
  createNamespacesOnFirstUse?: boolean;
  /** Namespaces whose deprecated versions may still decrypt: `true` for all, or a predicate. */
  allowDeprecatedDecrypt?: boolean | ((namespace: string) => boolean);
  /**
   * Each namespace's rotation policy, of which the lifecycle owner ({@link KeyManager}) applies the
   * propagation delay. Default: `DEFAULT_ROTATION_POLICY`'s (2 minutes) for every namespace.
   */
  policies?: (namespace: string) => LifecyclePolicy;
  /** Told of every lifecycle change made through this keyring (audit logs). */
  onLifecycleEvent?: (event: LifecycleEvent) => void;
}

interface NamespaceCache {
  versions: KeyVersion[];
  loadedAt: number;
  lastOnDemandRefresh: number;
}

/**
 * Per-namespace versioned keys over a {@link Keystore}: the read side (the key to encrypt with,
 * the key a payload names, as their states allow), material unwrapped with the KEK, and metadata
 * cached and refreshed. Lifecycle changes belong to its {@link KeyManager} (`keyring.manager`);
 * the lifecycle methods here are shorthands for it.
 *
 * Pipeline position: `PayloadCodec` → `KeyProvider` (this) → `ValidatingKeystore` → backend.
 */
export class Keyring implements KeyProvider {
  readonly keystore: Keystore;
  readonly clock: Clock;
  readonly #keks: Map<string, KeyEncryptionKey>;
  #primaryKek: KeyEncryptionKey;
  readonly #random: RandomSource;
  readonly #logger: Logger;
  readonly #meter: EncryptionMeter | undefined;
  readonly #refreshIntervalMs: number;
  readonly #minOnDemandRefreshMs: number;
  readonly #createOnFirstUse: boolean;
  readonly #allowDeprecated: (namespace: string) => boolean;
  readonly #policies: ((namespace: string) => LifecyclePolicy) | undefined;
  readonly #onLifecycleEvent: ((event: LifecycleEvent) => void) | undefined;
  #manager: KeyManager | undefined;
  readonly #cache = new Map<string, NamespaceCache>();
  // One handle per key version (by key id), made on first use; revoked on destroy and on close.
  readonly #handles = new Map<string, OwnedKeyHandle>();
  readonly #inflight = new Map<string, Promise<NamespaceCache>>();
  #cancelRefresh: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  #keystoreId = '';

  private constructor(options: KeyringOptions) {
    this.keystore = ValidatingKeystore.wrap(options.keystore);
    this.clock = options.clock ?? systemClock;
    this.#primaryKek = options.kek;
    this.#keks = new Map([options.kek, ...(options.previousKeks ?? [])].map((k) => [k.id, k]));
    this.#random = options.random ?? systemRandom;
    this.#logger = options.logger ?? silentLogger;
    this.#meter = options.meter;
    this.#refreshIntervalMs = options.refreshIntervalMs ?? 30_000;
    this.#minOnDemandRefreshMs = options.minOnDemandRefreshMs ?? 1_000;
    this.#createOnFirstUse = options.createNamespacesOnFirstUse ?? false;
    const allow = options.allowDeprecatedDecrypt ?? false;
    this.#allowDeprecated = typeof allow === 'function' ? allow : () => allow;
    this.#policies = options.policies;
    this.#onLifecycleEvent = options.onLifecycleEvent;
  }

  /**
   * Opens a keyring: checks the KEK against the keystore's check record before anything is written
   * (initializing the record on a new keystore), then starts the refresh timer.
   */
  static async open(options: KeyringOptions): Promise<Keyring> {
    validateKeyringOptions(options);
    const keyring = new Keyring(options);
    await keyring.#verifyKek();
    keyring.#manager = new KeyManager({
      keystore: keyring.keystore,
      keks: keyring.#keks,
      primaryKek: keyring.#primaryKek,
      clock: keyring.clock,
      random: keyring.#random,
      logger: keyring.#logger,
      ...(keyring.#policies ? { policies: keyring.#policies } : {}),
      ...(keyring.#onLifecycleEvent ? { onEvent: keyring.#onLifecycleEvent } : {}),
      onCommitted: (namespace, versions) => {
        if (!keyring.#closed) keyring.#store(namespace, structuredClone(versions));
      },
    });
    keyring.#startRefresh();
    return keyring;
  }

  /**
   * The keystore's short random non-secret id (16 hex chars, from its KEK record): names the
   * keystore in shares, hints and messages without revealing anything about its keys.
   */
  get keystoreId(): string {
    return this.#keystoreId;
  }

  /** The KEKs this keyring holds (new keys go under the first). For seal status and `/readyz`. */
  get keks(): readonly KeyEncryptionKey[] {
    const primary = this.#keks.get(this.kekId) ?? this.#primaryKek;
    return [primary, ...[...this.#keks.values()].filter((k) => k !== primary)];
  }

  /**
   * Seals: revokes every key handle (their material zeroed, prepared keys disposed) and seals every sealable KEK (Shamir), so that
   * nothing decrypts until a threshold of unseal keys is given again. Metadata stays cached.
   */
  seal(): void {
    for (const keyId of [...this.#handles.keys()]) this.#forget(keyId, 'the keyring was sealed');
    for (const kek of this.#keks.values()) kek.seal?.();
  }

  /** Id of the KEK new keys are wrapped with. */
  get kekId(): string {
    return this.#manager?.kekId ?? this.#primaryKek.id;
  }

  // --- KeyProvider -------------------------------------------------------------------------

  /**
   * The handle of the namespace's active key, after the meter accounted for `count` encryptions.
   * After {@link close}: `KeyringClosedError` (`ERR_KEYRING_CLOSED`).
   */
  async encryptionKey(namespace: string, count: number): Promise<KeyHandle> {
    this.#assertOpen();
    for (let attempt = 0; ; attempt++) {
      const ns = await this.#namespace(namespace, true);
      const active = ns.versions.find((v) => v.state === 'active');
      if (!active) throw new NoActiveKeyError(namespace);
      const handle = await this.#handle(active);
      try {
        if (this.#meter && count > 0) await this.#meter.spend(namespace, active.version, count);
      } catch (error) {
        this.#assertOpen(); // the meter closed because the keyring did: say so
        // The version's budget is spent and the meter's emergency rotation made another one
        // active: encrypt with that one (reloaded, since the rotation may be another process's).
        if (error instanceof KeyBudgetExhaustedError && error.rotated && attempt < 3) {
          await this.#load(namespace);
          continue;
        }
        throw error;
      }
      this.#assertOpen();
      return handle;
    }
  }

  /**
   * The handle of a version's key, if its state allows decryption. After {@link close}:
   * `KeyringClosedError` (`ERR_KEYRING_CLOSED`).
   */
  async decryptionKey(namespace: string, version: number): Promise<KeyHandle> {
    this.#assertOpen();
    let ns = await this.#namespace(namespace, false);
    let v = ns.versions.find((x) => x.version === version);
    if (!v && this.clock.now() - ns.lastOnDemandRefresh >= this.#minOnDemandRefreshMs) {
      // A payload names a version this process has not seen yet: another process rotated.
      ns.lastOnDemandRefresh = this.clock.now();
      ns = await this.#load(namespace);
      v = ns.versions.find((x) => x.version === version);
    }
    if (!v) throw new KeyVersionNotFoundError(namespace, version);
    if (v.state === 'destroyed') throw new KeyVersionDestroyedError(namespace, version, v.destroyedAt);
    if (v.state === 'deprecated' && !this.#allowDeprecated(namespace)) {
      throw new KeyVersionDeprecatedError(namespace, version);
    }
    const handle = await this.#handle(v);
    this.#assertOpen();
    return handle;
  }

  // --- Administration ----------------------------------------------------------------------

  /** Namespaces with keys, from the keystore. */
  async namespaces(): Promise<string[]> {
    return this.keystore.listNamespaces();
  }

  /** A namespace's versions, fresh from the keystore (and refreshing the cache). */
  async versions(namespace: string): Promise<KeyVersion[]> {
    validateNamespace(namespace);
    // A read of its own, not the shared in-flight one: that may have started before a change this
    // caller just made (a rotation, then its listing, raced a refresh started by the NOTIFY).
    const versions = await this.keystore.getVersions(namespace);
    return structuredClone(this.#store(namespace, versions).versions);
  }

  /** The owner of the key lifecycle (create, rotate, set-state, destroy, rekey) over this keyring's keystore. */
  get manager(): KeyManager {
    return this.#manager!;
  }

  /** Shorthand for `manager.createNamespace`. */
  createNamespace(namespace: string): Promise<KeyVersion> {
    return this.manager.createNamespace(namespace);
  }

  /** Shorthand for `manager.rotate`: every rule (propagation delay, compare-and-set) is the manager's. */
  rotate(namespace: string, options?: RotateOptions): Promise<RotationResult> {
    return this.manager.rotate(namespace, options);
  }

  /** Shorthand for `manager.promote`. */
  promote(namespace: string, version: number, options?: { force?: boolean }): Promise<RotationResult> {
    return this.manager.promote(namespace, version, options);
  }

  /** Shorthand for `manager.setState`, answering the version afterwards. */
  async setState(
    namespace: string,
    version: number,
    state: KeyState,
    options?: { force?: boolean },
  ): Promise<KeyVersion> {
    return (await this.manager.setState(namespace, version, state, options)).current;
  }

  /** Shorthand for `manager.rekey`. */
  rekey(newKek: KeyEncryptionKey, options?: { propagationDelayMs?: number }): Promise<{ rewrapped: number }> {
    return this.manager.rekey(newKek, options);
  }

  /** Re-reads every cached namespace from the keystore. */
  async refresh(): Promise<void> {
    await Promise.all([...this.#cache.keys()].map((ns) => this.#load(ns)));
  }

  /**
   * Stops timers and the meter, and revokes every key handle it gave out: their material is zeroed
   * and their prepared keys (with their data-key caches) disposed, so a handle kept past the close
   * fails with `ERR_KEY_REVOKED` instead of encrypting with a zeroed key. Later calls to
   * `encryptionKey`/`decryptionKey` fail with `ERR_KEYRING_CLOSED`. Does not close the keystore.
   */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRefresh?.();
    this.#unsubscribe?.();
    for (const keyId of [...this.#handles.keys()]) this.#forget(keyId, 'its keyring is closed');
    this.#cache.clear();
    await this.#meter?.close();
  }

  // --- Internals -----------------------------------------------------------------------------

  async #verifyKek(): Promise<void> {
    const info = await this.keystore.getKekInfo();
    if (!info) {
      const check = Buffer.from(await this.#primaryKek.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString(
        'base64',
      );
      const created: KekInfo = {
        format: 1,
        currentKekId: this.#primaryKek.id,
        checks: [{ kekId: this.#primaryKek.id, check }],
        keystoreId: generateKeystoreId(this.#random),
      };
      try {
        await this.keystore.putKekInfo(created, undefined);
      } catch (error) {
        if (!(error instanceof KeystoreConflictError)) throw error;
        return this.#verifyKek(); // another process initialized it first
      }
      this.#keystoreId = created.keystoreId!;
      return;
    }
    // Within a rekey's propagation delay, the old KEK learns the new one from the upgrade key.
    await learnUpgrades(this.#keks, info, this.clock.now(), this.#random, this.#logger);
    const accepted = info.checks.filter((c) => this.#keks.has(c.kekId));
    if (accepted.length === 0) {
      throw new KekMismatchError(
        `the KEK given (id ${this.#primaryKek.id}) is not the one this keystore's keys are wrapped with now (KEK ${info.rekey?.toKekId ?? info.currentKekId})`,
      );
    }
    for (const c of accepted) {
      // A sealed KEK (Shamir) checks the value itself when it is unsealed.
      if (this.#keks.get(c.kekId)!.sealed) continue;
      try {
        const plain = await this.#keks.get(c.kekId)!.unwrap(Buffer.from(c.check, 'base64'), KEK_CHECK_AAD);
        if (!Buffer.from(plain).equals(KEK_CHECK_PLAINTEXT)) throw new DecryptionFailedError();
      } catch {
        throw new KekMismatchError(`the KEK with id ${c.kekId} failed this keystore's check value`);
      }
    }
    // New keys go under the keystore's target KEK when we hold it.
    const target = info.rekey?.toKekId ?? info.currentKekId;
    const targetKek = this.#keks.get(target);
    if (targetKek) this.#primaryKek = targetKek;
    this.#keystoreId = info.keystoreId ?? (await this.#addKeystoreId(info));
  }

  /** Gives a KEK record written before keystore ids existed its id (once, compare-and-set). */
  async #addKeystoreId(info: KekInfo): Promise<string> {
    let current: KekInfo | undefined = info;
    for (let attempt = 0; attempt < 5 && current; attempt++) {
      if (current.keystoreId) return current.keystoreId;
      const keystoreId = generateKeystoreId(this.#random);
      try {
        await this.keystore.putKekInfo({ ...current, keystoreId }, current);
        this.#logger.info({ keystoreId }, 'keystore id added to the KEK record');
        return keystoreId;
      } catch (error) {
        if (!(error instanceof KeystoreConflictError)) throw error;
        current = await this.keystore.getKekInfo(); // another process changed it: re-read
      }
    }
    if (current?.keystoreId) return current.keystoreId;
    throw new KeystoreConflictError('the KEK record kept changing while its keystore id was being added');
  }

  #startRefresh(): void {
    const tick = () => {
      if (this.#closed) return;
      this.refresh()
        .catch((error: unknown) =>
          this.#logger.warn({ err: errorSummary(error) }, 'key metadata refresh failed'),
        )
        .finally(() => {
          if (!this.#closed) this.#cancelRefresh = this.clock.setTimer(this.#refreshIntervalMs, tick);
        });
    };
    this.#cancelRefresh = this.clock.setTimer(this.#refreshIntervalMs, tick);
    this.#unsubscribe = this.keystore.subscribe?.((event) => {
      if (event.type === 'namespace-changed' && this.#cache.has(event.namespace)) {
        this.#load(event.namespace).catch(() => {});
      }
    });
  }

  async #namespace(namespace: string, forEncryption: boolean): Promise<NamespaceCache> {
    validateNamespace(namespace);
    let ns = this.#cache.get(namespace) ?? (await this.#load(namespace));
    if (ns.versions.length === 0) {
      if (!forEncryption || !this.#createOnFirstUse) throw new NamespaceNotFoundError(namespace);
      try {
        await this.createNamespace(namespace);
      } catch (error) {
        if (!(error instanceof NamespaceExistsError)) throw error;
      }
      ns = await this.#load(namespace);
    }
    return ns;
  }

  /** Loads a namespace's metadata; concurrent loads of one namespace share one read. */
  #load(namespace: string): Promise<NamespaceCache> {
    const pending = this.#inflight.get(namespace);
    if (pending) return pending;
    const p = this.keystore
      .getVersions(namespace)
      .then((versions) => this.#store(namespace, versions))
      .finally(() => this.#inflight.delete(namespace));
    this.#inflight.set(namespace, p);
    return p;
  }

  #store(namespace: string, versions: KeyVersion[]): NamespaceCache {
    const previous = this.#cache.get(namespace);
    const entry: NamespaceCache = {
      versions,
      loadedAt: this.clock.now(),
      lastOnDemandRefresh: previous?.lastOnDemandRefresh ?? Number.NEGATIVE_INFINITY,
    };
    if (versions.length > 0 || previous) this.#cache.set(namespace, entry);
    for (const v of versions) if (v.state === 'destroyed') this.#forget(v.keyId);
    return entry;
  }

  /** The handle of a version: made once from the unwrapped material, which only the handle keeps. */
  async #handle(v: KeyVersion): Promise<KeyHandle> {
    const known = this.#handles.get(v.keyId);
    if (known) return known.handle;
    const material = await this.#material(v);
    try {
      // Another call may have made it while we unwrapped; a close may have happened too.
      this.#assertOpen();
      let owned = this.#handles.get(v.keyId);
      if (!owned) {
        owned = KeyHandle.create({ namespace: v.namespace, version: v.version, keyId: v.keyId, material });
        this.#handles.set(v.keyId, owned);
      }
      return owned.handle;
    } finally {
      material.fill(0);
    }
  }

  /** Revokes and drops a version's handle (destroyed, or the keyring closes). */
  #forget(keyId: string, reason = 'its key version was destroyed'): void {
    const owned = this.#handles.get(keyId);
    if (!owned) return;
    this.#handles.delete(keyId);
    owned.revoke(reason);
  }

  #assertOpen(): void {
    if (this.#closed) throw new KeyringClosedError();
  }

  /** A version's material, unwrapped with the KEK. The caller owns (and zeroes) the buffer. */
  async #material(v: KeyVersion): Promise<Uint8Array> {
    const wrapped = await this.keystore.getMaterial(v.namespace, v.version);
    if (!wrapped) {
      if (v.state === 'destroyed') throw new KeyVersionDestroyedError(v.namespace, v.version, v.destroyedAt);
      throw new KeystoreCorruptError(
        `key version ${v.version} of namespace "${v.namespace}" has no material`,
      );
    }
    return this.#unwrap(v, wrapped);
  }

  async #unwrap(v: KeyVersion, wrapped: WrappedKey): Promise<Uint8Array> {
    if (!this.#keks.has(wrapped.kekId)) {
      await learnUpgrades(
        this.#keks,
        await this.keystore.getKekInfo(),
        this.clock.now(),
        this.#random,
        this.#logger,
      );
    }
    const kek = this.#keks.get(wrapped.kekId);
    if (!kek) {
      const info = await this.keystore.getKekInfo();
      throw new KekMismatchError(
        `key version ${v.version} of namespace "${v.namespace}" is wrapped with KEK ${wrapped.kekId}, which this process does not hold; this keystore now uses KEK ${info?.rekey?.toKekId ?? info?.currentKekId}: restart this process with that KEK`,
      );
    }
    try {
      const material = await kek.unwrap(wrapped.ciphertext, materialAad(v.namespace, v.version, v.keyId));
      if (material.length !== DATA_KEY_LENGTH) throw new DecryptionFailedError();
      return material;
    } catch (cause) {
      // The KEK cannot serve now (sealed, HSM gone): say so, the material itself is fine.
      if (cause instanceof SealedError || cause instanceof KekUnavailableError) throw cause;
      throw new KeystoreCorruptError(
        `wrapped material of key version ${v.version} of namespace "${v.namespace}" failed to authenticate`,
        { cause },
      );
    }
  }
}

function validateKeyringOptions(options: KeyringOptions): void {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  if (!options.keystore) throw new InvalidOptionError('keystore', 'is required');
  if (!options.kek) throw new InvalidOptionError('kek', 'is required');
  for (const field of ['refreshIntervalMs', 'minOnDemandRefreshMs'] as const) {
    const value = options[field];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new InvalidOptionError(field, 'must be a non-negative number of milliseconds');
    }
  }
}

/** Error fields safe to log: code and message only (our messages never hold secrets). */
export function errorSummary(error: unknown): { code?: string; message: string } {
  if (error && typeof error === 'object') {
    const e = error as { code?: unknown; message?: unknown };
    return { code: typeof e.code === 'string' ? e.code : undefined, message: String(e.message ?? error) };
  }
  return { message: String(error) };
}
