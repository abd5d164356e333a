import { z } from 'zod';
import { InvalidOptionError, KekMismatchError, KeystoreConflictError } from '../errors.ts';
import { KEY_STATES, type KeyVersion, type NamespaceChange } from '../model/key-version.ts';
import { isValidNamespace, validateNamespace } from '../model/namespace.ts';
import {
  type CommitGuard,
  type KekInfo,
  type Keystore,
  type KeystoreEvent,
  kekTarget,
  sameKekInfo,
  type UsageRecord,
  type WrappedKey,
} from './keystore.ts';

/**
 * The one place where keystore arguments are checked and the KEK-target rule is enforced, in front
 * of any backend: `openKeystore` and the keyring always put it there, so that backends stay plain
 * storage (pipeline: keyring → ValidatingKeystore (this) → file / PostgreSQL / memory backend).
 *
 * - Arguments: namespaces pass the allow-list before they reach a path, a URL or a query; versions
 *   are positive integers, counts non-negative integers, times finite; a change names known states;
 *   material is a well-formed `WrappedKey`, given exactly when a version is added; a KEK record has
 *   its shape. Violations throw `InvalidOptionError` / `InvalidNamespaceError` before any I/O.
 * - KEK target: new (and re-wrapped) material must be wrapped with the KEK the keystore is moving
 *   to (`kekTarget`): a process opened before a KEK rotation began would otherwise add a key that
 *   only the retiring KEK unwraps. The KEK record read for the check is passed to the backend's
 *   commit as a guard, so a rotation that starts in between makes the commit fail and the check
 *   run again: the rule holds atomically without living in every backend.
 */
export class ValidatingKeystore implements Keystore {
  /** The backend behind this layer (for backend-specific tools such as `FileKeystore.check`). */
  readonly backend: Keystore;
  readonly kind: string;
  readonly subscribe?: (listener: (event: KeystoreEvent) => void) => () => void;

  private constructor(backend: Keystore) {
    this.backend = backend;
    this.kind = backend.kind;
    if (backend.subscribe) this.subscribe = (listener) => backend.subscribe!(listener);
  }

  /** Puts the validating layer in front of `keystore`, unless it is already there. */
  static wrap(keystore: Keystore): ValidatingKeystore {
    return keystore instanceof ValidatingKeystore ? keystore : new ValidatingKeystore(keystore);
  }

  listNamespaces(): Promise<string[]> {
    return this.backend.listNamespaces();
  }

  async getVersions(namespace: string): Promise<KeyVersion[]> {
    validateNamespace(namespace);
    return this.backend.getVersions(namespace);
  }

  async commit(change: NamespaceChange, material?: WrappedKey, guard?: CommitGuard): Promise<KeyVersion[]> {
    validateChange(change);
    if (Boolean(change.add) !== (material !== undefined)) {
      throw new InvalidOptionError('material', 'must be given exactly when a version is added');
    }
    if (material === undefined) return this.backend.commit(change, undefined, guard);
    validateWrappedKey(material);
    for (let attempt = 0; ; attempt++) {
      const info = await this.backend.getKekInfo();
      assertTargetKek(material.kekId, info, 'new key material');
      if (guard && !sameKekInfo(guard.kekInfo, info)) {
        throw new KeystoreConflictError('the KEK record changed meanwhile');
      }
      try {
        return await this.backend.commit(change, material, { kekInfo: info });
      } catch (error) {
        // The KEK record changed between our read and the commit (a KEK rotation started): check
        // the rule again against the new record. Any other conflict is the caller's.
        if (!(error instanceof KeystoreConflictError) || attempt > 2) throw error;
        if (sameKekInfo(info, await this.backend.getKekInfo())) throw error;
      }
    }
  }

  async getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined> {
    validateNamespace(namespace);
    validateVersion('version', version);
    return this.backend.getMaterial(namespace, version);
  }

  async rewrapMaterial(
    namespace: string,
    version: number,
    material: WrappedKey,
    expectedKekId: string,
  ): Promise<void> {
    validateNamespace(namespace);
    validateVersion('version', version);
    validateWrappedKey(material);
    if (typeof expectedKekId !== 'string' || expectedKekId === '') {
      throw new InvalidOptionError('expectedKekId', 'must be a non-empty KEK id');
    }
    assertTargetKek(material.kekId, await this.backend.getKekInfo(), 're-wrapped key material');
    return this.backend.rewrapMaterial(namespace, version, material, expectedKekId);
  }

  getKekInfo(): Promise<KekInfo | undefined> {
    return this.backend.getKekInfo();
  }

  async putKekInfo(info: KekInfo, expected: KekInfo | undefined): Promise<void> {
    validateKekInfo('info', info);
    if (expected !== undefined) validateKekInfo('expected', expected);
    return this.backend.putKekInfo(info, expected);
  }

  async reserveUsage(namespace: string, version: number, count: number, at: number): Promise<UsageRecord> {
    validateNamespace(namespace);
    validateVersion('version', version);
    validateCount('count', count);
    validateTime('at', at);
    return this.backend.reserveUsage(namespace, version, count, at);
  }

