import {
  DecryptionFailedError,
  InvalidOptionError,
  InvalidStateTransitionError,
  KekMismatchError,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeyVersionNotFoundError,
  NamespaceExistsError,
  NamespaceNotFoundError,
  NoActiveKeyError,
  PropagationPendingError,
  RandomSourceError,
} from '../errors.ts';
import { KEK_CHECK_AAD, KEK_CHECK_PLAINTEXT, type KeyEncryptionKey, materialAad } from '../kek/kek.ts';
import { DEFAULT_KEK_PROPAGATION_MS, learnUpgrades, liveUpgrades, makeUpgrade } from '../kek/kek-upgrade.ts';
import { type KekInfo, type Keystore, kekTarget, type WrappedKey } from '../keystore/keystore.ts';
import { ValidatingKeystore } from '../keystore/validating-keystore.ts';
import {
  applyChange,
  type KeyState,
  type KeyVersion,
  keyIdOf,
  type NamespaceChange,
  namespaceStateOf,
} from '../model/key-version.ts';
import { validateNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';

/** Length of a data key: AES-256. */
export const DATA_KEY_LENGTH = 32;

/**
 * Default time between publishing a version and activating it: twice the keyring's 30 s refresh
 * interval plus a minute of margin (a process that misses a refresh still learns the version on its
 * next one). The rotation policy's default (`DEFAULT_ROTATION_POLICY`) takes it from here.
 */
export const DEFAULT_PROPAGATION_DELAY_MS = 2 * 60 * 1000;

/** What the lifecycle rules need from a namespace's rotation policy (a `RotationPolicy` fits). */
export interface LifecyclePolicy {
  /** Time (ms) a version stays prepublished before it may become active without `force`. */
  readonly propagationDelay: number;
}

export const DEFAULT_LIFECYCLE_POLICY: LifecyclePolicy = Object.freeze({
  propagationDelay: DEFAULT_PROPAGATION_DELAY_MS,
});

export type RotationMode = 'immediate' | 'prepublish';

/** What a rotation (or a promotion) did. */
export interface RotationResult {
  namespace: string;
  /** False when another process changed the namespace first (or a prepublished version already existed). */
  performed: boolean;
  /** The version that was active before. */
  previous: KeyVersion | undefined;
  /** The new (or already existing) version: active after `immediate`, prepublished after `prepublish`. */
  current: KeyVersion;
}

export interface RotateOptions {
  /** Default `immediate`. */
  mode?: RotationMode;
  /**
   * Activate a prepublished version even before its propagation delay has passed. Logged at warn
   * and reported to the lifecycle listeners (the codec server's audit log).
   */
  force?: boolean;
  /** Do nothing (`performed: false`) unless this version is still the active one. */
  expectedActiveVersion?: number;
}

/** What a state change did. */
export interface StateChangeResult {
  namespace: string;
  /** False when the version was already in that state, or another process changed the namespace first. */
  performed: boolean;
  /** The version before the change. */
  previous: KeyVersion;
  /** The version afterwards (as stored now). */
  current: KeyVersion;
}

/** A lifecycle change that happened, for audit logs. Never holds key material. */
export interface LifecycleEvent {
  action: 'create' | 'rotate' | 'promote' | 'set-state' | 'rekey';
  at: number;
  namespace?: string;
  /** The version created or changed. */
  version?: number;
  /** Its state afterwards. */
  state?: KeyState;
  /** The version that stopped being active, when this change activated another. */
  previousActive?: number;
  mode?: RotationMode;
  /** True when `force` took a version past its propagation delay. */
  forced: boolean;
  /** Rekey: the KEK every key is wrapped with afterwards, and how many were re-wrapped. */
  kekId?: string;
  rewrapped?: number;
}

export interface KeyManagerOptions {
  keystore: Keystore;
  /**
   * KEKs by id: those accepted for unwrapping (shared with the keyring, which reads through the
   * same map; a rekey adds the new KEK to it).
   */
  keks: Map<string, KeyEncryptionKey>;
  /** The KEK new keys are wrapped with, unless the keystore names another target it holds. */
  primaryKek: KeyEncryptionKey;
  clock?: Clock;
  random?: RandomSource;
  logger?: Logger;
  /** Each namespace's policy (its propagation delay). Default {@link DEFAULT_LIFECYCLE_POLICY}. */
  policies?: (namespace: string) => LifecyclePolicy;
  /** Told of every lifecycle change made here (the codec server's audit log subscribes). */
  onEvent?: (event: LifecycleEvent) => void;
  /** Told of a namespace's versions after each commit here (the keyring refreshes its cache). */
  onCommitted?: (namespace: string, versions: KeyVersion[]) => void;
}

/**
 * The one owner of the key lifecycle, apart from key use (in the spirit of Tink's
 * `KeysetManager`): creating a namespace, rotating (prepublish, promote, immediate), changing
 * states, destroying and re-wrapping under a new KEK all go through it, and it enforces every rule
 * itself, so that the CLI, the admin API and the rotator only call it:
 * - valid transitions and exactly one active version (decided with `applyChange`, which every
 *   keystore applies again inside its commit);
 * - the propagation delay: no version becomes active before it has been prepublished for its
 *   namespace's `propagationDelay`, unless `force` is given (logged at warn, reported as a
 *   {@link LifecycleEvent} with `forced: true`);
 * - compare-and-set against the namespace as read: every change carries the state it was decided
 *   on (`expectedState`), the keystore refuses it if anything changed meanwhile, and the loser of a
 *   race answers `performed: false` instead of acting on state it did not see;
 * - new material goes under the keystore's KEK target (the target of a rekey in progress), which
 *   the `ValidatingKeystore` in front of every backend enforces again, atomically.
 *
 * Pipeline position: CLI / admin API / rotator → `KeyManager` (this) → `Keystore`. The read side
 * (`Keyring.encryptionKey` / `decryptionKey`) never goes through it.
 */
export class KeyManager {
  readonly #keystore: Keystore;
  readonly #keks: Map<string, KeyEncryptionKey>;
  #primaryKek: KeyEncryptionKey;
  readonly #clock: Clock;
  readonly #random: RandomSource;
  readonly #logger: Logger;
  readonly #policies: (namespace: string) => LifecyclePolicy;
  readonly #listeners = new Set<(event: LifecycleEvent) => void>();
  readonly #onCommitted: ((namespace: string, versions: KeyVersion[]) => void) | undefined;

  constructor(options: KeyManagerOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    if (!options.keystore) throw new InvalidOptionError('keystore', 'is required');
    if (!options.primaryKek) throw new InvalidOptionError('primaryKek', 'is required');
    if (options.policies !== undefined && typeof options.policies !== 'function') {
      throw new InvalidOptionError('policies', 'must be a function from namespace to policy');
    }
    this.#keystore = ValidatingKeystore.wrap(options.keystore);
    this.#keks = options.keks;
    this.#primaryKek = options.primaryKek;
    this.#keks.set(options.primaryKek.id, options.primaryKek);
    this.#clock = options.clock ?? systemClock;
    this.#random = options.random ?? systemRandom;
    this.#logger = options.logger ?? silentLogger;
    this.#policies = options.policies ?? (() => DEFAULT_LIFECYCLE_POLICY);
    this.#onCommitted = options.onCommitted;
    if (options.onEvent) this.#listeners.add(options.onEvent);
  }

  /** Id of the KEK new keys are wrapped with. */
  get kekId(): string {
    return this.#primaryKek.id;
  }

  /** Adds a listener of lifecycle changes; returns the function that removes it. */
  subscribe(listener: (event: LifecycleEvent) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** A namespace's versions, fresh from the keystore. */
  async versions(namespace: string): Promise<KeyVersion[]> {
    validateNamespace(namespace);
    return this.#read(namespace);
  }

  /** Creates version 1 (active) of a new namespace. */
  async createNamespace(namespace: string): Promise<KeyVersion> {
    validateNamespace(namespace);
    const before = await this.#read(namespace);
    if (before.length > 0) throw new NamespaceExistsError(namespace);
    const at = this.#clock.now();
    let after: KeyVersion[];
    try {
      after = await this.#commitNew(before, {
        namespace,
        at,
        expectedLatestVersion: 0,
        expectedState: namespaceStateOf(before),
        add: { version: 1, state: 'active' },
      });
    } catch (error) {
      if (error instanceof KeystoreConflictError) throw new NamespaceExistsError(namespace);
      throw error;
    }
    this.#logger.info({ namespace, version: 1 }, 'namespace created');
    this.#emit({ action: 'create', at, namespace, version: 1, state: 'active', forced: false });
    return after[0]!;
  }

  /**
   * Rotates a namespace's key.
   * - `immediate`: a new version becomes active now and the active one inactive. If a version is
   *   prepublished it is promoted instead, which its propagation delay allows only once passed
   *   (else `PropagationPendingError`), or with `force`.
   * - `prepublish`: phase one of a two-phase rotation: the new version is created `prepublished`;
   *   a later `immediate` rotation (or {@link promote}) activates it.
   *
   * Of concurrent rotations decided on the same state exactly one is performed; the others answer
   * `performed: false` with the version that won. `expectedActiveVersion` extends that to callers
   * that read the state before: nothing happens unless that version is still the active one.
   */
  async rotate(namespace: string, options: RotateOptions = {}): Promise<RotationResult> {
    validateNamespace(namespace);
    const mode = options.mode ?? 'immediate';
    if (mode !== 'immediate' && mode !== 'prepublish') {
      throw new InvalidOptionError('mode', "must be 'immediate' or 'prepublish'");
    }
    const expected = options.expectedActiveVersion;
    if (expected !== undefined && !(Number.isSafeInteger(expected) && expected >= 1)) {
      throw new InvalidOptionError('expectedActiveVersion', 'must be a positive integer');
    }
    const before = await this.#read(namespace);
    if (before.length === 0) throw new NamespaceNotFoundError(namespace);
    const active = before.find((v) => v.state === 'active');
    if (!active) throw new NoActiveKeyError(namespace);
    const unchanged = (current: KeyVersion): RotationResult => ({
      namespace,
      performed: false,
      previous: active,
      current,
    });
    if (expected !== undefined && active.version !== expected) return unchanged(active);
    const pending = before.find((v) => v.state === 'prepublished');
    if (pending) {
      if (mode === 'prepublish') return unchanged(pending);
      return this.#activate(before, pending, options.force === true, 'rotate');
    }
    const latest = before.at(-1)!.version;
    const at = this.#clock.now();
    const change: NamespaceChange = {
      namespace,
      at,
      expectedLatestVersion: latest,
      expectedState: namespaceStateOf(before),
      add: { version: latest + 1, state: mode === 'immediate' ? 'active' : 'prepublished' },
      transitions: mode === 'immediate' ? [{ version: active.version, from: 'active', to: 'inactive' }] : [],
    };
    let after: KeyVersion[];
    try {
      after = await this.#commitNew(before, change);
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
      return unchanged(await this.#winner(namespace, latest));
    }
    const current = after.find((v) => v.version === latest + 1)!;
    this.#logger.info({ namespace, from: active.version, to: current.version, mode }, 'key rotated');
    this.#emit({
      action: 'rotate',
      at,
      namespace,
      version: current.version,
      state: current.state,
      previousActive: mode === 'immediate' ? active.version : undefined,
      mode,
      forced: false,
    });
    return { namespace, performed: true, previous: active, current };
  }

  /**
   * Makes a prepublished (once its propagation delay has passed, or with `force`) or inactive
   * version active; the active one becomes inactive.
   */
  async promote(
    namespace: string,
    version: number,
    options: { force?: boolean } = {},
  ): Promise<RotationResult> {
    validateNamespace(namespace);
    const before = await this.#read(namespace);
    const target = before.find((v) => v.version === version);
    if (!target) throw new KeyVersionNotFoundError(namespace, version);
    return this.#activate(before, target, options.force === true, 'promote');
  }

  /**
   * Moves a version to another state. `active` is a promotion (the propagation delay applies);
   * leaving `active` is only possible by activating another version (a namespace always has one).
   * `destroyed` erases the material for good.
   */
  async setState(
    namespace: string,
    version: number,
    state: KeyState,
    options: { force?: boolean } = {},
  ): Promise<StateChangeResult> {
    validateNamespace(namespace);
    const before = await this.#read(namespace);
    const target = before.find((v) => v.version === version);
    if (!target) throw new KeyVersionNotFoundError(namespace, version);
    if (state === 'active') {
      const r = await this.#activate(before, target, options.force === true, 'set-state');
      return { namespace, performed: r.performed, previous: target, current: r.current };
    }
    if (target.state === state) return { namespace, performed: false, previous: target, current: target };
    if (target.state === 'active') {
      throw new InvalidStateTransitionError(
        `key version ${version} of namespace "${namespace}" is active; rotate first (temporal-keyring keys rotate --namespace ${namespace})`,
      );
    }
    const at = this.#clock.now();
    const change: NamespaceChange = {
      namespace,
      at,
      expectedState: namespaceStateOf(before),
      transitions: [{ version, from: target.state, to: state }],
    };
    applyChange(before, change); // the transition rules, decided here and applied again by the store
    let after: KeyVersion[];
    try {
      after = await this.#keystore.commit(change);
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
      const now = (await this.#read(namespace)).find((v) => v.version === version) ?? target;
      return { namespace, performed: false, previous: target, current: now };
    }
    this.#onCommitted?.(namespace, after);
    this.#logger.info({ namespace, version, from: target.state, to: state }, 'key state changed');
    this.#emit({ action: 'set-state', at, namespace, version, state, forced: false });
    const current = after.find((v) => v.version === version)!;
    return { namespace, performed: true, previous: target, current };
  }

  /** Destroys a version: its material is erased for good (it must be deprecated first). */
  destroy(namespace: string, version: number): Promise<StateChangeResult> {
    return this.setState(namespace, version, 'destroyed');
  }

  /**
   * KEK rotation: re-wraps every key under `newKek`. Resumable: the keystore records the rekey in
   * progress, and each key says which KEK wraps it, so running it again after a crash continues
   * where it stopped. Meanwhile new keys go under the new KEK (the target).
   *
   * Without an outage: when the new KEK can be wrapped (local and Shamir KEKs), the record carries
   * an upgrade key (the new KEK wrapped by the old one, see kek-upgrade.ts) from the start of the
   * rekey until `propagationDelayMs` after it completed, so that a process holding only the old KEK
   * still reads every key meanwhile; running the rekey again after that removes it. A version whose
   * material is missing is named (`KeystoreCorruptError`) and the rekey is left unfinished.
   */
  async rekey(
    newKek: KeyEncryptionKey,
    options: { propagationDelayMs?: number } = {},
  ): Promise<{ rewrapped: number }> {
    const delay = options.propagationDelayMs ?? DEFAULT_KEK_PROPAGATION_MS;
    const info = await this.#keystore.getKekInfo();
    if (!info) throw new KeystoreCorruptError('the keystore has no KEK record; open it with its KEK first');
    if (info.currentKekId === newKek.id && !info.rekey) {
      // Done already: running it again after the propagation delay drops the expired upgrade key.
      const kept = liveUpgrades(info, this.#clock.now());
      if (info.upgrades && kept.length !== info.upgrades.length) {
        const pruned: KekInfo = { ...info, upgrades: kept };
        if (kept.length === 0) delete pruned.upgrades;
        await this.#keystore.putKekInfo(pruned, info);
      }
      return { rewrapped: 0 };
    }
    this.#keks.set(newKek.id, newKek);
    let inProgress = info;
    if (!info.rekey || info.rekey.toKekId !== newKek.id) {
      const check = Buffer.from(await newKek.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString('base64');
      const fromKekId = info.rekey?.fromKekId ?? info.currentKekId;
      const upgrades = liveUpgrades(info, this.#clock.now());
      const oldKek = this.#keks.get(fromKekId);
      const upgrade =
        oldKek && !upgrades.some((u) => u.toKekId === newKek.id)
          ? await makeUpgrade(oldKek, newKek)
          : undefined;
      if (upgrade) upgrades.push(upgrade);
      inProgress = {
        ...info,
        checks: [...info.checks.filter((c) => c.kekId !== newKek.id), { kekId: newKek.id, check }],
        rekey: { fromKekId, toKekId: newKek.id, startedAt: this.#clock.now() },
      };
      if (upgrades.length > 0) inProgress.upgrades = upgrades;
      else delete inProgress.upgrades;
      await this.#keystore.putKekInfo(inProgress, info);
    }
    this.#primaryKek = newKek;
    let rewrapped = 0;
    const missing: string[] = [];
    for (const namespace of await this.#keystore.listNamespaces()) {
      for (const v of await this.#keystore.getVersions(namespace)) {
        const wrapped = await this.#keystore.getMaterial(namespace, v.version);
        if (!wrapped) {
          if (v.state !== 'destroyed') missing.push(`${namespace}/v${v.version}`);
          continue;
        }
        if (wrapped.kekId === newKek.id) continue;
        const material = await this.#unwrap(v, wrapped);
        try {
          const next: WrappedKey = {
            kekId: newKek.id,
            alg: 'A256GCM',
            ciphertext: await newKek.wrap(material, materialAad(v.namespace, v.version, v.keyId)),
          };
          await this.#keystore.rewrapMaterial(namespace, v.version, next, wrapped.kekId);
        } finally {
          material.fill(0);
        }
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
    const until = this.#clock.now() + delay;
    if (done.upgrades) {
      done.upgrades = done.upgrades.map((u) => (u.toKekId === newKek.id ? { ...u, until } : u));
    }
    await this.#keystore.putKekInfo(done, inProgress);
    this.#logger.info({ kekId: newKek.id, rewrapped }, 'KEK rotation complete');
    this.#emit({ action: 'rekey', at: this.#clock.now(), kekId: newKek.id, rewrapped, forced: false });
    return { rewrapped };
  }

  // --- Internals -----------------------------------------------------------------------------

  async #read(namespace: string): Promise<KeyVersion[]> {
    const versions = await this.#keystore.getVersions(namespace);
    this.#onCommitted?.(namespace, versions);
    return structuredClone(versions);
  }

  /**
   * Activates `target` (prepublished or inactive) in place of the active version: the one path
   * every activation takes (rotate, promote, set-state), so the propagation delay is checked here
   * and nowhere else.
   */
  async #activate(
    before: KeyVersion[],
    target: KeyVersion,
    force: boolean,
    action: 'rotate' | 'promote' | 'set-state',
  ): Promise<RotationResult> {
    const namespace = target.namespace;
    const active = before.find((v) => v.state === 'active');
    if (target.state === 'active') return { namespace, performed: false, previous: target, current: target };
    if (target.state !== 'prepublished' && target.state !== 'inactive') {
      throw new InvalidStateTransitionError(
        `key version ${target.version} of namespace "${namespace}" is ${target.state} and cannot become active (allowed from prepublished or inactive)`,
      );
    }
    const now = this.#clock.now();
    let forced = false;
    if (target.state === 'prepublished') {
      const delay = this.#policies(namespace).propagationDelay;
      const readyAt = target.createdAt + delay;
      if (now < readyAt) {
        if (!force) {
          throw new PropagationPendingError(
            `${target.keyId} was prepublished ${seconds(now - target.createdAt)} ago and its namespace's propagation delay is ${seconds(delay)}: every process may not know it yet. Activate it after ${new Date(readyAt).toISOString()}, or force it (keys rotate --force, keys set-state --force, "force": true)`,
            readyAt,
          );
        }
        forced = true;
      }
    }
    const transitions: NamespaceChange['transitions'] = [
      { version: target.version, from: target.state, to: 'active' },
    ];
    if (active) transitions.unshift({ version: active.version, from: 'active', to: 'inactive' });
    const change: NamespaceChange = {
      namespace,
      at: now,
      expectedState: namespaceStateOf(before),
      transitions,
    };
    applyChange(before, change);
    let after: KeyVersion[];
    try {
      after = await this.#keystore.commit(change);
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
      // Another process changed the namespace since we read it: theirs is the change.
      const fresh = await this.#read(namespace);
      const current = fresh.find((v) => v.state === 'active') ?? target;
      return { namespace, performed: false, previous: active, current };
    }
    this.#onCommitted?.(namespace, after);
    const current = after.find((v) => v.version === target.version)!;
    const fields = { namespace, from: active?.version, to: target.version, forced };
    if (forced) {
      this.#logger.warn(
        { ...fields, prepublishedForMs: now - target.createdAt },
        'key version activated before its propagation delay passed (forced)',
      );
    } else {
      this.#logger.info(fields, 'key version activated');
    }
    this.#emit({
      action: action === 'set-state' ? 'set-state' : 'promote',
      at: now,
      namespace,
      version: target.version,
      state: 'active',
      previousActive: active?.version,
      forced,
    });
    return { namespace, performed: true, previous: active, current };
  }

  /** After a lost race to add version `latest + 1`: the version the winner made. */
  async #winner(namespace: string, latest: number): Promise<KeyVersion> {
    const after = await this.#read(namespace);
    const newer = after.filter((v) => v.version > latest);
    return (
      newer.find((v) => v.state === 'active') ??
      newer.find((v) => v.state === 'prepublished') ??
      after.find((v) => v.state === 'active') ??
      after.at(-1)!
    );
  }

  /**
   * New keys are wrapped with the keystore's KEK target. A process opened before another one
   * rotated the KEK would otherwise wrap them with the retired KEK, which processes holding only
   * the new KEK cannot unwrap (the validating keystore refuses that, atomically).
   */
  async #followKekRotation(): Promise<void> {
    const info = await this.#keystore.getKekInfo();
    const target = kekTarget(info) ?? this.#primaryKek.id;
    if (!this.#keks.has(target))
      await learnUpgrades(this.#keks, info, this.#clock.now(), this.#random, this.#logger);
    const kek = this.#keks.get(target);
    if (!kek) {
      throw new KekMismatchError(
        `the keystore's keys are now wrapped with KEK ${target}, which this process does not hold; restart it with that KEK`,
      );
    }
    this.#primaryKek = kek;
  }

  async #commitNew(before: KeyVersion[], change: NamespaceChange): Promise<KeyVersion[]> {
    const add = change.add!;
    applyChange(before, change); // the rules, decided here and applied again by the store
    const material = this.#random.bytes(DATA_KEY_LENGTH);
    if (material?.length !== DATA_KEY_LENGTH) {
      throw new RandomSourceError('the random source returned the wrong number of bytes for a new key');
    }
    const keyId = keyIdOf(change.namespace, add.version);
    try {
      for (let attempt = 0; ; attempt++) {
        await this.#followKekRotation();
        const wrapped: WrappedKey = {
          kekId: this.#primaryKek.id,
          alg: 'A256GCM',
          ciphertext: await this.#primaryKek.wrap(
            material,
            materialAad(change.namespace, add.version, keyId),
          ),
        };
        try {
          const after = await this.#keystore.commit(change, wrapped);
          this.#onCommitted?.(change.namespace, after);
          return after;
        } catch (error) {
          // A KEK rotation began between our read of the KEK record and the commit, and the store
          // refused the retiring KEK: wrap again with the rotation's target (if we hold it).
          if (!(error instanceof KekMismatchError) || attempt > 0) throw error;
        }
      }
    } finally {
      material.fill(0);
    }
  }

  async #unwrap(v: KeyVersion, wrapped: WrappedKey): Promise<Uint8Array> {
    if (!this.#keks.has(wrapped.kekId)) {
      await learnUpgrades(
        this.#keks,
        await this.#keystore.getKekInfo(),
        this.#clock.now(),
        this.#random,
        this.#logger,
      );
    }
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

  #emit(event: LifecycleEvent): void {
    for (const listener of this.#listeners) {
      try {
        listener(event);
      } catch (error) {
        this.#logger.warn({ err: { message: String(error) } }, 'lifecycle listener threw');
      }
    }
  }
}

function seconds(ms: number): string {
  const s = Math.max(0, ms) / 1000;
  return s >= 120 ? `${Number((s / 60).toFixed(1))} min` : `${Number(s.toFixed(1))} s`;
}
