import { InvalidOptionError, KeystoreConflictError, PropagationPendingError } from '../errors.ts';
import { errorSummary, type Keyring } from '../keyring/keyring.ts';
import type { Keystore } from '../keystore/keystore.ts';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { emergencyRotation } from './budget-guard.ts';
import { DEFAULT_CHECK_INTERVAL_MS, type RotationPolicy } from './rotation-policy.ts';
import {
  type NextRotationStep,
  planNamespace,
  type RotationProjection,
  type RotationReasonKind,
} from './rotation-projection.ts';
import { defaultHolderId, type UsageMeter } from './usage-meter.ts';

/** Name of the keystore lease that makes one rotator act per keystore. */
export const ROTATOR_LEASE = 'rotator';

/**
 * Telemetry hook of the rotator. The codec server maps it to prom-client; it receives counts and
 * rates only, never anything secret.
 */
export interface RotatorMetrics {
  /** A rotation was started (`prepublish`), completed (`promote`), or forced by a spent budget (`emergency`). */
  rotation(event: {
    namespace: string;
    phase: 'prepublish' | 'promote' | 'emergency';
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
  /** Backstop: longest time between two checks (reservations and timers wake it sooner). Default 60 s. */
  checkIntervalMs?: number;
  /** Lease time-to-live; must exceed the check interval. Default 3 × checkIntervalMs. */
  leaseTtlMs?: number;
  /** Lease holder id. Default: hostname, pid, random. */
  holder?: string;
  /** Namespaces to look after. Default: every namespace in the keystore. */
  namespaces?: () => Promise<string[]> | string[];
  /**
   * The process's usage meter: a reservation that crosses a rotation threshold wakes the rotator
   * at once, instead of at the next periodic check.
   */
  meter?: Pick<UsageMeter, 'on'>;
  /**
   * False: only observe (report usage metrics, never take the lease or rotate), for a server
   * started with `--no-rotator` that still exports the usage gauges. Default true.
   */
  act?: boolean;
}

/** What one check did for one namespace. */
export interface RotatorAction {
  namespace: string;
  action:
    | 'prepublished'
    | 'promoted'
    | 'emergency-rotated'
    | 'waiting-for-propagation'
    | 'none'
    | 'disabled'
    | 'failed';
  version?: number;
  reason?: string;
  projection?: RotationProjection;
  /** The namespace's next step after this check (the one projection `keys status` shows too). */
  next?: NextRotationStep;
}

export interface RotatorRun {
  /** False when another rotator holds the lease: this one did nothing. */
  leader: boolean;
  actions: RotatorAction[];
}

/** Shortest time between two checks a timer schedules, so that a step that keeps failing does not spin. */
const MIN_RECHECK_MS = 1000;

/**
 * Rotates keys from measured usage, in two phases, once per keystore. A check takes the `rotator`
 * lease and, per namespace, acts on the namespace's plan (`planNamespace`, the one projection):
 * 1. promotes a prepublished version once it has been published for `propagationDelay` (every
 *    process has refreshed and can decrypt it before anyone encrypts with it);
 * 2. otherwise, when the projection says so (budget within lead time, max age), publishes a new
 *    version (`prepublish`, conditional on the active version, so concurrent rotators rotate once);
 * 3. when the budget is already spent, rotates at once (the emergency rotation of budget-guard.ts).
 *
 * When checks happen: at the time of the earliest next step of any namespace (a promotion's timer
 * fires exactly `propagationDelay` after the prepublish; a projected rotation at its time), when
 * the meter reports a reservation that crossed a rotation threshold, and at the latest every
 * `checkIntervalMs` (the backstop). Whichever rotator holds the lease acts: a new leader sees a
 * prepublished version and promotes it on time, once (the promotion is conditional).
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
  readonly #act: boolean;
  readonly #meter: Pick<UsageMeter, 'on'> | undefined;
  #unsubscribe: (() => void) | undefined;
  #cancel: (() => void) | undefined;
  #running: Promise<unknown> | undefined;
  #wakeRequested = false;
  #started = false;
  /** Each namespace's next step as the last check saw it: due steps are taken first. */
  readonly #nextAt = new Map<string, number>();

  constructor(options: RotatorOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    if (!options.keyring) throw new InvalidOptionError('keyring', 'is required');
    if (!options.keystore) throw new InvalidOptionError('keystore', 'is required');
    if (typeof options.policies !== 'function')
      throw new InvalidOptionError('policies', 'must be a function');
    const interval = options.checkIntervalMs ?? DEFAULT_CHECK_INTERVAL_MS;
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
    this.#act = options.act ?? true;
    this.#meter = options.meter;
    this.holder = options.holder ?? defaultHolderId();
    this.#namespaces = options.namespaces ?? (() => this.#keystore.listNamespaces());
  }

  /** The backstop interval between checks, in ms. */
  get checkIntervalMs(): number {
    return this.#intervalMs;
  }

  /** Checks now, then whenever a step falls due, a threshold is crossed, or the interval passes, until {@link stop}. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    if (this.#act) {
      this.#unsubscribe = this.#meter?.on({
        threshold: (event) => {
          this.#logger.info(
            { namespace: event.namespace, version: event.version, reserved: event.reserved },
            'rotator woken: a reservation crossed the rotation threshold',
          );
          this.wake();
        },
      });
    }
    this.#tick();
  }

  /** Runs a check as soon as possible (coalesced with one in progress). */
  wake(): void {
    if (!this.#started) return;
    if (this.#running) {
      this.#wakeRequested = true;
      return;
    }
    this.#cancel?.();
    this.#tick();
  }

  /** Stops checking, waits for a check in progress, and gives up the lease. */
  async stop(): Promise<void> {
    this.#started = false;
    this.#unsubscribe?.();
    this.#cancel?.();
    await this.#running;
    if (this.#act) await this.#keystore.releaseLease(ROTATOR_LEASE, this.holder).catch(() => {});
  }

  /** Resolves once no check is in progress (for tests driving a manual clock). */
  async idle(): Promise<void> {
    while (this.#running) await this.#running;
  }

  #tick(): void {
    if (!this.#started) return;
    this.#cancel = undefined;
    this.#wakeRequested = false;
    let nextAt: number | undefined;
    const run = this.runOnce()
      .then((result) => {
        nextAt = earliestStep(result);
      })
      .catch((error: unknown) => this.#logger.error({ err: errorSummary(error) }, 'rotator check failed'))
      .finally(() => {
        if (this.#running === run) this.#running = undefined;
        if (!this.#started) return;
        if (this.#wakeRequested) {
          this.#tick();
          return;
        }
        const now = this.#clock.now();
        let delay = this.#intervalMs;
        // A step in the future: exactly then. One due but not taken (it failed, or another process
        // holds the lease): again shortly, not in a tight loop.
        if (nextAt !== undefined) delay = Math.min(delay, nextAt > now ? nextAt - now : MIN_RECHECK_MS);
        this.#cancel = this.#clock.setTimer(delay, () => this.#tick());
      });
    this.#running = run;
  }

  /**
   * One check of every namespace. Acts only if this rotator holds (or takes) the lease; reports
   * usage metrics either way, so every process exports them.
   */
  async runOnce(): Promise<RotatorRun> {
    const now = this.#clock.now();
    const leader =
      this.#act && (await this.#keystore.tryAcquireLease(ROTATOR_LEASE, this.holder, this.#leaseTtlMs, now));
    const actions: RotatorAction[] = [];
    const order = (ns: string) => this.#nextAt.get(ns) ?? Number.POSITIVE_INFINITY;
    const namespaces = [...(await this.#namespaces())].sort((a, b) => order(a) - order(b));
    for (const namespace of namespaces) {
      try {
        const action = await this.#check(namespace, leader);
        if (action.next) this.#nextAt.set(namespace, action.next.at);
        else this.#nextAt.delete(namespace);
        if (leader) actions.push(action);
        if (leader) this.#logDecision(action);
      } catch (error) {
        this.#logger.error({ namespace, err: errorSummary(error) }, 'rotator check of namespace failed');
        if (leader) actions.push({ namespace, action: 'failed', reason: errorSummary(error).message });
      }
    }
    return { leader, actions };
  }

  #logDecision(a: RotatorAction): void {
    this.#logger.info(
      {
        namespace: a.namespace,
        action: a.action,
        version: a.version,
        reason: a.reason,
        ratePerSecond: a.projection?.rates.projectionPerSecond,
        rateBasis: a.projection?.rates.basis,
        next: a.next && {
          action: a.next.action,
          at: new Date(a.next.at).toISOString(),
          version: a.next.version,
          reason: a.next.reason,
        },
      },
      `rotator check: ${a.namespace}: ${a.action}${a.version === undefined ? '' : ` v${a.version}`}`,
    );
  }

  async #plan(namespace: string, policy: RotationPolicy, now: number) {
    const versions = await this.#keyring.versions(namespace);
    const active = versions.find((v) => v.state === 'active');
    const usage = active ? await this.#keystore.getUsage(namespace, active.version) : undefined;
    return { plan: planNamespace(versions, usage, policy, now), usage };
  }

  async #check(namespace: string, leader: boolean): Promise<RotatorAction> {
    const policy = this.#policies(namespace);
    const now = this.#clock.now();
    const { plan, usage } = await this.#plan(namespace, policy, now);
    const { active, pending, projection } = plan;
    if (!active || !projection || !usage) return { namespace, action: 'none', reason: 'no active version' };
    this.#metrics?.usage({
      namespace,
      version: active.version,
      reserved: usage.reserved,
      used: usage.used,
      ratePerSecond: projection.rates.projectionPerSecond,
      secondsUntilLimit: projection.limitAt === undefined ? undefined : (projection.limitAt - now) / 1000,
    });
    const base = { namespace, projection, next: plan.next };
    if (!leader) return { ...base, action: 'none', version: active.version };
    if (!policy.enabled) return { ...base, action: 'disabled', version: active.version };

    // The budget is spent: no waiting for a propagation delay or a prepublish.
    if (projection.reason?.kind === 'budget-spent') {
      const outcome = await emergencyRotation(this.#keyring, this.#logger)(namespace, active.version);
      if (!outcome.performed) return { ...base, action: 'none', version: outcome.active };
      this.#metrics?.rotation({ namespace, phase: 'emergency', reason: 'budget-spent' });
      return this.#after(namespace, policy, {
        namespace,
        action: 'emergency-rotated',
        version: outcome.active,
        reason: projection.reason.text,
      });
    }

    if (pending) {
      // The lifecycle owner decides whether the propagation delay has passed.
      try {
        const result = await this.#keyring.manager.promote(namespace, pending.version);
        if (!result.performed) return { ...base, action: 'none', version: pending.version };
      } catch (error) {
        if (error instanceof PropagationPendingError) {
          return { ...base, action: 'waiting-for-propagation', version: pending.version };
        }
        // Another rotator (a lease change mid-rotation) promoted it first: promoted once.
        if (error instanceof KeystoreConflictError) return { ...base, action: 'none' };
        throw error;
      }
      this.#logger.info(
        {
          namespace,
          from: active.version,
          to: pending.version,
          reason: 'propagated',
          lateMs: now - (pending.createdAt + policy.propagationDelay),
        },
        'rotation: new key version active',
      );
      this.#metrics?.rotation({ namespace, phase: 'promote', reason: 'propagated' });
      return this.#after(namespace, policy, {
        namespace,
        action: 'promoted',
        version: pending.version,
        reason: 'propagated',
      });
    }

