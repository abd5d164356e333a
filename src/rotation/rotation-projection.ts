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

/** The next step of a namespace's rotation, as the rotator will take it. */
export interface NextRotationStep {
  /** When: a past time means due now. */
  at: number;
  /** `prepublish` starts a rotation; `promote` completes one (the prepublished version becomes active). */
  action: 'prepublish' | 'promote';
  /** Machine kind: the projection's reason, or `propagated` for a promotion. */
  kind: RotationReasonKind | 'propagated';
  /** A sentence for logs, the CLI and the admin API. */
  reason: string;
  /** The version the step acts on: the prepublished one for `promote`, the active one otherwise. */
  version: number;
}

/** A namespace's rotation state: what `keys status`, `rotator --once`, the admin API and the metrics all show. */
export interface NamespacePlan {
  active: Pick<KeyVersion, 'version' | 'state' | 'createdAt' | 'activatedAt'> | undefined;
  /** The prepublished version waiting for its propagation delay, if any. */
  pending: Pick<KeyVersion, 'version' | 'createdAt'> | undefined;
  /** The active version's projection (undefined without an active version). */
  projection: RotationProjection | undefined;
  /** The next step, or undefined when nothing triggers (no max age and no measured rate). */
  next: NextRotationStep | undefined;
}

/**
 * The one projection of a namespace. A prepublished version is promoted `propagationDelay` after
 * it was published (its timer); otherwise the active version's projection says when to prepublish.
 * Every reader goes through this function, so a status right after a promotion and the rotator's
 * own answer never disagree.
 */
export function planNamespace(
  versions: readonly Pick<KeyVersion, 'version' | 'state' | 'createdAt' | 'activatedAt'>[],
  activeUsage: UsageRecord | undefined,
  policy: RotationPolicy,
  now: number,
): NamespacePlan {
  const active = versions.find((v) => v.state === 'active');
  const pending = versions.find((v) => v.state === 'prepublished');
  const projection = active && activeUsage ? projectRotation(active, activeUsage, policy, now) : undefined;
  let next: NextRotationStep | undefined;
  if (pending) {
    next = {
      at: pending.createdAt + policy.propagationDelay,
      action: 'promote',
      kind: 'propagated',
      reason: `version ${pending.version} published; active once every process has seen it (propagation delay ${formatDuration(policy.propagationDelay)})`,
      version: pending.version,
    };
  } else if (active && projection?.rotateAt !== undefined && projection.reason) {
    next = {
      at: projection.rotateAt,
      action: 'prepublish',
      kind: projection.reason.kind,
      reason: projection.reason.text,
      version: active.version,
    };
  }
  return { active, pending, projection, next };
}
