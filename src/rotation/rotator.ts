import { InvalidOptionError, PropagationPendingError } from '../errors.ts';
import { errorSummary, type Keyring } from '../keyring/keyring.ts';
import type { Keystore } from '../keystore/keystore.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import type { RotationPolicy } from './rotation-policy.ts';
import { projectRotation, type RotationProjection, type RotationReasonKind } from './rotation-projection.ts';
import { defaultHolderId } from './usage-meter.ts';

/** Name of the keystore lease that makes one rotator act per keystore. */
export const ROTATOR_LEASE = 'rotator';

/**
 * Telemetry hook of the rotator. The codec server maps it to prom-client; it receives counts and
 * rates only, never anything secret.
 */
export interface RotatorMetrics {
  /** A rotation was started (`prepublish`) or completed (`promote`). */
  rotation(event: {
    namespace: string;
    phase: 'prepublish' | 'promote';
    reason: RotationReasonKind | 'propagated';
  }): void;
  /** Measured state of a namespace's active version, once per check. */
  usage(sample: {
    namespace: string;
    version: number;
    reserved: number;
    used: number;
    /** Projection rate (encryptions per second), or undefined before enough reservations. */
    ratePerSecond: number | undefined;
    /** Seconds until the budget is projected to run out, or undefined without a rate. */
    secondsUntilLimit: number | undefined;
  }): void;
}

export interface RotatorOptions {
  keyring: Keyring;
  keystore: Keystore;
  /** The policy of each namespace (see `resolvePolicy`). */
  policies: (namespace: string) => RotationPolicy;
  clock?: Clock;
  logger?: Logger;
  metrics?: RotatorMetrics;
  /** How often to check. Default 60 s. */
  checkIntervalMs?: number;
  /** Lease time-to-live; must exceed the check interval. Default 3 × checkIntervalMs. */
  leaseTtlMs?: number;
  /** Lease holder id. Default: hostname, pid, random. */
  holder?: string;
  /** Namespaces to look after. Default: every namespace in the keystore. */
  namespaces?: () => Promise<string[]> | string[];
}

/** What one check did for one namespace. */
export interface RotatorAction {
  namespace: string;
  action: 'prepublished' | 'promoted' | 'waiting-for-propagation' | 'none' | 'disabled' | 'failed';
  version?: number;
  reason?: string;
  projection?: RotationProjection;
}

export interface RotatorRun {
  /** False when another rotator holds the lease: this one did nothing. */
  leader: boolean;
  actions: RotatorAction[];
}

/**
 * Rotates keys from measured usage, in two phases, once per keystore: every check interval it
 * takes the `rotator` lease, and for each namespace
 * 1. promotes a prepublished version once it has been published for `propagationDelay` (every
 *    process has refreshed and can decrypt it before anyone encrypts with it);
 * 2. otherwise, when the projection says so (budget within lead time, max age, budget spent),
 *    publishes a new version (`prepublish`, conditional on the active version, so concurrent
 *    rotators rotate once).
 *
 * Runs inside the codec server and as `temporal-keyring rotator`. `runOnce` is the whole check.
 */
export class Rotator {
  readonly holder: string;
  readonly #keyring: Keyring;
  readonly #keystore: Keystore;
  readonly #policies: (namespace: string) => RotationPolicy;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #metrics: RotatorMetrics | undefined;
  readonly #intervalMs: number;
  readonly #leaseTtlMs: number;
  readonly #namespaces: () => Promise<string[]> | string[];
  #cancel: (() => void) | undefined;
  #running: Promise<unknown> | undefined;
  #started = false;

  constructor(options: RotatorOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    if (!options.keyring) throw new InvalidOptionError('keyring', 'is required');
    if (!options.keystore) throw new InvalidOptionError('keystore', 'is required');
    if (typeof options.policies !== 'function')
      throw new InvalidOptionError('policies', 'must be a function');
    const interval = options.checkIntervalMs ?? 60_000;
    if (!Number.isFinite(interval) || interval <= 0) {
      throw new InvalidOptionError('checkIntervalMs', 'must be a positive number of milliseconds');
    }
    const ttl = options.leaseTtlMs ?? 3 * interval;
    if (!Number.isFinite(ttl) || ttl <= interval) {
      throw new InvalidOptionError('leaseTtlMs', `must be longer than checkIntervalMs (${interval})`);
    }
    this.#keyring = options.keyring;
    this.#keystore = options.keystore;
    this.#policies = options.policies;
    this.#clock = options.clock ?? systemClock;
    this.#logger = options.logger ?? silentLogger;
    this.#metrics = options.metrics;
    this.#intervalMs = interval;
    this.#leaseTtlMs = ttl;
    this.holder = options.holder ?? defaultHolderId();
    this.#namespaces = options.namespaces ?? (() => this.#keystore.listNamespaces());
  }

