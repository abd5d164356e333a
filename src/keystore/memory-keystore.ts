import { KeystoreConflictError } from '../errors.ts';
import { applyChange, type KeyVersion, type NamespaceChange } from '../model/key-version.ts';
import type { CommitGuard, KekInfo, Keystore, KeystoreEvent, UsageRecord, WrappedKey } from './keystore.ts';
import { sameKekInfo, trimSamples } from './keystore.ts';

/**
 * A keystore in process memory: the reference implementation of the {@link Keystore} contract, for
 * tests and for simulations. Nothing survives the process; never use it to encrypt real data.
 * Plain storage like the other backends: the keyring puts `ValidatingKeystore` in front of it.
 */
export class MemoryKeystore implements Keystore {
  readonly kind = 'memory';
  readonly #s: MemoryState;

  constructor(state: MemoryState = newState()) {
    this.#s = state;
  }

  /** Another handle on the same stored state, like a second process on one database. */
  reopen(): MemoryKeystore {
    return new MemoryKeystore(this.#s);
  }

  async listNamespaces(): Promise<string[]> {
    return [...this.#s.versions.keys()].filter((ns) => this.#s.versions.get(ns)!.length > 0).sort();
  }

  async getVersions(namespace: string): Promise<KeyVersion[]> {
    return structuredClone(this.#s.versions.get(namespace) ?? []);
  }

  async commit(change: NamespaceChange, material?: WrappedKey, guard?: CommitGuard): Promise<KeyVersion[]> {
    if (guard && !sameKekInfo(guard.kekInfo, this.#s.kekInfo)) {
      throw new KeystoreConflictError('the KEK record changed meanwhile');
    }
    const next = applyChange(this.#s.versions.get(change.namespace) ?? [], change);
    if (change.add && material) {
      this.#s.material.set(`${change.namespace}/${change.add.version}`, structuredClone(material));
    }
    for (const t of change.transitions ?? []) {
      if (t.to === 'destroyed') this.#s.material.delete(`${change.namespace}/${t.version}`);
    }
    this.#s.versions.set(change.namespace, next);
    this.#emit({ type: 'namespace-changed', namespace: change.namespace });
    return structuredClone(next);
  }

  async getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined> {
    const m = this.#s.material.get(`${namespace}/${version}`);
    return m && structuredClone(m);
  }

  async rewrapMaterial(namespace: string, version: number, material: WrappedKey, expectedKekId: string) {
    const key = `${namespace}/${version}`;
    const current = this.#s.material.get(key);
    if (!current || current.kekId !== expectedKekId) {
      throw new KeystoreConflictError(`${key} is not wrapped with KEK ${expectedKekId}`);
    }
    this.#s.material.set(key, structuredClone(material));
  }

  async getKekInfo(): Promise<KekInfo | undefined> {
    return this.#s.kekInfo && structuredClone(this.#s.kekInfo);
  }

  async putKekInfo(info: KekInfo, expected: KekInfo | undefined): Promise<void> {
    if (!sameKekInfo(this.#s.kekInfo, expected)) {
      throw new KeystoreConflictError('the KEK record changed meanwhile');
    }
    this.#s.kekInfo = structuredClone(info);
    this.#emit({ type: 'kek-changed' });
  }

  async reserveUsage(namespace: string, version: number, count: number, at: number): Promise<UsageRecord> {
    const u = this.#usageOf(namespace, version);
    u.reserved += count;
    u.samples = trimSamples([...u.samples, { at, reserved: u.reserved }], at);
    return this.getUsage(namespace, version);
  }

  async recordUsed(namespace: string, version: number, holder: string, used: number): Promise<void> {
    const u = this.#usageOf(namespace, version);
    u.used.set(holder, Math.max(u.used.get(holder) ?? 0, used));
  }

  async getUsage(namespace: string, version: number): Promise<UsageRecord> {
    const u = this.#s.usage.get(`${namespace}/${version}`);
    if (!u) return { reserved: 0, used: 0, samples: [] };
    return {
      reserved: u.reserved,
      used: [...u.used.values()].reduce((a, b) => a + b, 0),
      samples: structuredClone(u.samples),
    };
  }

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now: number): Promise<boolean> {
    const lease = this.#s.leases.get(name);
    if (lease && lease.holder !== holder && lease.until > now) return false;
    this.#s.leases.set(name, { holder, until: now + ttlMs });
    return true;
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    if (this.#s.leases.get(name)?.holder === holder) this.#s.leases.delete(name);
  }

  subscribe(listener: (event: KeystoreEvent) => void): () => void {
    this.#s.listeners.add(listener);
    return () => this.#s.listeners.delete(listener);
  }

  async ping(): Promise<void> {}

  async close(): Promise<void> {}

  #usageOf(namespace: string, version: number) {
    const key = `${namespace}/${version}`;
    let u = this.#s.usage.get(key);
    if (!u) {
      u = { reserved: 0, used: new Map(), samples: [] };
      this.#s.usage.set(key, u);
    }
    return u;
  }

  #emit(event: KeystoreEvent): void {
    for (const l of this.#s.listeners) l(event);
  }
}

interface MemoryState {
  versions: Map<string, KeyVersion[]>;
  material: Map<string, WrappedKey>;
  kekInfo: KekInfo | undefined;
  usage: Map<string, { reserved: number; used: Map<string, number>; samples: UsageRecord['samples'] }>;
  leases: Map<string, { holder: string; until: number }>;
  listeners: Set<(event: KeystoreEvent) => void>;
}

function newState(): MemoryState {
  return {
    versions: new Map(),
    material: new Map(),
    kekInfo: undefined,
    usage: new Map(),
    leases: new Map(),
    listeners: new Set(),
  };
}
