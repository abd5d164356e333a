import { promises as fsp } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { z } from 'zod';
import {
  InvalidOptionError,
  KeyringError,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeystoreUnavailableError,
} from '../errors.ts';
import { applyChange, type KeyVersion, keyIdOf, type NamespaceChange } from '../model/key-version.ts';
import { isValidNamespace } from '../model/namespace.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import {
  ensureDir,
  type FaultHook,
  isNotFound,
  readFileIfExists,
  removeFileDurable,
  TEMP_PREFIX,
  writeFileAtomic,
} from './atomic-file.ts';
import { FileChangeWatcher } from './file-change-watcher.ts';
import { FileLock } from './file-lock.ts';
import {
  type CommitGuard,
  type KekInfo,
  type Keystore,
  type KeystoreEvent,
  sameKekInfo,
  trimSamples,
  type UsageRecord,
  type WrappedKey,
} from './keystore.ts';
import { KEYSTORE_ID_PATTERN } from './keystore-id.ts';

export interface FileKeystoreOptions {
  /** The data directory. Created (0700) if missing; must be empty or hold a keystore. */
  dir: string;
  /** Longest wait for the cross-process lock before `LockTimeoutError`. Default 10 s. */
  lockTimeoutMs?: number;
  /**
   * A lock whose holder stopped refreshing it this long ago is taken over. Holders that died on
   * this host are detected at once by pid; this bounds recovery from a holder on another host
   * sharing the directory. Default 5 s.
   */
  lockStaleMs?: number;
  clock?: Clock;
  logger?: Logger;
  /**
   * How often `subscribe` polls for commits of other processes (see file-change-watcher.ts), in ms.
   * Default 200 ms: a promotion reaches every process sharing the directory within that.
   */
  watchIntervalMs?: number;
  /**
   * Called after each step of every durable write; throwing stops the write there, as a crash
   * would. For crash-safety tests only.
   * @internal
   */
  faults?: FaultHook;
}

/** What `check()` found in a store that validated completely. */
export interface FileKeystoreCheck {
  namespaces: number;
  versions: number;
  materials: number;
}

const MARKER = 'keystore.json';
const MARKER_FORMAT = 'temporal-keyring/file-keystore';
const FORMAT_VERSION = 1;
const LOCK = 'lock';
const KEK = 'kek.json';

const base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/);
const millis = z.number().finite();
const markerSchema = z.object({
  format: z.literal(MARKER_FORMAT),
  version: z.number().int(),
  createdAt: millis,
});
const keyVersionSchema = z.strictObject({
  namespace: z.string(),
  version: z.number().int().positive(),
  keyId: z.string(),
  state: z.enum(['prepublished', 'active', 'inactive', 'deprecated', 'destroyed']),
  createdAt: millis,
  activatedAt: millis.optional(),
  deactivatedAt: millis.optional(),
  deprecatedAt: millis.optional(),
  destroyedAt: millis.optional(),
});
const versionsSchema = z.strictObject({
  format: z.literal(1),
  namespace: z.string(),
  versions: z.array(keyVersionSchema),
});
const materialSchema = z.strictObject({
  format: z.literal(1),
  kekId: z.string().min(1),
  alg: z.literal('A256GCM'),
  ciphertext: base64,
});
const kekInfoSchema = z.strictObject({
  format: z.literal(1),
  currentKekId: z.string().min(1),
  checks: z.array(z.strictObject({ kekId: z.string().min(1), check: base64 })),
  rekey: z.strictObject({ fromKekId: z.string(), toKekId: z.string(), startedAt: millis }).optional(),
  passphraseSalt: base64.optional(),
  exportableNamespaces: z
    .array(z.strictObject({ namespace: z.string().min(1), markedAt: millis }))
    .optional(),
  keystoreId: z.string().regex(KEYSTORE_ID_PATTERN).optional(),
  shamir: z
    .array(
      z.strictObject({
        kekId: z.string().min(1),
        threshold: z.number().int().min(2).max(255),
        shares: z.number().int().min(2).max(255),
      }),
    )
    .optional(),
  upgrades: z
    .array(
      z.strictObject({
        fromKekId: z.string().min(1),
        toKekId: z.string().min(1),
        wrapped: base64,
        until: millis.optional(),
      }),
    )
    .optional(),
});
const count = z.number().int().nonnegative();
const usageSchema = z.strictObject({
  format: z.literal(1),
  reserved: count,
  used: z.array(z.strictObject({ holder: z.string(), used: count })),
  samples: z.array(z.strictObject({ at: millis, reserved: count })),
});
const leaseSchema = z.strictObject({ format: z.literal(1), holder: z.string(), until: millis });

