import { z } from 'zod';
import { InvalidOptionError } from '../errors.ts';
import { DEFAULT_PROPAGATION_DELAY_MS } from '../keyring/key-manager.ts';

/**
 * When a namespace's key is rotated: the per-namespace policy the {@link Rotator} applies to the
 * usage it measures. Counting is always on; `enabled` only decides whether the rotator acts.
 *
 * Pipeline position: config file → `resolvePolicy` (this) → `Rotator` → `Keyring.rotate`.
 */
export interface RotationPolicy {
  /** Rotate automatically. Off: counts are still kept and shown, the rotator leaves the namespace alone. */
  enabled: boolean;
  /** Encryption budget of one version (AES-GCM with random IVs: at most 2^32, NIST SP 800-38D). */
  maxEncryptions: number;
  /** Longest time a version stays active, in ms; `null` turns age-based rotation off. */
  maxAge: number | null;
  /**
   * How long before the projected exhaustion of the budget the rotation starts, in ms. Covers the
   * propagation delay, the check interval, and an operator's reaction if the rotator is down.
   */
  leadTime: number;
  /** Time between publishing a new version and encrypting with it, in ms: every process refreshes meanwhile. */
  propagationDelay: number;
  /**
   * What an encrypting process does when the active version's reserved count reaches
   * `maxEncryptions` (see budget-guard.ts): `rotate` (default) promotes the prepublished version at
   * once, or rotates immediately, logged and counted as an emergency rotation; `refuse` fails
   * closed with `KeyBudgetExhaustedError` (HTTP 503) until someone rotates. Never silently over.
   * Optional in the type (policies written before it existed); absent means `rotate`.
   */
  onBudgetExhausted?: BudgetExhaustedAction;
}

export type BudgetExhaustedAction = 'rotate' | 'refuse';

/** Default time between two periodic checks of the rotator (a backstop: reservations wake it). */
export const DEFAULT_CHECK_INTERVAL_MS = 60_000;

/** The AES-GCM limit for random 96-bit IVs (NIST SP 800-38D, section 8.3). */
export const AES_GCM_RANDOM_IV_LIMIT = 2 ** 32;

/** Smallest budget accepted: anything lower would rotate a busy namespace every few seconds. */
export const MIN_MAX_ENCRYPTIONS = 1_000_000;

const DAY = 24 * 60 * 60 * 1000;

/**
 * Defaults:
 * - `maxEncryptions` 3,865,470,566 = floor(0.9 × 2^32): 10% of the NIST limit stays as margin for
 *   the reservation over-count and for processes that learn of a rotation late.
 * - `maxAge` 30 days: bounds how much data one key protects, whatever the traffic.
 * - `leadTime` 7 days: an automatic rotation needs only `propagationDelay` + one check interval,
 *   but if the rotator is not running the budget must last until someone notices (alerts on
 *   seconds-until-limit) and reacts: a long weekend plus a working day or two. It is capped at half
 *   the version's projected life so that very high rates do not rotate continuously.
 * - `propagationDelay` 2 minutes: twice the keyring's 30 s refresh interval plus a minute of margin
 *   (a process that misses a refresh still learns the version on its next one). The rule it feeds
 *   is the lifecycle owner's (`KeyManager`), which defines this default.
 */
export const DEFAULT_ROTATION_POLICY: Readonly<RotationPolicy> = Object.freeze({
  enabled: true,
  maxEncryptions: Math.floor(0.9 * AES_GCM_RANDOM_IV_LIMIT),
  maxAge: 30 * DAY,
  leadTime: 7 * DAY,
  propagationDelay: DEFAULT_PROPAGATION_DELAY_MS,
  onBudgetExhausted: 'rotate',
});

const UNITS: Readonly<Record<string, number>> = {
  ms: 1,
  s: 1000,
  sec: 1000,
  m: 60_000,
  min: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 7 * 86_400_000,
};

/**
 * Parses a duration: a number of milliseconds, or a string with a unit: `ms`, `s`, `m`/`min`, `h`,
 * `d`, `w` ("90s", "12h", "30d", "1.5h"). A unit is required in strings: "30" is refused, not 30 ms.
 * (Hand-written: the `ms` package's typed release does not resolve under NodeNext.)
 */
export function parseDuration(value: unknown, field: string): number {
  let parsed = Number.NaN;
  if (typeof value === 'number') {
    parsed = value;
  } else if (typeof value === 'string') {
    const match = /^(\d+(?:\.\d+)?)\s*([a-z]+)$/i.exec(value.trim());
    const unit = match && UNITS[match[2]!.toLowerCase()];
    if (match && unit) parsed = Number(match[1]) * unit;
  }
  if (!Number.isFinite(parsed) || parsed < 0) {
    throw new InvalidOptionError(
      field,
      `must be a non-negative duration such as "90s", "12h" or "30d" (units ms, s, m, h, d, w; got ${JSON.stringify(value)})`,
    );
  }
  return Math.round(parsed);
}

/** Formats milliseconds for humans: "30 d", "2 h", "90 s". */
export function formatDuration(msValue: number): string {
  const abs = Math.abs(msValue);
  const units: [number, string][] = [
    [DAY, 'd'],
    [60 * 60 * 1000, 'h'],
    [60 * 1000, 'min'],
    [1000, 's'],
  ];
  for (const [size, unit] of units) {
    if (abs >= size) return `${Number((msValue / size).toFixed(abs >= 10 * size ? 0 : 1))} ${unit}`;
  }
  return `${Math.round(msValue)} ms`;
}