  /** Checks now, then every interval, until {@link stop}. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    const tick = () => {
      if (!this.#started) return;
      const run = this.runOnce()
        .catch((error: unknown) => this.#logger.error({ err: errorSummary(error) }, 'rotator check failed'))
        .finally(() => {
          if (this.#running === run) this.#running = undefined;
          if (this.#started) this.#cancel = this.#clock.setTimer(this.#intervalMs, tick);
        });
      this.#running = run;
    };
    tick();
  }

  /** Stops checking, waits for a check in progress, and gives up the lease. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#cancel?.();
    await this.#running;
    await this.#keystore.releaseLease(ROTATOR_LEASE, this.holder).catch(() => {});
  }

  /** Resolves once no check is in progress (for tests driving a manual clock). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  /** One check of every namespace. Does nothing unless this rotator holds (or takes) the lease. */
  async runOnce(): Promise<RotatorRun> {
    const now = this.#clock.now();
    if (!(await this.#keystore.tryAcquireLease(ROTATOR_LEASE, this.holder, this.#leaseTtlMs, now))) {
      return { leader: false, actions: [] };
    }
    const actions: RotatorAction[] = [];
    for (const namespace of await this.#namespaces()) {
      try {
        actions.push(await this.#check(namespace));
      } catch (error) {
        this.#logger.error({ namespace, err: errorSummary(error) }, 'rotator check of namespace failed');
        actions.push({ namespace, action: 'failed', reason: errorSummary(error).message });
      }
    }
    return { leader: true, actions };
  }

  async #check(namespace: string): Promise<RotatorAction> {
    const policy = this.#policies(namespace);
    const now = this.#clock.now();
    const versions = await this.#keyring.versions(namespace);
    const active = versions.find((v) => v.state === 'active');
    if (!active) return { namespace, action: 'none', reason: 'no active version' };
    const usage = await this.#keystore.getUsage(namespace, active.version);
    const projection = projectRotation(active, usage, policy, now);
    const rate = projection.rates.projectionPerSecond;
    this.#metrics?.usage({
      namespace,
      version: active.version,
      reserved: usage.reserved,
      used: usage.used,
      ratePerSecond: rate,
      secondsUntilLimit: projection.limitAt === undefined ? undefined : (projection.limitAt - now) / 1000,
    });
    if (!policy.enabled) return { namespace, action: 'disabled', version: active.version, projection };

    const pending = versions.find((v) => v.state === 'prepublished');
    if (pending) {
      // The lifecycle owner decides whether the propagation delay has passed.
      try {
        const result = await this.#keyring.manager.promote(namespace, pending.version);
        if (!result.performed) return { namespace, action: 'none', version: pending.version, projection };
      } catch (error) {
        if (error instanceof PropagationPendingError) {
          return { namespace, action: 'waiting-for-propagation', version: pending.version, projection };
        }
        throw error;
      }
      this.#logger.info(
        { namespace, from: active.version, to: pending.version, reason: 'propagated' },
        'rotation: new key version active',
      );
      this.#metrics?.rotation({ namespace, phase: 'promote', reason: 'propagated' });
      return { namespace, action: 'promoted', version: pending.version, reason: 'propagated', projection };
    }

    if (!projection.due || !projection.reason)
      return { namespace, action: 'none', version: active.version, projection };
    const result = await this.#keyring.manager.rotate(namespace, {
      mode: 'prepublish',
      expectedActiveVersion: active.version,
    });
    if (!result.performed) return { namespace, action: 'none', version: result.current.version, projection };
    this.#logger.info(
      {
        namespace,
        from: active.version,
        to: result.current.version,
        reason: projection.reason.kind,
        reserved: usage.reserved,
        ratePerSecond: rate,
      },
      `rotation: new key version published (${projection.reason.text})`,
    );
    this.#metrics?.rotation({ namespace, phase: 'prepublish', reason: projection.reason.kind });
    return {
      namespace,
      action: 'prepublished',
      version: result.current.version,
      reason: projection.reason.text,
      projection,
    };
  }
}
