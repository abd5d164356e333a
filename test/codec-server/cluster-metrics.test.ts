import { AggregatorRegistry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { Metrics } from '../../codec-server/metrics.ts';

/**
 * `serve --workers`: the primary sums every worker's registry (cluster-metrics.ts, exercised with
 * real processes in serve-workers.test.ts). Here the sum itself: counters add up, and the gauges
 * that every worker reads from the same keystore are not multiplied by the number of workers.
 */
describe('cluster metrics: what the primary makes of the workers’ registries', () => {
  it('adds counters, keeps keystore-wide gauges at one worker’s value, and the soonest limit', async () => {
    const workers = [new Metrics(), new Metrics()];
    const usage = { namespace: 'orders', version: 3, reserved: 5000, used: 4200, ratePerSecond: 12 };
    workers.forEach((m, i) => {
      m.payloads.labels({ namespace: 'orders', operation: 'decode', key_version: '3' }).inc(10 + i);
      m.rotatorMetrics().usage({ ...usage, secondsUntilLimit: 100 - i * 40 });
    });
    const sum = AggregatorRegistry.aggregate(
      await Promise.all(workers.map((m) => m.registry.getMetricsAsJSON())),
    );
    const text = await sum.metrics();
    const value = (name: string) =>
      Number(new RegExp(`^temporal_keyring_${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);
    expect(value('payloads_total')).toBe(21);
    expect(value('encryptions_reserved')).toBe(5000);
    expect(value('encryptions_used')).toBe(4200);
    expect(value('encryption_rate_per_second')).toBe(12);
    expect(value('seconds_until_encryption_limit')).toBe(60);
  });

  it('answers /metrics with what the exposition gives, by default the registry itself', async () => {
    const own = new Metrics();
    own.errors.inc({ code: 'ERR_SEALED' });
    expect(await own.text()).toBe(await own.registry.metrics());
    const custom = new Metrics({ exposition: () => async () => 'summed elsewhere\n' });
    expect(await custom.text()).toBe('summed elsewhere\n');
  });
});
