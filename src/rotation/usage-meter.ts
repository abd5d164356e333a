import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  InvalidOptionError,
  KeyBudgetExhaustedError,
  MeterClosedError,
  UsageLimitReachedError,
  UsageReservationError,
} from '../errors.ts';
import type { EncryptionMeter } from '../keyring/encryption-meter.ts';
import { errorSummary } from '../keyring/keyring.ts';
import type { Keystore, UsageRecord } from '../keystore/keystore.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { AES_GCM_RANDOM_IV_LIMIT, DEFAULT_ROTATION_POLICY, type RotationPolicy } from './rotation-policy.ts';
import { projectRotation, type RotationProjection } from './rotation-projection.ts';

export interface UsageMeterOptions {
  keystore: Keystore;
  clock?: Clock;
  logger?: Logger;
  /** Who this process is in `recordUsed`. Default: hostname, pid and 6 random bytes. */
  holder?: string;
  /** A block lasts about this long at the measured local rate. Default 5 s. */
  targetBlockMs?: number;
  /** Smallest block reserved. Default 100. */
  minBlock?: number;
  /** Largest block reserved: bounds the over-count a killed process leaves. Default 1,000,000. */
  maxBlock?: number;
  /**
   * Hard stop: encryptions beyond this reserved count of a version are refused with
   * `UsageLimitReachedError`. Default 2^32 (the NIST limit); `null` turns it off.
   */
  hardLimit?: number | null;
  /** How often exact used counts are written (`recordUsed`). Default 10 s. */
  flushIntervalMs?: number;
  /**
   * Each namespace's rotation policy: its `maxEncryptions` budget, what to do when it is spent
   * (`onBudgetExhausted`), and the lead time of the threshold that wakes the rotator. Default: the
   * built-in policy for every namespace.
   */
  policies?: (namespace: string) => RotationPolicy;
}

/** What a reservation showed: the keystore's counts and the projection from them (every process sees its own). */
export interface ReservationEvent {
  namespace: string;
  version: number;
  reserved: number;
  used: number;
  /** The projection of the version from the record the reservation returned (one projection function). */
  projection: RotationProjection;
  /** Seconds until the budget is projected to run out, or undefined without a rate. */
  secondsUntilLimit: number | undefined;
}

/** Budget events of the meter: the rotator wakes on `threshold`, metrics and logs take the rest. */
export interface UsageMeterListener {
  /** Every reservation, with the projection it implies (feeds usage gauges in every process). */
  reservation?(event: ReservationEvent): void;
  /** A reservation crossed the rotation threshold (budget minus lead time at the measured rate). */
  threshold?(event: ReservationEvent): void;
  /** A reservation reached `maxEncryptions`; `action` is the policy's. Logged as a warning too. */
  budgetExhausted?(event: {
    namespace: string;
    version: number;
    maxEncryptions: number;
    action: 'rotate' | 'refuse';
  }): void;
  /** This process made another version active because a budget was spent. */
  emergencyRotation?(event: {
    namespace: string;
    from: number;
    to: number;
    how: 'promoted' | 'rotated';
  }): void;
}

/** What an emergency rotation did: the active version afterwards, and whether this process made it so. */
export interface EmergencyOutcome {
  active: number | undefined;
  /** `promoted` (a prepublished version), `rotated` (a new immediate version), or undefined (another process did). */
  performed: 'promoted' | 'rotated' | undefined;
}

/**
 * Makes another version active when a version's budget is spent (`onBudgetExhausted: "rotate"`).
 * Wired by `openKeyring` (see budget-guard.ts); without one, a spent budget refuses.
 */
export type BudgetExhaustedHandler = (namespace: string, version: number) => Promise<EmergencyOutcome>;

/** What the meter holds for one key version in this process. */
export interface MeterEntry {
  namespace: string;
  version: number;
  /** Encryptions this process reserved from the keystore. */
  reserved: number;
  /** Encryptions this process accounted for (exact). */
  used: number;
  /** Size of the next block it will reserve. */
  nextBlock: number;
}

interface Entry extends MeterEntry {
  /** The reservation in flight, which every spender waiting on this version shares. */
  inflight: Promise<void> | undefined;
  lastReserveAt: number | undefined;
  usedAtLastReserve: number;
  /** Smoothed local rate, encryptions per ms. */
  ratePerMs: number | undefined;
  /** The hard limit or the budget was reached: no further reservations. */
  exhausted: 'hard' | 'budget' | undefined;
  /** The emergency rotation in flight for a spent budget (shared by every waiting spender). */
  rotating: Promise<EmergencyOutcome> | undefined;
  /** The rotation threshold was announced (once per version and process). */
  thresholdAnnounced: boolean;
  /** Every process's reserved count as the last reservation returned it. */
  storeReserved: number | undefined;
  lastError: unknown;
  flushedUsed: number;
}

