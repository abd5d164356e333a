import {
  DecryptionFailedError,
  InvalidOptionError,
  InvalidStateTransitionError,
  KekMismatchError,
  KeyringClosedError,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeyVersionDeprecatedError,
  KeyVersionDestroyedError,
  KeyVersionNotFoundError,
  NamespaceExistsError,
  NamespaceNotFoundError,
  NoActiveKeyError,
  RandomSourceError,
} from '../errors.ts';
import { KEK_CHECK_AAD, KEK_CHECK_PLAINTEXT, type KeyEncryptionKey, materialAad } from '../kek/kek.ts';
import type { KekInfo, Keystore, WrappedKey } from '../keystore/keystore.ts';
import type { KeyState, KeyVersion, NamespaceChange } from '../model/key-version.ts';
import { validateNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import type { EncryptionMeter } from './encryption-meter.ts';
import { DATA_KEY_LENGTH, KeyHandle, type KeyProvider, type OwnedKeyHandle } from './key-handle.ts';

export { DATA_KEY_LENGTH, type KeyProvider } from './key-handle.ts';

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
}

/** What a rotation did. */
export interface RotationResult {
  namespace: string;
  /** False when another process rotated first (or a prepublished version already existed). */
  performed: boolean;
  /** The version that was active before. */
  previous: KeyVersion | undefined;
  /** The new (or already existing) version: active after `immediate`, prepublished after `prepublish`. */
  current: KeyVersion;
}

export type RotationMode = 'immediate' | 'prepublish';

interface NamespaceCache {
  versions: KeyVersion[];
  loadedAt: number;
  lastOnDemandRefresh: number;
}