const duration = z.union([z.number(), z.string()]);

/**
 * The policy as it appears in a config file (every key optional: defaults fill the rest).
 * Durations are numbers of milliseconds or strings with a unit; `maxAge: null` or `false` turns
 * age-based rotation off. Parsing yields {@link PartialRotationPolicy} with durations in ms.
 */
export const rotationPolicySchema = z
  .strictObject({
    enabled: z.boolean().optional(),
    maxEncryptions: z
      .number()
      .int()
      .min(MIN_MAX_ENCRYPTIONS, `must be at least ${MIN_MAX_ENCRYPTIONS}`)
      .max(AES_GCM_RANDOM_IV_LIMIT, 'must be at most 2^32 (4294967296), the AES-GCM limit for random IVs')
      .optional(),
    maxAge: z.union([duration, z.null(), z.literal(false)]).optional(),
    leadTime: duration.optional(),
    propagationDelay: duration.optional(),
    onBudgetExhausted: z
      .enum(['rotate', 'refuse'], { error: 'must be "rotate" (the default) or "refuse"' })
      .optional(),
  })
  .transform((input, ctx): PartialRotationPolicy => {
    const out: PartialRotationPolicy = {};
    if (input.enabled !== undefined) out.enabled = input.enabled;
    if (input.maxEncryptions !== undefined) out.maxEncryptions = input.maxEncryptions;
    if (input.onBudgetExhausted !== undefined) out.onBudgetExhausted = input.onBudgetExhausted;
    for (const key of ['maxAge', 'leadTime', 'propagationDelay'] as const) {
      const value = input[key];
      if (value === undefined) continue;
      if (value === null || value === false) {
        out.maxAge = null;
        continue;
      }
      try {
        out[key] = parseDuration(value, key);
      } catch (error) {
        ctx.addIssue({
          code: 'custom',
          path: [key],
          message: (error as Error).message.replace(`${key}: `, ''),
        });
        return z.NEVER;
      }
    }
    return out;
  });

export type PartialRotationPolicy = Partial<RotationPolicy>;
export type RotationPolicyInput = z.input<typeof rotationPolicySchema>;

/** Parses one policy object (from a config file); errors name the field, prefixed with `field`. */
export function parsePolicy(input: unknown, field = 'rotation'): PartialRotationPolicy {
  if (input === undefined) return {};
  const result = rotationPolicySchema.safeParse(input);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const path = [field, ...issue.path.map(String)].join('.');
    throw new InvalidOptionError(path, issue.message);
  }
  return result.data;
}

/**
 * The policy of one namespace: built-in defaults, overridden by the config's defaults, overridden
 * by the namespace's own section. Accepts raw config objects or already-parsed ones; checks that
 * the whole makes sense (the lead time must leave room inside `maxAge`, and, given the rotator's
 * `checkIntervalMs`, cover one check interval plus the propagation delay).
 */
export function resolvePolicy(
  defaults?: RotationPolicyInput | PartialRotationPolicy,
  perNamespace?: RotationPolicyInput | PartialRotationPolicy,
  field = 'rotation',
  checkIntervalMs?: number,
): RotationPolicy {
  const policy: RotationPolicy = {
    ...DEFAULT_ROTATION_POLICY,
    ...parsePolicy(defaults, field),
    ...parsePolicy(perNamespace, field),
  };
  if (policy.propagationDelay > policy.leadTime) {
    throw new InvalidOptionError(
      `${field}.leadTime`,
      `(${formatDuration(policy.leadTime)}) must be at least propagationDelay (${formatDuration(policy.propagationDelay)})`,
    );
  }
  if (policy.maxAge !== null && policy.propagationDelay >= policy.maxAge) {
    throw new InvalidOptionError(
      `${field}.maxAge`,
      `(${formatDuration(policy.maxAge)}) must be longer than propagationDelay (${formatDuration(policy.propagationDelay)})`,
    );
  }
  if (checkIntervalMs !== undefined) assertLeadTimeCovers(policy, checkIntervalMs, field);
  return policy;
}

/**
 * A rotation must be able to complete inside the lead time even when the periodic check is what
 * notices it (a reservation normally wakes the rotator sooner): one check interval to start it,
 * then the propagation delay before the new version is active. Throws naming the numbers.
 */
export function assertLeadTimeCovers(
  policy: RotationPolicy,
  checkIntervalMs: number,
  field = 'rotation',
): void {
  const needed = checkIntervalMs + policy.propagationDelay;
  if (policy.leadTime >= needed) return;
  // Exact numbers (a rounded "1.1 min" would not show why 65 s is too short).
  const exact = (ms: number) => (ms < 3_600_000 && ms % 1000 === 0 ? `${ms / 1000} s` : formatDuration(ms));
  throw new InvalidOptionError(
    `${field}.leadTime`,
    `(${exact(policy.leadTime)}) cannot cover the rotator's check interval (${exact(checkIntervalMs)}) plus propagationDelay (${exact(policy.propagationDelay)}) = ${exact(needed)}; raise leadTime to at least ${exact(needed)} or shorten the check interval (rotator.checkInterval, --check-interval)`,
  );
}

/** Parses and checks a rotator check interval (config `rotator.checkInterval`, `--check-interval`). */
export function parseCheckInterval(value: unknown, field: string): number {
  const ms = parseDuration(value, field);
  if (ms < 1000) throw new InvalidOptionError(field, `must be at least 1s (got ${formatDuration(ms)})`);
  return ms;
}
