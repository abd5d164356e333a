import type { UsageRecord } from '../keystore/keystore.ts';
import type { KeyVersion } from '../model/key-version.ts';
import { formatDuration, type RotationPolicy } from './rotation-policy.ts';
import { formatCount, formatRate, type UsageRates, usageRates } from './usage-rate.ts';

/**
 * When the active version must be rotated, and why: pure functions over its metadata, its usage
 * record and the policy. The rotator acts on `due`; `keys status` shows the dates.
 *
 * Pipeline position: usage record → rates (usage-rate.ts) → projection (this) → `Rotator`.
 */

export type RotationReasonKind = 'encryptions' | 'max-age' | 'budget-spent';

export interface RotationProjection {
  /** Measured rates of the version. */
  rates: UsageRates;
  /** Encryptions left in the budget (`maxEncryptions - reserved`, at least 0). */
  remaining: number;
  /** When the budget is projected to run out at the projection rate; undefined without a rate. */
  limitAt: number | undefined;
  /** When `maxAge` ends for the version; undefined when age rotation is off or it is not active. */
  maxAgeAt: number | undefined;
  /** When the rotator should start the next rotation (prepublish); undefined when nothing triggers. */
  rotateAt: number | undefined;
  /** Why `rotateAt`: machine kind and a sentence for logs and the CLI. */
  reason: { kind: RotationReasonKind; text: string } | undefined;
  /** True when `rotateAt <= now`. */
  due: boolean;
}

/**
 * Projects one version. Encryption trigger: start the rotation when the reserved count reaches
 * `maxEncryptions - rate × lead`, where lead = `leadTime`, capped at half the version's projected
 * life (`maxEncryptions / rate / 2`) so that very high rates do not rotate continuously. Age
 * trigger: start `propagationDelay` before `maxAge`, so the next version is active at `maxAge`.
 * Without a measured rate only a spent budget triggers.
 */
export function projectRotation(
  version: Pick<KeyVersion, 'state' | 'createdAt' | 'activatedAt'>,
  usage: UsageRecord,
  policy: RotationPolicy,
  now: number,
): RotationProjection {
  const rates = usageRates(usage.samples, now);
  const rate = rates.projectionPerSecond;
  const remaining = Math.max(0, policy.maxEncryptions - usage.reserved);
  const candidates: { at: number; kind: RotationReasonKind; text: string }[] = [];

  let limitAt: number | undefined;
  if (usage.reserved >= policy.maxEncryptions) {
    limitAt = now;
    candidates.push({
      at: now,
      kind: 'budget-spent',
      text: `encryption budget spent (${formatCount(usage.reserved)} of ${formatCount(policy.maxEncryptions)} reserved)`,
    });
  } else if (rate !== undefined && rate > 0) {
    const perMs = rate / 1000;
    limitAt = now + remaining / perMs;
    const lifeMs = policy.maxEncryptions / perMs;
    const leadMs = Math.min(policy.leadTime, lifeMs / 2);
    const threshold = policy.maxEncryptions - perMs * leadMs;
    const at = usage.reserved >= threshold ? now : now + (threshold - usage.reserved) / perMs;
    candidates.push({
      at,
      kind: 'encryptions',
      text: `encryptions projected to reach ${formatCount(policy.maxEncryptions)} within lead time ${formatDuration(leadMs)} (at ${formatRate(rate)}, ${rates.basis} rate)`,
    });
  }

  let maxAgeAt: number | undefined;
  if (policy.maxAge !== null && version.state === 'active') {
    maxAgeAt = (version.activatedAt ?? version.createdAt) + policy.maxAge;
    candidates.push({
      at: maxAgeAt - policy.propagationDelay,
      kind: 'max-age',
      text: `max age ${formatDuration(policy.maxAge)}`,
    });
  }

  candidates.sort((a, b) => a.at - b.at);
  const next = candidates[0];
  return {
    rates,
    remaining,
    limitAt,
    maxAgeAt,
    rotateAt: next?.at,
    reason: next && { kind: next.kind, text: next.text },
    due: next !== undefined && next.at <= now,
  };
}