/**
 * The embedded, default {@link Keystore}: a data directory of small JSON files, safe to share
 * between processes on one machine (or on a file system with working `link`/`rename`).
 *
 * Layout (names come only from integers and from namespaces that `ValidatingKeystore`, in front of
 * every backend, checked against the allow-list):
 * ```
 * keystore.json                         format marker
 * kek.json                              KekInfo (KEK check values, rekey in progress, salt)
 * namespaces/<ns>/versions.json         every KeyVersion of the namespace (the commit point)
 * namespaces/<ns>/material/v<N>.json    WrappedKey of version N (base64)
 * usage/<ns>/v<N>.json                  reservations, per-holder used counts, samples
 * leases/<name>.json                    named leases (the rotator's)
 * lock                                  the cross-process lock, while held
 * ```
 * Every write is atomic and durable (see atomic-file.ts) and every read-modify-write runs under
 * the cross-process lock (see file-lock.ts), including a commit's guard on the KEK record.
 * Arguments are trusted: the `ValidatingKeystore` in front checks them. New material is written before the metadata that
 * makes it visible; destroyed material is erased after the metadata says so. Every read is
 * validated: a damaged file raises `KeystoreCorruptError` naming it and is never repaired.
 */
export class FileKeystore implements Keystore {
  readonly kind = 'file';
  /** Absolute path of the data directory. */
  readonly dir: string;
  readonly #lock: FileLock;
  readonly #logger: Logger;
  readonly #faults: FaultHook | undefined;
  readonly #watcher: FileChangeWatcher;
  #closed = false;