/**
 * Per-namespace versioned keys over a {@link Keystore}: the place where key states are enforced,
 * material is wrapped and unwrapped with the KEK, and metadata is cached and refreshed.
 *
 * Pipeline position: `PayloadCodec` → `KeyProvider` (this) → `Keystore` (wrapped keys only).
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
  readonly #cache = new Map<string, NamespaceCache>();
  // One handle per key version (by key id), made on first use; revoked on destroy and on close.
  readonly #handles = new Map<string, OwnedKeyHandle>();
  readonly #inflight = new Map<string, Promise<NamespaceCache>>();
  #cancelRefresh: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  private constructor(options: KeyringOptions) {
    this.keystore = options.keystore;
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
  }

  /**
   * Opens a keyring: checks the KEK against the keystore's check record before anything is written
   * (initializing the record on a new keystore), then starts the refresh timer.
   */
  static async open(options: KeyringOptions): Promise<Keyring> {
    validateKeyringOptions(options);
    const keyring = new Keyring(options);
    await keyring.#verifyKek();
    keyring.#startRefresh();
    return keyring;
  }

  /** Id of the KEK new keys are wrapped with. */
  get kekId(): string {
    return this.#primaryKek.id;
  }

  // --- KeyProvider -------------------------------------------------------------------------

  /**
   * The handle of the namespace's active key, after the meter accounted for `count` encryptions.
   * After {@link close}: `KeyringClosedError` (`ERR_KEYRING_CLOSED`).
   */
  async encryptionKey(namespace: string, count: number): Promise<KeyHandle> {
    this.#assertOpen();
    const ns = await this.#namespace(namespace, true);
    const active = ns.versions.find((v) => v.state === 'active');
    if (!active) throw new NoActiveKeyError(namespace);
    const handle = await this.#handle(active);
    if (this.#meter && count > 0) {
      try {
        await this.#meter.spend(namespace, active.version, count);
      } catch (error) {
        this.#assertOpen(); // the meter closed because the keyring did: say so
        throw error;
      }
    }
    this.#assertOpen();
    return handle;
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
    return structuredClone((await this.#load(namespace)).versions);
  }

  /** Creates version 1 (active) of a new namespace. */
  async createNamespace(namespace: string): Promise<KeyVersion> {
    validateNamespace(namespace);
    try {
      const versions = await this.#commitNew({
        namespace,
        at: this.clock.now(),
        expectedLatestVersion: 0,
        add: { version: 1, state: 'active' },
      });
      this.#logger.info({ namespace, version: 1 }, 'namespace created');
      return versions[0]!;
    } catch (error) {
      if (error instanceof KeystoreConflictError) throw new NamespaceExistsError(namespace);
      throw error;
    }
  }

  /**
   * Rotates a namespace's key.
   * - `immediate`: the new version becomes active now; the old active one becomes inactive. If a
   *   prepublished version exists it is promoted instead (it is already known everywhere).
   * - `prepublish`: phase one of a two-phase rotation; the new version is created `prepublished`,
   *   and {@link promote} makes it active once every process has seen it.
   *
   * With `expectedActiveVersion`, nothing happens unless that version is still the active one, so
   * that concurrent rotators rotate once. Concurrent rotations yield exactly one new version.
   */
  async rotate(
    namespace: string,
    options: { mode?: RotationMode; expectedActiveVersion?: number } = {},
  ): Promise<RotationResult> {
    validateNamespace(namespace);
    const mode = options.mode ?? 'immediate';
    const before = (await this.#load(namespace)).versions;
    if (before.length === 0) throw new NamespaceNotFoundError(namespace);
    const active = before.find((v) => v.state === 'active');
    if (!active) throw new NoActiveKeyError(namespace);
    const pending = before.find((v) => v.state === 'prepublished');
    const unchanged = (current: KeyVersion): RotationResult => ({
      namespace,
      performed: false,
      previous: active,
      current,
    });
    if (options.expectedActiveVersion !== undefined && active.version !== options.expectedActiveVersion) {
      return unchanged(active);
    }
    if (pending) {
      if (mode === 'prepublish') return unchanged(pending);
      return this.promote(namespace, pending.version);
    }
    const latest = before.at(-1)!.version;
    const change: NamespaceChange = {
      namespace,
      at: this.clock.now(),
      expectedLatestVersion: latest,
      add: { version: latest + 1, state: mode === 'immediate' ? 'active' : 'prepublished' },
      transitions: mode === 'immediate' ? [{ version: active.version, from: 'active', to: 'inactive' }] : [],
    };
    try {
      const after = await this.#commitNew(change);
      const current = after.find((v) => v.version === latest + 1)!;
      this.#logger.info({ namespace, from: active.version, to: current.version, mode }, 'key rotated');
      return { namespace, performed: true, previous: active, current };
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
      // Someone else rotated between our read and our write: theirs is the rotation.
      const after = (await this.#load(namespace)).versions;
      const newer = after.filter((v) => v.version > latest);
      const current =
        newer.find((v) => v.state === 'active') ??
        newer.find((v) => v.state === 'prepublished') ??
        after.at(-1)!;
      return unchanged(current);
    }
  }

  /** Makes a prepublished (or inactive) version active; the active one becomes inactive. */
  async promote(namespace: string, version: number): Promise<RotationResult> {
    validateNamespace(namespace);
    const before = (await this.#load(namespace)).versions;
    const target = before.find((v) => v.version === version);
    if (!target) throw new KeyVersionNotFoundError(namespace, version);
    const active = before.find((v) => v.state === 'active');
    if (target.state === 'active') return { namespace, performed: false, previous: target, current: target };
    if (target.state !== 'prepublished' && target.state !== 'inactive') {
      throw new InvalidStateTransitionError(
        `key version ${version} of namespace "${namespace}" is ${target.state} and cannot become active`,
      );
    }
    const transitions: NamespaceChange['transitions'] = [{ version, from: target.state, to: 'active' }];
    if (active) transitions.unshift({ version: active.version, from: 'active', to: 'inactive' });
    const after = await this.keystore.commit({ namespace, at: this.clock.now(), transitions });
    this.#store(namespace, after);
    this.#logger.info({ namespace, from: active?.version, to: version }, 'key version activated');
    return {
      namespace,
      performed: true,
      previous: active,
      current: after.find((v) => v.version === version)!,
    };
  }

  /**
   * Moves a version to another state. `active` goes through {@link promote}; leaving `active` is
   * only possible by rotating or promoting another version (a namespace always has one active).
   */
  async setState(namespace: string, version: number, state: KeyState): Promise<KeyVersion> {
    validateNamespace(namespace);
    if (state === 'active') return (await this.promote(namespace, version)).current;
    const before = (await this.#load(namespace)).versions;
    const target = before.find((v) => v.version === version);
    if (!target) throw new KeyVersionNotFoundError(namespace, version);
    if (target.state === state) return target;
    if (target.state === 'active') {
      throw new InvalidStateTransitionError(
        `key version ${version} of namespace "${namespace}" is active; rotate first (temporal-keyring keys rotate --namespace ${namespace})`,
      );
    }
    const after = await this.keystore.commit({
      namespace,
      at: this.clock.now(),
      transitions: [{ version, from: target.state, to: state }],
    });
    this.#store(namespace, after);
    if (state === 'destroyed') this.#forget(target.keyId);
    this.#logger.info({ namespace, version, from: target.state, to: state }, 'key state changed');
    return after.find((v) => v.version === version)!;
  }

  /**
   * KEK rotation: re-wraps every key under `newKek`. Resumable: the keystore records the rekey in
   * progress, and each key says which KEK wraps it, so running it again after a crash continues
   * where it stopped. Until it completes, both KEKs are accepted.
   */
  async rekey(newKek: KeyEncryptionKey): Promise<{ rewrapped: number }> {
    const info = (await this.keystore.getKekInfo())!;
    if (info.currentKekId === newKek.id && !info.rekey) return { rewrapped: 0 };
    this.#keks.set(newKek.id, newKek);
    let inProgress = info;
    if (!info.rekey || info.rekey.toKekId !== newKek.id) {
      const check = Buffer.from(await newKek.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString('base64');
      inProgress = {
        ...info,
        checks: [...info.checks.filter((c) => c.kekId !== newKek.id), { kekId: newKek.id, check }],
        rekey: {
          fromKekId: info.rekey?.fromKekId ?? info.currentKekId,
          toKekId: newKek.id,
          startedAt: this.clock.now(),
        },
      };
      await this.keystore.putKekInfo(inProgress, info);
    }
    this.#primaryKek = newKek;
    let rewrapped = 0;
    for (const namespace of await this.keystore.listNamespaces()) {
      for (const v of await this.keystore.getVersions(namespace)) {
        const wrapped = await this.keystore.getMaterial(namespace, v.version);
        if (!wrapped || wrapped.kekId === newKek.id) continue;
        const material = await this.#unwrap(v, wrapped);
        const aad = materialAad(v.namespace, v.version, v.keyId);
        const next: WrappedKey = {
          kekId: newKek.id,
          alg: 'A256GCM',
          ciphertext: await newKek.wrap(material, aad),
        };
        await this.keystore.rewrapMaterial(namespace, v.version, next, wrapped.kekId);
        rewrapped++;
      }
    }
    const done: KekInfo = {
      ...inProgress,
      currentKekId: newKek.id,
      checks: inProgress.checks.filter((c) => c.kekId === newKek.id),
    };
    delete done.rekey;
    await this.keystore.putKekInfo(done, inProgress);
    this.#logger.info({ kekId: newKek.id, rewrapped }, 'KEK rotation complete');
    return { rewrapped };
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
      };
      try {
        await this.keystore.putKekInfo(created, undefined);
      } catch (error) {
        if (!(error instanceof KeystoreConflictError)) throw error;
        return this.#verifyKek(); // another process initialized it first
      }
      return;
    }
    const accepted = info.checks.filter((c) => this.#keks.has(c.kekId));
    if (accepted.length === 0) {
      throw new KekMismatchError(
        `the KEK given (id ${this.#primaryKek.id}) is not the one this keystore was created with (id ${info.currentKekId})`,
      );
    }
    for (const c of accepted) {
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

  /**
   * New keys must be wrapped with the keystore's current (or rekey target) KEK. A process opened
   * before another one rotated the KEK would otherwise wrap them with the retired KEK, which
   * processes holding only the new KEK cannot unwrap.
   */
  async #followKekRotation(): Promise<void> {
    const info = await this.keystore.getKekInfo();
    const target = info ? (info.rekey?.toKekId ?? info.currentKekId) : this.#primaryKek.id;
    const kek = this.#keks.get(target);
    if (!kek) {
      throw new KekMismatchError(
        `the keystore's keys are now wrapped with KEK ${target}, which this process does not hold; restart it with that KEK`,
      );
    }
    this.#primaryKek = kek;
  }

  async #commitNew(change: NamespaceChange): Promise<KeyVersion[]> {
    const add = change.add!;
    const material = this.#random.bytes(DATA_KEY_LENGTH);
    if (material?.length !== DATA_KEY_LENGTH) {
      throw new RandomSourceError('the random source returned the wrong number of bytes for a new key');
    }
    const keyId = `${change.namespace}/v${add.version}`;
    for (let attempt = 0; ; attempt++) {
      await this.#followKekRotation();
      const wrapped: WrappedKey = {
        kekId: this.#primaryKek.id,
        alg: 'A256GCM',
        ciphertext: await this.#primaryKek.wrap(material, materialAad(change.namespace, add.version, keyId)),
      };
      try {
        const after = await this.keystore.commit(change, wrapped);
        if (!this.#closed && !this.#handles.has(keyId)) {
          const version = { namespace: change.namespace, version: add.version, keyId, material };
          this.#handles.set(keyId, KeyHandle.create(version));
        }
        material.fill(0);
        this.#store(change.namespace, after);
        return after;
      } catch (error) {
        // A KEK rotation began between our read of the KEK record and the commit, and the store
        // refused the retiring KEK: wrap again with the rotation's target (if we hold it).
        if (!(error instanceof KekMismatchError) || attempt > 0) throw error;
      }
    }
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
    const kek = this.#keks.get(wrapped.kekId);
    if (!kek) {
      throw new KekMismatchError(
        `key version ${v.version} of namespace "${v.namespace}" is wrapped with KEK ${wrapped.kekId}, which this process does not hold (finish the KEK rotation with: temporal-keyring keys rekey)`,
      );
    }
    try {
      const material = await kek.unwrap(wrapped.ciphertext, materialAad(v.namespace, v.version, v.keyId));
      if (material.length !== DATA_KEY_LENGTH) throw new DecryptionFailedError();
      return material;
    } catch (cause) {
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
