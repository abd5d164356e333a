import { NamespaceNotFoundError } from '../errors.ts';
import type { Keystore, UsageRecord } from '../keystore/keystore.ts';
import type { KeyState } from '../model/key-version.ts';
import type { RotationPolicy } from './rotation-policy.ts';
import { planNamespace, projectRotation } from './rotation-projection.ts';
import { type ChartSeries, chartSeries, renderUsageChart } from './usage-chart.ts';
import { type RateWindow, usageRates } from './usage-rate.ts';

/**
 * Usage and rotation status of a namespace, read from the keystore (metadata and counts only: no
 * KEK needed): what `keys status` prints and what the codec server may expose.
 *
 * Pipeline position: keystore → status (this) → CLI table / JSON / SVG chart.
 */

export interface VersionStatus {
  version: number;
  keyId: string;
  state: KeyState;
  createdAt: number;
  activatedAt: number | undefined;
  deactivatedAt: number | undefined;
  /** Upper bound on encryptions (reserved in blocks ahead of use). */
  reserved: number;
  /** Exact counts reported by processes (lags by one flush interval). */
  used: number;
  /** Encryptions per second per window; null while a window has too few reservations to count. */
  rates: Record<RateWindow, number | null>;
  /** True when the reserved count has reached `maxEncryptions` (any state). */
  limitReached: boolean;
  /**
   * Active version only, budget not yet spent: when it is projected to run out at the projection
   * rate (always in the future); undefined without a rate.
   */
  limitAt: number | undefined;
}

export interface NamespaceStatus {
  namespace: string;
  now: number;
  policy: RotationPolicy;
  versions: VersionStatus[];
  /** The rate projections use (the highest sufficient window), and which window it is. */
  rate: { perSecond: number; basis: string } | undefined;
  /** The next rotation step the rotator will take and why (`planNamespace`); undefined when nothing triggers. */
  nextRotation: { at: number; action: 'prepublish' | 'promote'; reason: string; version: number } | undefined;
  chart: ChartSeries[];
}

/**
 * A namespace's status: per version its counts and rates, and the plan of `planNamespace`, the
 * projection the rotator acts on (so `keys status`, `rotator --once`, the admin API and the
 * metrics agree).
 */
export async function namespaceStatus(
  keystore: Keystore,
  namespace: string,
  policy: RotationPolicy,
  now: number,
): Promise<NamespaceStatus> {
  const versions = await keystore.getVersions(namespace);
  if (versions.length === 0) throw new NamespaceNotFoundError(namespace);
  const out: VersionStatus[] = [];
  const chart: ChartSeries[] = [];
  let activeUsage: UsageRecord | undefined;
  for (const v of versions) {
    const usage = await keystore.getUsage(namespace, v.version);
    if (v.state === 'active') activeUsage = usage;
    const rates = usageRates(usage.samples, now);
    const limitReached = usage.reserved >= policy.maxEncryptions;
    let limitAt: number | undefined;
    if (v.state === 'active' && !limitReached) limitAt = projectRotation(v, usage, policy, now).limitAt;
    out.push({
      version: v.version,
      keyId: v.keyId,
      state: v.state,
      createdAt: v.createdAt,
      activatedAt: v.activatedAt,
      deactivatedAt: v.deactivatedAt,
      reserved: usage.reserved,
      used: usage.used,
      rates: Object.fromEntries(
        rates.windows.map((w) => [w.window, w.sufficient && w.perSecond !== undefined ? w.perSecond : null]),
      ) as Record<RateWindow, number | null>,
      limitReached,
      limitAt,
    });
    if (v.state !== 'destroyed') chart.push(chartSeries(v, usage, now));
  }
  const plan = planNamespace(versions, activeUsage, policy, now);
  const r = plan.projection?.rates;
  const rate =
    r?.projectionPerSecond !== undefined && r.basis
      ? { perSecond: r.projectionPerSecond, basis: r.basis }
      : undefined;
  let nextRotation: NamespaceStatus['nextRotation'];
  if (plan.next) {
    nextRotation = {
      at: plan.next.at,
      action: plan.next.action,
      version: plan.next.version,
      reason: policy.enabled ? plan.next.reason : `${plan.next.reason} (rotation disabled: not automatic)`,
    };
  }
  return { namespace, now, policy, versions: out, rate, nextRotation, chart };
}

/** The status as an SVG chart. */
export function statusChart(status: NamespaceStatus): string {
  const active = status.versions.find((v) => v.state === 'active');
  const series = status.chart.find((s) => s.state === 'active');
  const last = series?.points.at(-1);
  const projection =
    // A limit years away would squash the chart: draw projections up to a year ahead.
    active?.limitAt !== undefined && last && active.limitAt - status.now <= 365 * 86_400_000
      ? { from: last, to: { at: active.limitAt, count: status.policy.maxEncryptions } }
      : undefined;
  return renderUsageChart({
    namespace: status.namespace,
    maxEncryptions: status.policy.maxEncryptions,
    now: status.now,
    series: status.chart,
    ...(projection ? { projection } : {}),
    ...(status.nextRotation ? { nextRotation: status.nextRotation } : {}),
  });
}