/** A unique id for this process: hostname, pid and randomness (pids repeat across hosts and restarts). */
export function defaultHolderId(): string {
  return `${hostname()}:${process.pid}:${randomBytes(6).toString('hex')}`;
}

/**
 * Counts encryptions per key version across every process sharing a keystore, without a keystore
 * round trip per encryption: each process reserves blocks of counts ahead of use
 * (`keystore.reserveUsage`, persisted before it returns) and spends them locally.
 *
 * - The stored reserved count is never below the truth, even after `kill -9`: a count is reserved
 *   before any encryption it covers. The over-count is the unspent part of the last block of each
 *   process (at most `maxBlock` per process and version).
 * - `spend` is synchronous while the local block lasts; when it runs out one reservation is made
 *   per version at a time and concurrent spenders wait on it.
 * - Blocks last about `targetBlockMs` at the local rate, between `minBlock` and `maxBlock`.
 * - If a reservation fails, encryption continues only within what is already reserved, then
 *   fails with `UsageReservationError`.
 * - At a namespace's `maxEncryptions` exactly the budget is granted, never more; then the policy
 *   decides (`onBudgetExhausted`): an emergency rotation (default) or `KeyBudgetExhaustedError`.
 * - Past `hardLimit` reserved encryptions (2^32) a version refuses with `UsageLimitReachedError`.
 * - Each reservation is projected (the rotator's projection function): crossing the rotation
 *   threshold wakes the rotator at once (`on({ threshold })`).
 *
 * Pipeline position: `Keyring.encryptionKey` → `meter.spend` (this) → `Keystore.reserveUsage`.
 */
export class UsageMeter implements EncryptionMeter {
  readonly holder: string;
  readonly #keystore: Keystore;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #targetBlockMs: number;
  readonly #minBlock: number;
  readonly #maxBlock: number;
  readonly #hardLimit: number | null;
  readonly #flushIntervalMs: number;
  readonly #policies: (namespace: string) => RotationPolicy;
  readonly #listeners = new Set<UsageMeterListener>();
  #onBudgetExhausted: BudgetExhaustedHandler | undefined;
  readonly #entries = new Map<string, Entry>();
  #cancelFlush: (() => void) | undefined;
  #flushing: Promise<void> | undefined;
  #closed = false;