  private constructor(dir: string, options: FileKeystoreOptions) {
    this.dir = dir;
    this.#lock = new FileLock(join(dir, LOCK), {
      timeoutMs: options.lockTimeoutMs ?? 10_000,
      staleMs: options.lockStaleMs ?? 5_000,
    });
    this.#logger = options.logger ?? silentLogger;
    this.#faults = options.faults;
    this.#watcher = new FileChangeWatcher(dir, options.clock ?? systemClock, options.watchIntervalMs);
  }

  /** Announces commits made by any process (a cheap stat poll, see file-change-watcher.ts). */
  subscribe(listener: (event: KeystoreEvent) => void): () => void {
    return this.#watcher.subscribe(listener);
  }

  /**
   * Opens (creating if needed) the keystore in `dir`. Opening an existing store writes nothing,
   * except to finish a destroy that a crash interrupted (erasing material of destroyed versions).
   */
  static async open(options: FileKeystoreOptions): Promise<FileKeystore> {
    validateOptions(options);
    const dir = resolve(options.dir);
    const store = new FileKeystore(dir, options);
    try {
      await ensureDir(dir);
    } catch (cause) {
      throw new KeystoreUnavailableError(`cannot create the keystore directory ${dir}`, { cause });
    }
    if (!(await store.#readMarker())) {
      await store.#lock.withLock(async () => {
        if (await store.#readMarker()) return;
        // Our own leftovers, and the lost+found of a volume mounted at the directory, do not count.
        const entries = (await fsp.readdir(dir)).filter(
          (e) => e !== LOCK && e !== 'lost+found' && !e.startsWith(TEMP_PREFIX) && !e.startsWith(`${LOCK}.`),
        );
        if (entries.length > 0) {
          throw new InvalidOptionError('dir', `${dir} is not empty and holds no temporal-keyring keystore`);
        }
        const clock = options.clock ?? systemClock;
        await store.#write(MARKER, {
          format: MARKER_FORMAT,
          version: FORMAT_VERSION,
          createdAt: clock.now(),
        });
      });
    }
    await store.#sweep();
    return store;
  }

  // --- Key metadata and material -------------------------------------------------------------

  async listNamespaces(): Promise<string[]> {
    this.#assertOpen();
    const names = await this.#readdir('namespaces');
    const found: string[] = [];
    for (const name of names.filter(isValidNamespace)) {
      if ((await this.#readVersions(name)).length > 0) found.push(name);
    }
    return found.sort();
  }

  async getVersions(namespace: string): Promise<KeyVersion[]> {
    this.#assertOpen();
    return this.#readVersions(namespace);
  }

  async commit(change: NamespaceChange, material?: WrappedKey, guard?: CommitGuard): Promise<KeyVersion[]> {
    this.#assertOpen();
    const namespace = change.namespace;
    return this.#lock.withLock(async () => {
      const next = applyChange(await this.#readVersions(namespace), change);
      if (guard && !sameKekInfo(await this.#read(KEK, kekInfoSchema), guard.kekInfo)) {
        throw new KeystoreConflictError('the KEK record changed meanwhile');
      }
      // The material goes first: until versions.json names the version, the file is invisible.
      if (change.add && material)
        await this.#write(materialFile(namespace, change.add.version), encodeMaterial(material));
      await this.#write(versionsFile(namespace), { format: 1, namespace, versions: next });
      await this.#eraseDestroyedMaterial(namespace, next);
      return next;
    });
  }

  async getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined> {
    this.#assertOpen();
    const v = (await this.#readVersions(namespace)).find((x) => x.version === version);
    if (!v || v.state === 'destroyed') return undefined; // orphans of crashed commits stay invisible
    const stored = await this.#read(materialFile(namespace, version), materialSchema);
    return stored && decodeMaterial(stored);
  }

  async rewrapMaterial(
    namespace: string,
    version: number,
    material: WrappedKey,
    expectedKekId: string,
  ): Promise<void> {
    this.#assertOpen();
    await this.#lock.withLock(async () => {
      const v = (await this.#readVersions(namespace)).find((x) => x.version === version);
      const file = materialFile(namespace, version);
      const current = v && v.state !== 'destroyed' ? await this.#read(file, materialSchema) : undefined;
      if (!current || current.kekId !== expectedKekId) {
        throw new KeystoreConflictError(`${namespace}/v${version} is not wrapped with KEK ${expectedKekId}`);
      }
      await this.#write(file, encodeMaterial(material));
    });
  }

  // --- KEK record ----------------------------------------------------------------------------

  async getKekInfo(): Promise<KekInfo | undefined> {
    this.#assertOpen();
    return this.#read(KEK, kekInfoSchema);
  }

  async putKekInfo(info: KekInfo, expected: KekInfo | undefined): Promise<void> {
    this.#assertOpen();
    await this.#lock.withLock(async () => {
      const current = await this.#read(KEK, kekInfoSchema);
      if (!sameKekInfo(current, expected)) {
        throw new KeystoreConflictError('the KEK record changed meanwhile');
      }
      await this.#write(KEK, plain(info));
    });
  }

  // --- Usage ---------------------------------------------------------------------------------

  async reserveUsage(namespace: string, version: number, count: number, at: number): Promise<UsageRecord> {
    this.#assertOpen();
    return this.#lock.withLock(async () => {
      const file = usageFile(namespace, version);
      const u = (await this.#read(file, usageSchema)) ?? emptyUsage();
      u.reserved += count;
      u.samples = trimSamples([...u.samples, { at, reserved: u.reserved }], at);
      await this.#write(file, u); // fsynced before we return: the count survives kill -9
      return toRecord(u);
    });
  }

  async recordUsed(
    namespace: string,
    version: number,
    holder: string,
    used: number,
    _at: number,
  ): Promise<void> {
    this.#assertOpen();
    await this.#lock.withLock(async () => {
      const file = usageFile(namespace, version);
      const u = (await this.#read(file, usageSchema)) ?? emptyUsage();
      const entry = u.used.find((e) => e.holder === holder);
      if (entry && entry.used >= used) return;
      if (entry) entry.used = used;
      else u.used.push({ holder, used });
      await this.#write(file, u);
    });
  }

  async getUsage(namespace: string, version: number): Promise<UsageRecord> {
    this.#assertOpen();
    return toRecord((await this.#read(usageFile(namespace, version), usageSchema)) ?? emptyUsage());
  }

  // --- Leases --------------------------------------------------------------------------------

  async tryAcquireLease(name: string, holder: string, ttlMs: number, now: number): Promise<boolean> {
    this.#assertOpen();
    return this.#lock.withLock(async () => {
      const file = leaseFile(name);
      const lease = await this.#read(file, leaseSchema);
      if (lease && lease.holder !== holder && lease.until > now) return false;
      await this.#write(file, { format: 1, holder, until: now + ttlMs });
      return true;
    });
  }

  async releaseLease(name: string, holder: string): Promise<void> {
    this.#assertOpen();
    await this.#lock.withLock(async () => {
      const file = leaseFile(name);
      if ((await this.#read(file, leaseSchema))?.holder === holder)
        await removeFileDurable(this.#abs(file), this.#faults);
    });
  }

  // --- Health --------------------------------------------------------------------------------

  async ping(): Promise<void> {
    this.#assertOpen();
    try {
      await fsp.access(join(this.dir, MARKER), fsp.constants.R_OK | fsp.constants.W_OK);
    } catch (cause) {
      throw new KeystoreUnavailableError(`the keystore directory ${this.dir} is not accessible`, { cause });
    }
  }

  /**
   * Reads and validates every file of the store (marker, KEK record, all metadata, material,
   * usage and leases), throwing `KeystoreCorruptError` naming the first damaged file. Writes nothing.
   */
  async check(): Promise<FileKeystoreCheck> {
    this.#assertOpen();
    await this.#readMarker();
    await this.getKekInfo();
    const result: FileKeystoreCheck = { namespaces: 0, versions: 0, materials: 0 };
    for (const ns of await this.listNamespaces()) {
      result.namespaces++;
      for (const v of await this.#readVersions(ns)) {
        result.versions++;
        if (v.state === 'destroyed') continue;
        if (!(await this.#read(materialFile(ns, v.version), materialSchema))) {
          throw new KeystoreCorruptError(`${materialFile(ns, v.version)} is missing in keystore ${this.dir}`);
        }
        result.materials++;
      }
    }
    for (const ns of (await this.#readdir('usage')).filter(isValidNamespace)) {
      for (const f of await this.#readdir(join('usage', ns))) {
        if (/^v[1-9][0-9]*\.json$/.test(f)) await this.#read(join('usage', ns, f), usageSchema);
      }
    }
    for (const f of await this.#readdir('leases')) {
      if (f.endsWith('.json') && !f.startsWith('.')) await this.#read(join('leases', f), leaseSchema);
    }
    return result;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#watcher.stop();
  }

  // --- Internals -----------------------------------------------------------------------------

  #assertOpen(): void {
    if (this.#closed) throw new KeystoreUnavailableError('the file keystore is closed');
  }

  #abs(rel: string): string {
    return join(this.dir, rel);
  }

  async #readMarker(): Promise<boolean> {
    const marker = await this.#read(MARKER, markerSchema);
    if (!marker) return false;
    if (marker.version !== FORMAT_VERSION) {
      throw new KeystoreUnavailableError(
        `keystore ${this.dir} has format version ${marker.version}; this temporal-keyring reads version ${FORMAT_VERSION}`,
      );
    }
    return true;
  }

  async #readVersions(namespace: string): Promise<KeyVersion[]> {
    const rel = versionsFile(namespace);
    const stored = await this.#read(rel, versionsSchema);
    if (!stored) return [];
    const problem = checkVersions(namespace, stored.namespace, stored.versions);
    if (problem) throw this.#corrupt(rel, problem);
    return stored.versions;
  }

  /** Reads and validates one file; `undefined` if it does not exist. */
  async #read<T>(rel: string, schema: z.ZodType<T>): Promise<T | undefined> {
    let data: Buffer | undefined;
    try {
      data = await readFileIfExists(this.#abs(rel));
    } catch (cause) {
      throw new KeystoreUnavailableError(`cannot read ${rel} in keystore ${this.dir}`, { cause });
    }
    if (data === undefined) return undefined;
    let json: unknown;
    try {
      json = JSON.parse(data.toString('utf8'));
    } catch {
      throw this.#corrupt(rel, 'not valid JSON (truncated or overwritten?)');
    }
    const parsed = schema.safeParse(json);
    if (!parsed.success) throw this.#corrupt(rel, describeIssues(parsed.error));
    return parsed.data;
  }

  #corrupt(rel: string, why: string): KeystoreCorruptError {
    // Names the file and the shape problem only: never the contents.
    return new KeystoreCorruptError(
      `keystore file ${rel} in ${this.dir} is corrupt: ${why}. It was left as it is; restore it from a backup`,
    );
  }

  async #write(rel: string, value: unknown): Promise<void> {
    const file = this.#abs(rel);
    try {
      await ensureDir(dirname(file));
      await writeFileAtomic(file, `${JSON.stringify(value, null, 2)}\n`, this.#faults);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // File system failures (ENOSPC, EACCES, EROFS, ...) are the store being unavailable.
      if (typeof code !== 'string' || error instanceof KeyringError) throw error;
      throw new KeystoreUnavailableError(`cannot write ${rel} in keystore ${this.dir} (${code})`, {
        cause: error,
      });
    }
  }

  async #readdir(rel: string): Promise<string[]> {
    try {
      return await fsp.readdir(this.#abs(rel));
    } catch (error) {
      if (isNotFound(error)) return [];
      throw new KeystoreUnavailableError(`cannot list ${rel} in keystore ${this.dir}`, { cause: error });
    }
  }

  async #eraseDestroyedMaterial(namespace: string, versions: readonly KeyVersion[]): Promise<number> {
    let erased = 0;
    for (const v of versions) {
      if (
        v.state === 'destroyed' &&
        (await removeFileDurable(this.#abs(materialFile(namespace, v.version)), this.#faults))
      ) {
        erased++;
      }
    }
    return erased;
  }

  /**
   * Finishes what crashed writers left: material of versions already marked destroyed, and temp
   * files. Only when there is something to do, and only if the lock is free right now: opening
   * an existing store otherwise writes nothing.
   */
  async #sweep(): Promise<void> {
    const pending = await this.#pendingCleanup();
    if (pending.temps.length === 0 && pending.destroyed.length === 0) return;
    await this.#lock.tryWithLock(async () => {
      const again = await this.#pendingCleanup();
      let erased = 0;
      for (const ns of again.destroyed)
        erased += await this.#eraseDestroyedMaterial(ns, await this.#readVersions(ns));
      for (const t of again.temps) await fsp.unlink(this.#abs(t)).catch(() => {});
      this.#logger.info(
        { dir: this.dir, erased, temps: again.temps.length },
        'file keystore: finished interrupted writes',
      );
    });
  }

  async #pendingCleanup(): Promise<{ temps: string[]; destroyed: string[] }> {
    const temps: string[] = [];
    const destroyed: string[] = [];
    const isTemp = (name: string) =>
      // Lock and breaker temp files (`.tmp-lock-*`, `.tmp-lock.break-*`) belong to live lockers.
      name.startsWith(TEMP_PREFIX) && !name.startsWith(`${TEMP_PREFIX}${LOCK}`);
    const collect = async (rel: string) => {
      for (const name of await this.#readdir(rel))
        if (isTemp(name) || name.startsWith(`${LOCK}.stale-`)) temps.push(join(rel, name));
    };
    await collect('.');
    await collect('leases');
    for (const ns of (await this.#readdir('usage')).filter(isValidNamespace))
      await collect(join('usage', ns));
    for (const ns of (await this.#readdir('namespaces')).filter(isValidNamespace)) {
      await collect(join('namespaces', ns));
      await collect(join('namespaces', ns, 'material'));
      let versions: KeyVersion[];
      try {
        versions = await this.#readVersions(ns);
      } catch {
        continue; // a damaged namespace is reported when it is used, and left alone
      }
      const materials = new Set(await this.#readdir(join('namespaces', ns, 'material')));
      if (versions.some((v) => v.state === 'destroyed' && materials.has(`v${v.version}.json`)))
        destroyed.push(ns);
    }
    return { temps, destroyed };
  }
}

// --- Paths (validated names and integers only) -----------------------------------------------

function versionsFile(namespace: string): string {
  return join('namespaces', namespace, 'versions.json');
}
function materialFile(namespace: string, version: number): string {
  return join('namespaces', namespace, 'material', `v${version}.json`);
}
function usageFile(namespace: string, version: number): string {
  return join('usage', namespace, `v${version}.json`);
}
function leaseFile(name: string): string {
  return join('leases', `${name}.json`);
}

// --- Encoding and checks ---------------------------------------------------------------------

type StoredUsage = z.infer<typeof usageSchema>;

function emptyUsage(): StoredUsage {
  return { format: 1, reserved: 0, used: [], samples: [] };
}

function toRecord(u: StoredUsage): UsageRecord {
  return { reserved: u.reserved, used: u.used.reduce((a, e) => a + e.used, 0), samples: u.samples };
}

function encodeMaterial(m: WrappedKey) {
  return { format: 1, kekId: m.kekId, alg: m.alg, ciphertext: Buffer.from(m.ciphertext).toString('base64') };
}

function decodeMaterial(m: z.infer<typeof materialSchema>): WrappedKey {
  return { kekId: m.kekId, alg: m.alg, ciphertext: new Uint8Array(Buffer.from(m.ciphertext, 'base64')) };
}

/** Invariants a versions file must meet beyond its shape; a message, or undefined when it is sound. */
function checkVersions(
  namespace: string,
  stored: string,
  versions: readonly KeyVersion[],
): string | undefined {
  if (stored !== namespace) return 'it names another namespace';
  for (const [i, v] of versions.entries()) {
    if (v.version !== i + 1) return 'versions are not numbered 1, 2, 3, ...';
    if (v.namespace !== namespace || v.keyId !== keyIdOf(namespace, v.version)) {
      return `version ${v.version} names another namespace or key id`;
    }
  }
  const active = versions.filter((v) => v.state === 'active').length;
  if (versions.length > 0 && active !== 1) return `it has ${active} active versions`;
  return undefined;
}

function describeIssues(error: z.ZodError): string {
  // Paths and issue codes only: zod messages could echo values.
  return error.issues
    .slice(0, 3)
    .map((i) => `${i.path.length ? i.path.join('.') : '(root)'}: ${i.code}`)
    .join('; ');
}

/** A JSON-shaped copy (drops undefined fields), for key-order-independent comparison. */
function plain(value: unknown): unknown {
  return value === undefined ? undefined : JSON.parse(JSON.stringify(value));
}

// --- Option validation -----------------------------------------------------------------------

function validateOptions(options: FileKeystoreOptions): void {
  if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
  if (typeof options.dir !== 'string' || options.dir.trim() === '') {
    throw new InvalidOptionError('dir', 'must be a non-empty path');
  }
  if (options.dir.includes('\0')) throw new InvalidOptionError('dir', 'must not contain NUL');
  for (const field of ['lockTimeoutMs', 'lockStaleMs', 'watchIntervalMs'] as const) {
    const value = options[field];
    if (value !== undefined && !(Number.isFinite(value) && value >= 0)) {
      throw new InvalidOptionError(field, 'must be a non-negative number of milliseconds');
    }
  }
  if (options.lockStaleMs !== undefined && options.lockStaleMs < 100) {
    throw new InvalidOptionError('lockStaleMs', 'must be at least 100 ms');
  }
}