    if (!projection.due || !projection.reason) return { ...base, action: 'none', version: active.version };
    const result = await this.#keyring.manager.rotate(namespace, {
      mode: 'prepublish',
      expectedActiveVersion: active.version,
    });
    if (!result.performed) return { ...base, action: 'none', version: result.current.version };
    this.#logger.info(
      {
        namespace,
        from: active.version,
        to: result.current.version,
        reason: projection.reason.kind,
        reserved: usage.reserved,
        ratePerSecond: projection.rates.projectionPerSecond,
        promoteAt: new Date(now + policy.propagationDelay).toISOString(),
      },
      `rotation: new key version published (${projection.reason.text})`,
    );
    this.#metrics?.rotation({ namespace, phase: 'prepublish', reason: projection.reason.kind });
    return this.#after(namespace, policy, {
      namespace,
      action: 'prepublished',
      version: result.current.version,
      reason: projection.reason.text,
    });
  }

  /** The action with the plan as it stands after it (so the next step is the one after this one). */
  async #after(
    namespace: string,
    policy: RotationPolicy,
    action: Omit<RotatorAction, 'projection' | 'next'>,
  ): Promise<RotatorAction> {
    const { plan } = await this.#plan(namespace, policy, this.#clock.now());
    return { ...action, projection: plan.projection, next: plan.next };
  }
}

/** The earliest next step of any namespace a run looked at (disabled namespaces excepted). */
function earliestStep(run: RotatorRun): number | undefined {
  let at: number | undefined;
  for (const a of run.actions) {
    if (a.action === 'disabled' || a.action === 'failed' || !a.next) continue;
    if (at === undefined || a.next.at < at) at = a.next.at;
  }
  return at;
}