  constructor(options: UsageMeterOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    if (!options.keystore) throw new InvalidOptionError('keystore', 'is required');
    const positive = (field: keyof UsageMeterOptions, value: unknown, fallback: number): number => {
      if (value === undefined) return fallback;
      if (typeof value !== 'number' || !Number.isFinite(value) || value <= 0) {
        throw new InvalidOptionError(field, 'must be a positive number');
      }
      return value;
    };
    this.#keystore = options.keystore;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.holder = options.holder ?? defaultHolderId();
    if (typeof this.holder !== 'string' || this.holder.length === 0) {
      throw new InvalidOptionError('holder', 'must be a non-empty string');
    }
    this.#targetBlockMs = positive('targetBlockMs', options.targetBlockMs, 5_000);
    this.#minBlock = Math.ceil(positive('minBlock', options.minBlock, 100));
    this.#maxBlock = Math.floor(positive('maxBlock', options.maxBlock, 1_000_000));
    if (this.#maxBlock < this.#minBlock)
      throw new InvalidOptionError('maxBlock', 'must be at least minBlock');
    this.#hardLimit =
      options.hardLimit === null ? null : positive('hardLimit', options.hardLimit, AES_GCM_RANDOM_IV_LIMIT);
    this.#flushIntervalMs = positive('flushIntervalMs', options.flushIntervalMs, 10_000);
    if (options.policies !== undefined && typeof options.policies !== 'function')
      throw new InvalidOptionError('policies', 'must be a function from namespace to rotation policy');
    this.#policies = options.policies ?? (() => DEFAULT_ROTATION_POLICY);
    this.#scheduleFlush();
  }

  /** Subscribes to budget events; returns the unsubscribe function. */
  on(listener: UsageMeterListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Sets what makes another version active when a budget is spent (see budget-guard.ts). */
  setBudgetExhaustedHandler(handler: BudgetExhaustedHandler | undefined): void {
    this.#onBudgetExhausted = handler;
  }

  spend(namespace: string, version: number, count: number): void | Promise<void> {
    if (this.#closed) throw new MeterClosedError();
    if (!Number.isSafeInteger(count) || count < 0)
      throw new InvalidOptionError('count', 'must be a non-negative integer');
    const e = this.#entry(namespace, version);
    if (e.reserved - e.used >= count) {
      e.used += count;
      return;
    }
    return this.#spendSlow(e, count);
  }

  /** What this process holds per version (for status output and tests). */
  entries(): MeterEntry[] {
    return [...this.#entries.values()].map(({ namespace, version, reserved, used, nextBlock }) => ({
      namespace,
      version,
      reserved,
      used,
      nextBlock,
    }));
  }

  /** Writes exact used counts of every version that changed since the last flush. */
  async flush(): Promise<void> {
    if (this.#flushing) await this.#flushing;
    const dirty = [...this.#entries.values()].filter((e) => e.used !== e.flushedUsed);
    this.#flushing = (async () => {
      for (const e of dirty) {
        const used = e.used;
        try {
          await this.#keystore.recordUsed(e.namespace, e.version, this.holder, used, this.#clock.now());
          e.flushedUsed = used;
        } catch (error) {
          this.#logger.warn(
            { namespace: e.namespace, version: e.version, err: errorSummary(error) },
            'recording used encryptions failed; will retry',
          );
        }
      }
    })();
    try {
      await this.#flushing;
    } finally {
      this.#flushing = undefined;
    }
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#cancelFlush?.();
    await Promise.allSettled([...this.#entries.values()].map((e) => e.inflight));
    await this.flush();
  }

  // --- Internals -----------------------------------------------------------------------------

  #entry(namespace: string, version: number): Entry {
    const key = `${namespace}/${version}`;
    let e = this.#entries.get(key);
    if (!e) {
      e = {
        namespace,
        version,
        reserved: 0,
        used: 0,
        nextBlock: this.#minBlock,
        inflight: undefined,
        lastReserveAt: undefined,
        usedAtLastReserve: 0,
        ratePerMs: undefined,
        exhausted: undefined,
        rotating: undefined,
        thresholdAnnounced: false,
        storeReserved: undefined,
        lastError: undefined,
        flushedUsed: 0,
      };
      this.#entries.set(key, e);
    }
    return e;
  }

  async #spendSlow(e: Entry, count: number): Promise<void> {
    for (;;) {
      if (e.reserved - e.used >= count) {
        e.used += count;
        return;
      }
      if (e.exhausted === 'hard') throw new UsageLimitReachedError(e.namespace, e.version);
      if (e.exhausted === 'budget') throw await this.#budgetSpent(e);
      if (e.inflight) {
        // Share the reservation in flight; if it failed, only what is already reserved is usable.
        try {
          await e.inflight;
        } catch (error) {
          if (e.reserved - e.used >= count) continue;
          throw reservationError(e, error);
        }
        continue;
      }
      const p = this.#reserve(e, count - (e.reserved - e.used));
      e.inflight = p;
      try {
        await p;
      } catch (error) {
        if (e.reserved - e.used >= count) continue;
        throw reservationError(e, error);
      } finally {
        if (e.inflight === p) e.inflight = undefined;
      }
    }
  }