  async recordUsed(namespace: string, version: number, holder: string, used: number, at: number) {
    validateNamespace(namespace);
    validateVersion('version', version);
    validateHolder(holder);
    validateCount('used', used);
    validateTime('at', at);
    return this.backend.recordUsed(namespace, version, holder, used, at);
  }

  async getUsage(namespace: string, version: number): Promise<UsageRecord> {
    validateNamespace(namespace);
    validateVersion('version', version);
    return this.backend.getUsage(namespace, version);
  }

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now: number): Promise<boolean> {
    validateLeaseName(name);
    validateHolder(holder);
    if (!Number.isFinite(ttlMs) || ttlMs < 0) {
      throw new InvalidOptionError('ttlMs', 'must be a non-negative number of milliseconds');
    }
    validateTime('now', now);
    return this.backend.tryAcquireLease(name, holder, ttlMs, now);
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    validateLeaseName(name);
    validateHolder(holder);
    return this.backend.releaseLease(name, holder);
  }

  ping(): Promise<void> {
    return this.backend.ping();
  }

  close(): Promise<void> {
    return this.backend.close();
  }
}

function assertTargetKek(kekId: string, info: KekInfo | undefined, what: string): void {
  const target = kekTarget(info);
  if (target !== undefined && kekId !== target) {
    throw new KekMismatchError(
      `${what} is wrapped with KEK ${kekId} but this keystore's keys are now wrapped with KEK ${target} (a KEK rotation happened); reopen the keyring with the new KEK`,
    );
  }
}

const positiveInt = z.number().int().positive().max(Number.MAX_SAFE_INTEGER);
const state = z.enum(KEY_STATES as [string, ...string[]]);
const changeSchema = z.object({
  namespace: z.string(),
  at: z.number().finite(),
  expectedLatestVersion: z.number().int().nonnegative().max(Number.MAX_SAFE_INTEGER).optional(),
  expectedState: z.string().optional(),
  add: z.strictObject({ version: positiveInt, state: z.enum(['prepublished', 'active']) }).optional(),
  transitions: z.array(z.strictObject({ version: positiveInt, from: state, to: state })).optional(),
});

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const kekInfoSchema = z
  .strictObject({
    format: z.literal(1),
    currentKekId: z.string().min(1),
    checks: z.array(z.strictObject({ kekId: z.string().min(1), check: base64 })),
    rekey: z
      .strictObject({
        fromKekId: z.string().min(1),
        toKekId: z.string().min(1),
        startedAt: z.number().finite(),
      })
      .optional(),
    passphraseSalt: base64.optional(),
    // Further fields (such as a keystore id) are kept as they are.
  })
  .passthrough();

function validateChange(change: NamespaceChange): void {
  if (!change || typeof change !== 'object') throw new InvalidOptionError('change', 'must be an object');
  validateNamespace(change.namespace);
  const parsed = changeSchema.safeParse(change);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidOptionError(`change.${issue.path.join('.')}`, issueText(issue.code));
  }
  const touched = (change.transitions ?? []).map((t) => t.version);
  if (new Set(touched).size !== touched.length) {
    throw new InvalidOptionError('change.transitions', 'may name each version once');
  }
}

function validateKekInfo(field: string, info: KekInfo): void {
  const parsed = kekInfoSchema.safeParse(info);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new InvalidOptionError(
      [field, ...issue.path.map(String)].join('.'),
      `is not a valid KEK record field (${issue.code})`,
    );
  }
}

/** Issue codes only: zod messages could echo values. */
function issueText(code: string): string {
  return `is invalid (${code})`;
}

function validateVersion(field: string, version: number): void {
  if (!Number.isSafeInteger(version) || version < 1) {
    throw new InvalidOptionError(field, 'must be a positive integer');
  }
}

function validateCount(field: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new InvalidOptionError(field, 'must be a non-negative integer');
  }
}

function validateTime(field: string, value: number): void {
  if (!Number.isFinite(value)) throw new InvalidOptionError(field, 'must be a finite number of milliseconds');
}

function validateHolder(holder: string): void {
  if (typeof holder !== 'string' || holder.length === 0 || holder.length > 200) {
    throw new InvalidOptionError('holder', 'must be a non-empty string of at most 200 characters');
  }
}

function validateLeaseName(name: string): void {
  if (!isValidNamespace(name)) {
    throw new InvalidOptionError('name', 'a lease name may hold only letters, digits, ".", "-" and "_"');
  }
}

function validateWrappedKey(m: WrappedKey): void {
  if (
    !m ||
    typeof m !== 'object' ||
    typeof m.kekId !== 'string' ||
    m.kekId === '' ||
    m.alg !== 'A256GCM' ||
    !(m.ciphertext instanceof Uint8Array) ||
    m.ciphertext.length === 0
  ) {
    throw new InvalidOptionError(
      'material',
      'must be a WrappedKey { kekId, alg: "A256GCM", ciphertext: non-empty Uint8Array }',
    );
  }
}
