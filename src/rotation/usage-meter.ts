import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import {
  InvalidOptionError,
  MeterClosedError,
  UsageLimitReachedError,
  UsageReservationError,
} from '../errors.ts';
import type { EncryptionMeter } from '../keyring/encryption-meter.ts';
import { errorSummary } from '../keyring/keyring.ts';
import type { Keystore } from '../keystore/keystore.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { AES_GCM_RANDOM_IV_LIMIT } from './rotation-policy.ts';

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
}

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
  /** The hard limit was reached: no further reservations. */
  exhausted: boolean;
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
 * - Past `hardLimit` reserved encryptions (2^32) a version refuses with `UsageLimitReachedError`.
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
    this.#scheduleFlush();
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
        exhausted: false,
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
      if (e.exhausted) throw new UsageLimitReachedError(e.namespace, e.version);
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
    if (e.lastReserveAt !== undefined) {
      // Local rate since the last reservation; an instant burst (elapsed 0) counts as 1 ms.
      const measured = (e.used + needed - e.usedAtLastReserve) / Math.max(1, now - e.lastReserveAt);
      e.ratePerMs = e.ratePerMs === undefined ? measured : (e.ratePerMs + measured) / 2;
      e.nextBlock = clamp(Math.ceil(e.ratePerMs * this.#targetBlockMs), this.#minBlock, this.#maxBlock);
    }
    const request = Math.max(needed, e.nextBlock);
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
    let granted = request;
    if (this.#hardLimit !== null && record.reserved > this.#hardLimit) {
      // The store counts atomically, so what lay below the limit before our add is ours.
      granted = Math.max(0, Math.min(request, this.#hardLimit - (record.reserved - request)));
      e.exhausted = true;
      this.#logger.error(
        { namespace: e.namespace, version: e.version, reserved: record.reserved, limit: this.#hardLimit },
        'key version reached its hard encryption limit; refusing further encryptions with it (rotate the key)',
      );
    }
    e.reserved += granted;
    e.lastReserveAt = now;
    e.usedAtLastReserve = e.used;
    e.lastError = undefined;
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