  async #reserve(e: Entry, needed: number): Promise<void> {
    const now = this.#clock.now();
    const policy = this.#policies(e.namespace);
    // Blocks stay small against the budget (at most 1% of it), so that the over-count a process
    // leaves and the share of a budget one process holds stay small too.
    const budgetBlock = Math.max(this.#minBlock, Math.floor(policy.maxEncryptions / 100));
    if (e.lastReserveAt !== undefined) {
      // Local rate since the last reservation; a burst counts as spread over at least 1/50 of a
      // block's time, so that two reservations a millisecond apart do not read as a huge rate.
      const elapsed = Math.max(this.#targetBlockMs / 50, now - e.lastReserveAt);
      const measured = (e.used + needed - e.usedAtLastReserve) / elapsed;
      e.ratePerMs = e.ratePerMs === undefined ? measured : (e.ratePerMs + measured) / 2;
      e.nextBlock = clamp(
        Math.ceil(e.ratePerMs * this.#targetBlockMs),
        this.#minBlock,
        Math.min(this.#maxBlock, budgetBlock),
      );
    }
    // Never ask for more than what was left of the budget at the last reservation (less over-count).
    const left =
      e.storeReserved === undefined ? Number.POSITIVE_INFINITY : policy.maxEncryptions - e.storeReserved;
    const request = Math.max(needed, Math.min(e.nextBlock, Math.max(left, 0)));
    let record: Awaited<ReturnType<Keystore['reserveUsage']>>;
    try {
      record = await this.#keystore.reserveUsage(e.namespace, e.version, request, now);
    } catch (error) {
      e.lastError = error;
      this.#logger.warn(
        { namespace: e.namespace, version: e.version, err: errorSummary(error) },
        'reserving encryptions failed; encrypting only within what is already reserved',
      );
      throw error;
    }
    e.storeReserved = record.reserved;
    // The budget is a promise: what lay below it before our add is ours, the rest is not granted.
    let granted = request;
    const hard = this.#hardLimit ?? Number.POSITIVE_INFINITY;
    const limit = Math.min(policy.maxEncryptions, hard);
    if (record.reserved > limit) {
      granted = Math.max(0, Math.min(request, limit - (record.reserved - request)));
      e.exhausted = limit === hard ? 'hard' : 'budget';
      if (e.exhausted === 'hard') {
        this.#logger.error(
          { namespace: e.namespace, version: e.version, reserved: record.reserved, limit: hard },
          'key version reached its hard encryption limit; refusing further encryptions with it (rotate the key)',
        );
      } else {
        this.#logger.warn(
          {
            namespace: e.namespace,
            version: e.version,
            reserved: record.reserved,
            maxEncryptions: policy.maxEncryptions,
            action: policy.onBudgetExhausted ?? 'rotate',
          },
          policy.onBudgetExhausted === 'refuse'
            ? 'key version spent its encryption budget; refusing further encryptions with it (policy onBudgetExhausted: refuse)'
            : 'key version spent its encryption budget; rotating at once (emergency rotation)',
        );
        for (const l of this.#listeners)
          l.budgetExhausted?.({
            namespace: e.namespace,
            version: e.version,
            maxEncryptions: policy.maxEncryptions,
            action: policy.onBudgetExhausted ?? 'rotate',
          });
      }
    }
    this.#announce(e, record, policy, now);
    e.reserved += granted;
    e.lastReserveAt = now;
    e.usedAtLastReserve = e.used;
    e.lastError = undefined;
  }

  /** Tells listeners what the reservation showed, and wakes the rotator when the threshold is crossed. */
  #announce(e: Entry, record: UsageRecord, policy: RotationPolicy, now: number): void {
    if (this.#listeners.size === 0) return;
    // Age is the rotator's own timer; here only the encryption count matters.
    const projection = projectRotation(
      { state: 'active', createdAt: now },
      record,
      { ...policy, maxAge: null },
      now,
    );
    const event: ReservationEvent = {
      namespace: e.namespace,
      version: e.version,
      reserved: record.reserved,
      used: record.used,
      projection,
      secondsUntilLimit: projection.limitAt === undefined ? undefined : (projection.limitAt - now) / 1000,
    };
    for (const l of this.#listeners) l.reservation?.(event);
    if (projection.due && !e.thresholdAnnounced) {
      e.thresholdAnnounced = true;
      this.#logger.info(
        {
          namespace: e.namespace,
          version: e.version,
          reserved: record.reserved,
          ratePerSecond: projection.rates.projectionPerSecond,
          reason: projection.reason?.text,
        },
        'rotation threshold crossed; waking the rotator',
      );
      for (const l of this.#listeners) l.threshold?.(event);
    }
  }

  /**
   * A spent budget, by the policy: `refuse` fails closed; `rotate` makes another version active
   * once (spenders waiting on this version share the rotation) and tells the keyring to retry.
   */
  async #budgetSpent(e: Entry): Promise<KeyBudgetExhaustedError> {
    const policy = this.#policies(e.namespace);
    const handler = this.#onBudgetExhausted;
    if (policy.onBudgetExhausted === 'refuse' || !handler) {
      return new KeyBudgetExhaustedError(e.namespace, e.version, policy.maxEncryptions);
    }
    if (!e.rotating) {
      e.rotating = handler(e.namespace, e.version);
      e.rotating.then(
        (outcome) => {
          if (!outcome.performed || outcome.active === undefined) return;
          const event = {
            namespace: e.namespace,
            from: e.version,
            to: outcome.active,
            how: outcome.performed,
          };
          for (const l of this.#listeners) l.emergencyRotation?.(event);
        },
        () => {
          e.rotating = undefined; // a failed rotation is tried again by the next spender
        },
      );
    }
    let outcome: EmergencyOutcome;
    try {
      outcome = await e.rotating;
    } catch (error) {
      this.#logger.error(
        { namespace: e.namespace, version: e.version, err: errorSummary(error) },
        'emergency rotation failed; refusing encryptions with the spent version',
      );
      return new KeyBudgetExhaustedError(e.namespace, e.version, policy.maxEncryptions);
    }
    const rotated = outcome.active !== undefined && outcome.active !== e.version;
    return new KeyBudgetExhaustedError(e.namespace, e.version, policy.maxEncryptions, rotated);
  }

  #scheduleFlush(): void {
    this.#cancelFlush = this.#clock.setTimer(this.#flushIntervalMs, () => {
      if (this.#closed) return;
      this.flush().finally(() => {
        if (!this.#closed) this.#scheduleFlush();
      });
    });
  }
}

function clamp(value: number, min: number, max: number): number {
  return Math.min(max, Math.max(min, value));
}

function reservationError(e: Entry, cause: unknown): UsageReservationError {
  return new UsageReservationError(
    `could not reserve encryptions for key version ${e.version} of namespace "${e.namespace}" (keystore unreachable?) and the reserved block is spent; encryption resumes when the keystore answers`,
    { cause },
  );
}
