import { Counter, collectDefaultMetrics, Histogram, Registry } from 'prom-client';

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

  constructor(options: { defaultMetrics?: boolean; prefix?: string } = {}) {
    const prefix = options.prefix ?? 'temporal_keyring_';
    this.registry = new Registry();
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
    if (options.defaultMetrics) collectDefaultMetrics({ register: this.registry, prefix });
  }
}
