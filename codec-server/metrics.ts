import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { RotatorMetrics } from '../src/rotation/rotator.ts';
import type { UsageMeterListener } from '../src/rotation/usage-meter.ts';

/**
 * The codec server's Prometheus metrics, on a registry of their own (one per app, so tests and
 * several apps in one process never share counters). Labels never hold payload content or
 * credentials; namespaces appear only once a request for them was authorized.
 */
export class Metrics {
  readonly registry: Registry;
  readonly requests: Counter<'route' | 'method' | 'status'>;
  readonly duration: Histogram<'route'>;
  readonly payloads: Counter<'namespace' | 'operation' | 'key_version'>;
  readonly errors: Counter<'code'>;
  readonly rotations: Counter<'namespace' | 'phase' | 'reason'>;
  readonly budgetExhausted: Counter<'namespace' | 'key_version' | 'action'>;
  readonly encryptionsReserved: Gauge<'namespace' | 'key_version'>;
  readonly encryptionsUsed: Gauge<'namespace' | 'key_version'>;
  readonly encryptionRate: Gauge<'namespace' | 'key_version'>;
  readonly secondsUntilLimit: Gauge<'namespace' | 'key_version'>;

  readonly #text: () => Promise<string>;

  constructor(
    options: {
      defaultMetrics?: boolean;
      prefix?: string;
      /**
       * What `/metrics` answers, given this registry. Default: the registry's own metrics;
       * `serve --workers` passes `clusterMetricsText` (cluster-metrics.ts): every worker's, summed.
       */
      exposition?: (registry: Registry) => () => Promise<string>;
    } = {},
  ) {
    const prefix = options.prefix ?? 'temporal_keyring_';
    this.registry = new Registry();
    const registry = this.registry;
    this.#text = options.exposition ? options.exposition(registry) : () => registry.metrics();
    const registers = [this.registry];
    this.requests = new Counter({
      name: `${prefix}http_requests_total`,
      help: 'HTTP requests by route, method and status',
      labelNames: ['route', 'method', 'status'],
      registers,
    });
    this.duration = new Histogram({
      name: `${prefix}http_request_duration_seconds`,
      help: 'HTTP request latency by route',
      labelNames: ['route'],
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
      registers,
    });
    this.payloads = new Counter({
      name: `${prefix}payloads_total`,
      help: 'Payloads encoded or decoded, by namespace, operation and key version ("none" for pass-through)',
      labelNames: ['namespace', 'operation', 'key_version'],
      registers,
    });
    this.errors = new Counter({
      name: `${prefix}errors_total`,
      help: 'Error answers by stable error code',
      labelNames: ['code'],
      registers,
    });
    this.rotations = new Counter({
      name: `${prefix}rotations_total`,
      help: 'Key rotations by namespace, phase (prepublish, promote, emergency) and reason',
      labelNames: ['namespace', 'phase', 'reason'],
      registers,
    });
    this.budgetExhausted = new Counter({
      name: `${prefix}encryption_budget_exhausted_total`,
      help: 'Times this process found a key version at its maxEncryptions budget, by the policy action taken (rotate, refuse)',
      labelNames: ['namespace', 'key_version', 'action'],
      registers,
    });
    // Each worker of `serve --workers` reports the same keystore-wide values: the cluster's figure
    // is any one of them (max), not their sum; the projected time left is the soonest (min).
    const gauge = (name: string, help: string, aggregator: 'max' | 'min' = 'max') =>
      new Gauge({
        name: `${prefix}${name}`,
        help,
        labelNames: ['namespace', 'key_version'],
        registers,
        aggregator,
      });
    this.encryptionsReserved = gauge(
      'encryptions_reserved',
      'Encryptions reserved under the active key version by every process: an upper bound of those made',
    );
    this.encryptionsUsed = gauge(
      'encryptions_used',
      'Encryptions reported as made under the active key version',
    );
    this.encryptionRate = gauge(
      'encryption_rate_per_second',
      'Measured encryption rate of the active key version',
    );
    this.secondsUntilLimit = gauge(
      'seconds_until_encryption_limit',
      'Projected seconds until the active key version reaches its maxEncryptions',
      'min',
    );
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix });
  }

  /** The text `/metrics` answers (Prometheus exposition format, `registry.contentType`). */
  text(): Promise<string> {
    return this.#text();
  }

  /**
   * The rotator's telemetry hook, mapped onto these metrics. Every server's rotator reports usage
   * at each check, leader or not (and an observing one under `--no-rotator`).
   */
  rotatorMetrics(): RotatorMetrics {
    return {
      rotation: ({ namespace, phase, reason }) => this.rotations.inc({ namespace, phase, reason }),
      usage: (sample) => this.#usage(sample),
    };
  }

  /** The usage meter's events: gauges at each reservation, the budget counter, emergency rotations. */
  meterListener(): UsageMeterListener {
    return {
      reservation: (e) =>
        this.#usage({
          namespace: e.namespace,
          version: e.version,
          reserved: e.reserved,
          used: e.used,
          ratePerSecond: e.projection.rates.projectionPerSecond,
          secondsUntilLimit: e.secondsUntilLimit,
        }),
      budgetExhausted: ({ namespace, version, action }) =>
        this.budgetExhausted.inc({ namespace, key_version: String(version), action }),
      emergencyRotation: ({ namespace }) =>
        this.rotations.inc({ namespace, phase: 'emergency', reason: 'budget-spent' }),
    };
  }

  #usage(s: Parameters<RotatorMetrics['usage']>[0]): void {
    const labels = { namespace: s.namespace, key_version: String(s.version) };
    this.encryptionsReserved.set(labels, s.reserved);
    this.encryptionsUsed.set(labels, s.used);
    if (s.ratePerSecond !== undefined) this.encryptionRate.set(labels, s.ratePerSecond);
    if (s.secondsUntilLimit !== undefined) this.secondsUntilLimit.set(labels, s.secondsUntilLimit);
  }
}
