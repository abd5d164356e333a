import { InvalidStateTransitionError, KeystoreConflictError } from '../errors.ts';

/**
 * The lifecycle of one key version.
 *
 * - `prepublished`: known to every process, not yet used to encrypt (phase one of a rotation).
 * - `active`: encrypts and decrypts. Exactly one per namespace.
 * - `inactive`: decrypts only.
 * - `deprecated`: decryption refused unless explicitly allowed (like Vault's min_decryption_version).
 * - `destroyed`: material erased; metadata kept so errors can say which version was destroyed and when.
 */
export type KeyState = 'prepublished' | 'active' | 'inactive' | 'deprecated' | 'destroyed';

export const KEY_STATES: readonly KeyState[] = [
  'prepublished',
  'active',
  'inactive',
  'deprecated',
  'destroyed',
];

/** Key metadata: everything about a version except its material. Timestamps are epoch milliseconds. */
export interface KeyVersion {
  namespace: string;
  /** 1, 2, 3, ... within the namespace. */
  version: number;
  /** `<namespace>/v<version>`: what payload metadata names. */
  keyId: string;
  state: KeyState;
  createdAt: number;
  activatedAt?: number;
  deactivatedAt?: number;
  deprecatedAt?: number;
  destroyedAt?: number;
}

export function keyIdOf(namespace: string, version: number): string {
  return `${namespace}/v${version}`;
}

/**
 * Valid single-version transitions. `active` is entered and left only in pairs (see
 * {@link applyChange}), so that a namespace always has exactly one active version.
 */
const TRANSITIONS: Readonly<Record<KeyState, readonly KeyState[]>> = {
  prepublished: ['active', 'destroyed'],
  active: ['inactive'],
  inactive: ['active', 'deprecated'],
  deprecated: ['inactive', 'destroyed'],
  destroyed: [],
};

export function canTransition(from: KeyState, to: KeyState): boolean {
  return TRANSITIONS[from].includes(to);
}

/** A version's metadata after moving to `to` at time `at`. Throws on an invalid transition. */
export function transitionVersion(current: KeyVersion, to: KeyState, at: number): KeyVersion {
  if (!canTransition(current.state, to)) {
    throw new InvalidStateTransitionError(
      `key version ${current.version} of namespace "${current.namespace}" cannot go from ${current.state} to ${to}` +
        (TRANSITIONS[current.state].length
          ? ` (allowed: ${TRANSITIONS[current.state].join(', ')})`
          : ' (it is final)'),
    );
  }
  const next: KeyVersion = { ...current, state: to };
  if (to === 'active') {
    next.activatedAt = at;
    delete next.deactivatedAt;
  }
  if (current.state === 'active') next.deactivatedAt = at;
  if (to === 'deprecated') next.deprecatedAt = at;
  if (to === 'inactive' && current.state === 'deprecated') delete next.deprecatedAt;
  if (to === 'destroyed') next.destroyedAt = at;
  return next;
}

/**
 * A namespace's state as a short comparable string (`1:inactive,2:active`): what a lifecycle change
 * was decided on, compared again by the keystore inside its commit ({@link NamespaceChange.expectedState}).
 */
export function namespaceStateOf(versions: readonly KeyVersion[]): string {
  return [...versions]
    .sort((a, b) => a.version - b.version)
    .map((v) => `${v.version}:${v.state}`)
    .join(',');
}

/** One state change inside a {@link NamespaceChange}, with a precondition on the current state. */
export interface StateTransition {
  version: number;
  from: KeyState;
  to: KeyState;
}

/**
 * An atomic change to one namespace's versions: the single write primitive of every keystore.
 * Either all of it applies or none of it does.
 */
export interface NamespaceChange {
  namespace: string;
  /** Time of the change: becomes createdAt / activatedAt / ... */
  at: number;
  /** Precondition: the highest existing version number (0 for a namespace with no versions). */
  expectedLatestVersion?: number;
  /**
   * Precondition: the namespace's state as the writer read it ({@link namespaceStateOf}). A change
   * decided on that state is refused when any version changed meanwhile, so that of two processes
   * deciding on the same state exactly one writes (compare-and-set).
   */
  expectedState?: string;
  /** A new version. Its number must be the latest + 1 and its state `prepublished` or `active`. */
  add?: { version: number; state: 'prepublished' | 'active' };
  /** State changes; each fails the whole change if the version is not in `from`. */
  transitions?: StateTransition[];
}

/**
 * Applies a change to a namespace's versions, purely. Keystores call this inside their lock or
 * transaction so that every backend enforces the same rules:
 * - preconditions hold (else {@link KeystoreConflictError}: retry against fresh state);
 * - transitions are valid (else {@link InvalidStateTransitionError});
 * - afterwards exactly one version is active (none only while the namespace is empty).
 */
export function applyChange(current: readonly KeyVersion[], change: NamespaceChange): KeyVersion[] {
  const latest = current.reduce((max, v) => Math.max(max, v.version), 0);
  if (change.expectedState !== undefined && change.expectedState !== namespaceStateOf(current)) {
    throw new KeystoreConflictError(
      `namespace "${change.namespace}" changed since it was read (expected ${change.expectedState || 'no versions'}, found ${namespaceStateOf(current) || 'no versions'})`,
    );
  }
  if (change.expectedLatestVersion !== undefined && change.expectedLatestVersion !== latest) {
    throw new KeystoreConflictError(
      `namespace "${change.namespace}": expected latest version ${change.expectedLatestVersion}, found ${latest}`,
    );
  }
  const byVersion = new Map(current.map((v) => [v.version, v]));
  for (const t of change.transitions ?? []) {
    const v = byVersion.get(t.version);
    if (!v) {
      throw new KeystoreConflictError(`namespace "${change.namespace}" has no version ${t.version}`);
    }
    if (v.state !== t.from) {
      throw new KeystoreConflictError(
        `namespace "${change.namespace}" version ${t.version} is ${v.state}, expected ${t.from}`,
      );
    }
    byVersion.set(t.version, transitionVersion(v, t.to, change.at));
  }
  if (change.add) {
    if (change.add.version !== latest + 1) {
      throw new KeystoreConflictError(
        `namespace "${change.namespace}": new version must be ${latest + 1}, got ${change.add.version}`,
      );
    }
    const added: KeyVersion = {
      namespace: change.namespace,
      version: change.add.version,
      keyId: keyIdOf(change.namespace, change.add.version),
      state: change.add.state,
      createdAt: change.at,
    };
    if (change.add.state === 'active') added.activatedAt = change.at;
    byVersion.set(added.version, added);
  }
  const next = [...byVersion.values()].sort((a, b) => a.version - b.version);
  const active = next.filter((v) => v.state === 'active').length;
  if (next.length > 0 && active !== 1) {
    throw new InvalidStateTransitionError(
      `namespace "${change.namespace}" must have exactly one active version; this change would leave ${active}`,
    );
  }
  return next;
}
