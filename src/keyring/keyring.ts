import {
  DecryptionFailedError,
  InvalidOptionError,
  InvalidStateTransitionError,
  KekMismatchError,
  KekUnavailableError,
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
import {
  KEK_CHECK_AAD,
  KEK_CHECK_PLAINTEXT,
  type KeyEncryptionKey,
  LocalKek,
  materialAad,
  upgradeAad,
} from '../kek/kek.ts';
import type { KekInfo, KekUpgrade, Keystore, WrappedKey } from '../keystore/keystore.ts';
import { generateKeystoreId } from '../keystore/keystore-id.ts';
import type { KeyState, KeyVersion, NamespaceChange } from '../model/key-version.ts';
import { validateNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import type { EncryptionMeter } from './encryption-meter.ts';

/**
 * How long after a KEK rotation a process holding only the old KEK still reads every key (through
 * the upgrade key): twice the default 30 s metadata refresh plus margin, as the rotation policy's
 * propagation delay.
 */
export const DEFAULT_KEK_PROPAGATION_MS = 2 * 60 * 1000;

/** Length of a data key: AES-256. */
export const DATA_KEY_LENGTH = 32;

/** A key version with its unwrapped material, as the codec uses it. */
export interface ResolvedKey {
  namespace: string;
  version: number;
  keyId: string;
  /** 32 bytes. Never log, serialize or copy this out of the process. */
  material: Uint8Array;
}

/**
 * What the codec needs from a keyring: the key to encrypt with now, and the key a payload names.
 * {@link Keyring} implements it; so can anything that holds keys another way. Return the same
 * `material` object for a version every time, as the Keyring does: the fast engine's data key
 * cache is keyed by it, so fresh copies work but never hit the cache.
 */
export interface KeyProvider {
  /** The namespace's active key, after accounting for `count` encryptions with it. */
  encryptionKey(namespace: string, count: number): Promise<ResolvedKey>;
  /** The key of a version, if its state allows decryption. Refreshes once if the version is unknown. */
  decryptionKey(namespace: string, version: number): Promise<ResolvedKey>;
}

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
  readonly #materials = new Map<string, Uint8Array>();
  readonly #inflight = new Map<string, Promise<NamespaceCache>>();
  #cancelRefresh: (() => void) | undefined;
  #unsubscribe: (() => void) | undefined;
  #closed = false;
  #keystoreId = '';

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

  /**
   * The keystore's short random non-secret id (16 hex chars, from its KEK record): names the
   * keystore in shares, hints and messages without revealing anything about its keys.
   */
  get keystoreId(): string {
    return this.#keystoreId;
  }

  // --- KeyProvider -------------------------------------------------------------------------

  async encryptionKey(namespace: string, count: number): Promise<ResolvedKey> {
    const ns = await this.#namespace(namespace, true);
    const active = ns.versions.find((v) => v.state === 'active');
    if (!active) throw new NoActiveKeyError(namespace);
    const material = await this.#material(active);
    if (this.#meter && count > 0) await this.#meter.spend(namespace, active.version, count);
    return { namespace, version: active.version, keyId: active.keyId, material };
  }

  async decryptionKey(namespace: string, version: number): Promise<ResolvedKey> {
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
    return { namespace, version, keyId: v.keyId, material: await this.#material(v) };
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
    if (state === 'destroyed') this.#materials.delete(target.keyId);
    this.#logger.info({ namespace, version, from: target.state, to: state }, 'key state changed');
    return after.find((v) => v.version === version)!;
  }

  /**
   * KEK rotation: re-wraps every key under `newKek`. Resumable: the keystore records the rekey in
   * progress, and each key says which KEK wraps it, so running it again after a crash continues
   * where it stopped.
   *
   * Without an outage: when the new KEK can be wrapped (local and Shamir KEKs), the record carries
   * an upgrade key (the new KEK wrapped by the old one) from the start of the rekey until
   * `propagationDelayMs` after it completed, so that a process holding only the old KEK still reads
   * every key meanwhile; the next rekey drops expired upgrade keys. A version whose material is
   * missing is reported (`KeystoreCorruptError` naming each) and the rekey is left unfinished.
   */
  async rekey(
    newKek: KeyEncryptionKey,
    options: { propagationDelayMs?: number } = {},
  ): Promise<{ rewrapped: number }> {
    const delay = options.propagationDelayMs ?? DEFAULT_KEK_PROPAGATION_MS;
    const info = (await this.keystore.getKekInfo())!;
    if (info.currentKekId === newKek.id && !info.rekey) {
      // Done already: running it again after the propagation delay drops the expired upgrade key.
      const now = this.clock.now();
      const kept = (info.upgrades ?? []).filter((u) => u.until === undefined || u.until > now);
      if (info.upgrades && kept.length !== info.upgrades.length) {
        const pruned: KekInfo = { ...info, upgrades: kept };
        if (kept.length === 0) delete pruned.upgrades;
        await this.keystore.putKekInfo(pruned, info);
      }
      return { rewrapped: 0 };
    }
    this.#keks.set(newKek.id, newKek);
    let inProgress = info;
    if (!info.rekey || info.rekey.toKekId !== newKek.id) {
      const check = Buffer.from(await newKek.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString('base64');
      const fromKekId = info.rekey?.fromKekId ?? info.currentKekId;
      const now = this.clock.now();
      const upgrades = (info.upgrades ?? []).filter((u) => u.until === undefined || u.until > now);
      const oldKek = this.#keks.get(fromKekId);
      if (oldKek && newKek.wrapWith && !upgrades.some((u) => u.toKekId === newKek.id)) {
        upgrades.push({
          fromKekId,
          toKekId: newKek.id,
          wrapped: Buffer.from(await newKek.wrapWith(oldKek)).toString('base64'),
        });
      }
      inProgress = {
        ...info,
        checks: [...info.checks.filter((c) => c.kekId !== newKek.id), { kekId: newKek.id, check }],
        rekey: { fromKekId, toKekId: newKek.id, startedAt: now },
      };
      if (upgrades.length > 0) inProgress.upgrades = upgrades;
      else delete inProgress.upgrades;
      await this.keystore.putKekInfo(inProgress, info);
    }
    this.#primaryKek = newKek;
    let rewrapped = 0;
    const missing: string[] = [];
    for (const namespace of await this.keystore.listNamespaces()) {
      for (const v of await this.keystore.getVersions(namespace)) {
        const wrapped = await this.keystore.getMaterial(namespace, v.version);
        if (!wrapped) {
          if (v.state !== 'destroyed') missing.push(`${namespace}/v${v.version}`);
          continue;
        }
        if (wrapped.kekId === newKek.id) continue;
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
    if (missing.length > 0) {
      throw new KeystoreCorruptError(
        `KEK rotation not finished: ${missing.length} key version(s) have no wrapped material and could not be re-wrapped: ${missing.slice(0, 20).join(', ')}${missing.length > 20 ? ', ...' : ''} (${rewrapped} other(s) re-wrapped)`,
      );
    }
    const done: KekInfo = {
      ...inProgress,
      currentKekId: newKek.id,
      checks: inProgress.checks.filter((c) => c.kekId === newKek.id),
    };
    delete done.rekey;
    const until = this.clock.now() + delay;
    if (done.upgrades) {
      done.upgrades = done.upgrades.map((u) => (u.toKekId === newKek.id ? { ...u, until } : u));
    }
    await this.keystore.putKekInfo(done, inProgress);
    this.#logger.info({ kekId: newKek.id, rewrapped }, 'KEK rotation complete');
    return { rewrapped };
  }

  /**
   * Learns KEKs from the record's upgrade keys: a KEK this process holds unwraps the KEK that
   * replaced it (repeatedly, along a chain of rekeys). Returns whether it learned any.
   */
  async #learnUpgrades(info?: KekInfo): Promise<boolean> {
    const now = this.clock.now();
    const upgrades: KekUpgrade[] = ((info ?? (await this.keystore.getKekInfo()))?.upgrades ?? []).filter(
      (u) => u.until === undefined || u.until > now,
    );
    let learned = false;
    for (let progress = true; progress; ) {
      progress = false;
      for (const u of upgrades) {
        const from = this.#keks.get(u.fromKekId);
        if (!from || this.#keks.has(u.toKekId) || from.sealed) continue;
        try {
          const bytes = await from.unwrap(
            Buffer.from(u.wrapped, 'base64'),
            upgradeAad(u.fromKekId, u.toKekId),
          );
          const kek = new LocalKek(bytes, this.#random);
          Buffer.from(bytes).fill(0);
          if (kek.id !== u.toKekId) continue;
          this.#keks.set(kek.id, kek);
          progress = true;
          learned = true;
          this.#logger.info({ from: u.fromKekId, to: u.toKekId }, 'KEK learned from an upgrade key');
        } catch {
          // A damaged upgrade key only means this process cannot follow that rekey.
        }
      }
    }
    return learned;
  }

  /** Re-reads every cached namespace from the keystore. */
  async refresh(): Promise<void> {
    await Promise.all([...this.#cache.keys()].map((ns) => this.#load(ns)));
  }

  /**
   * Seals: zeroes and forgets every unwrapped key and seals every sealable KEK (Shamir), so that
   * nothing decrypts until a threshold of unseal keys is given again. Metadata stays cached.
   */
  seal(): void {
    for (const m of this.#materials.values()) m.fill(0);
    this.#materials.clear();
    for (const kek of this.#keks.values()) kek.seal?.();
  }

  /** The KEKs this keyring holds (new keys go under the first). For seal status and `/readyz`. */
  get keks(): readonly KeyEncryptionKey[] {
    return [this.#primaryKek, ...[...this.#keks.values()].filter((k) => k !== this.#primaryKek)];
  }

  /** Stops timers and the meter, and forgets key material. Does not close the keystore. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelRefresh?.();
    this.#unsubscribe?.();
    await this.#meter?.close();
    for (const m of this.#materials.values()) m.fill(0);
    this.#materials.clear();
    this.#cache.clear();
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
    await this.#learnUpgrades(info);
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
    for (const v of versions) if (v.state === 'destroyed') this.#materials.delete(v.keyId);
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
    if (!this.#keks.has(target) && info) await this.#learnUpgrades(info);
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
        this.#materials.set(keyId, Buffer.from(material));
        this.#store(change.namespace, after);
        return after;
      } catch (error) {
        // A KEK rotation began between our read of the KEK record and the commit, and the store
        // refused the retiring KEK: wrap again with the rotation's target (if we hold it).
        if (!(error instanceof KekMismatchError) || attempt > 0) throw error;
      }
    }
  }

  async #material(v: KeyVersion): Promise<Uint8Array> {
    const cached = this.#materials.get(v.keyId);
    if (cached) return cached;
    const wrapped = await this.keystore.getMaterial(v.namespace, v.version);
    if (!wrapped) {
      if (v.state === 'destroyed') throw new KeyVersionDestroyedError(v.namespace, v.version, v.destroyedAt);
      throw new KeystoreCorruptError(
        `key version ${v.version} of namespace "${v.namespace}" has no material`,
      );
    }
    const material = await this.#unwrap(v, wrapped);
    this.#materials.set(v.keyId, material);
    return material;
  }

  async #unwrap(v: KeyVersion, wrapped: WrappedKey): Promise<Uint8Array> {
    if (!this.#keks.has(wrapped.kekId)) await this.#learnUpgrades();
    const kek = this.#keks.get(wrapped.kekId);
    if (!kek) {
      const info = await this.keystore.getKekInfo();
      const now = info?.rekey?.toKekId ?? info?.currentKekId;
      throw new KekMismatchError(
        `key version ${v.version} of namespace "${v.namespace}" is wrapped with KEK ${wrapped.kekId}, which this process does not hold; this keystore now uses KEK ${now}: restart this process with that KEK`,
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
