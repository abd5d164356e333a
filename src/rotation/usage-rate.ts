import type { UsageSample } from '../keystore/keystore.ts';

/**
 * Encryption rates of one key version, measured from the encryptions used as its reservation
 * history shows them (`UsageRecord.samples`, see {@link usedCurve}): pure functions, no I/O, so the
 * meter, the rotator, the CLI, the admin API and tests share them.
 *
 * Pipeline position: `UsageMeter` reserves → keystore keeps samples → rates (this) → projection.
 *
 * Reservations come in blocks (up to a million encryptions each), so a window that holds only a
 * few blocks says little: one block over a minute looks like a huge burst. A window's rate counts
 * (`sufficient`) only when the encryptions reserved inside it are at least
 * {@link MIN_BLOCKS_IN_WINDOW} times its largest block, and at least half of it has been observed.
 * The granularity error is then about one block in ten either way. A window without reservations
 * is not sufficient either: it says nothing about how fast the last block is being used.
 */

export type RateWindow = '1m' | '1h' | '1d';

export const RATE_WINDOWS: Readonly<Record<RateWindow, number>> = Object.freeze({
  '1m': 60_000,
  '1h': 60 * 60_000,
  '1d': 24 * 60 * 60_000,
});

/** How many of its largest block a window's reservations must add up to for its rate to count. */
export const MIN_BLOCKS_IN_WINDOW = 10;

export interface WindowRate {
  window: RateWindow;
  /** Encryptions per second over the window; `undefined` when there is no history at all. */
  perSecond: number | undefined;
  /** Reservations inside the window. */
  samples: number;
  /** True when the window holds enough reservations for its rate to be trusted. */
  sufficient: boolean;
}

export interface UsageRates {
  windows: WindowRate[];
  /** Rate over the whole history (first to last reservation, up to now), or undefined. */
  lifetimePerSecond: number | undefined;
  /**
   * The rate to project with: the highest sufficient window (so a burst moves rotation earlier),
   * else the lifetime rate if the history holds at least two reservations, else undefined.
   */
  projectionPerSecond: number | undefined;
  /** Which rate `projectionPerSecond` is. */
  basis: RateWindow | 'lifetime' | undefined;
}

/**
 * The encryptions used, as the reservation history shows them: a process reserves its next block
 * when its previous one is spent, so at reservation k the count reserved before it, R(k-1), had
 * been handed out. The points `(t_k, R(k-1))` follow the used count (exactly with one process;
 * over by at most one unspent block per other process), while `(t_k, R(k))` run one block ahead,
 * which at the start of a version overstates the rate several-fold (a first 250k block counted at
 * once as if used). The first point takes the block before it to be as large as the one after it
 * (0 for a fresh version, whose first block is the smallest).
 */
export function usedCurve(samples: readonly UsageSample[]): UsageSample[] {
  const first = samples[0];
  if (!first) return [];
  const next = samples[1];
  const firstBlock = next ? next.reserved - first.reserved : first.reserved;
  const out: UsageSample[] = [{ at: first.at, reserved: Math.max(0, first.reserved - firstBlock) }];
  for (let i = 1; i < samples.length; i++)
    out.push({ at: samples[i]!.at, reserved: samples[i - 1]!.reserved });
  return out;
}

/**
 * The rate over one window ending at `now`, from the used curve ({@link usedCurve}): the used
 * count added between the window's start and the last reservation inside it, over that time (the
 * slope up to the last point, so the block being spent now neither counts early nor drags the
 * rate down). Samples must be oldest first.
 */
export function windowRate(samples: readonly UsageSample[], now: number, window: RateWindow): WindowRate {
  const length = RATE_WINDOWS[window];
  const curve = usedCurve(samples);
  const first = curve[0];
  if (!first) return { window, perSecond: undefined, samples: 0, sufficient: false };
  // A version younger than the window is measured from its first reservation.
  const start = Math.max(now - length, first.at);
  let inside = 0;
  let largest = 0;
  // The slope runs from the last point at or before the window's start to the last one inside it.
  let base = first;
  let last: UsageSample | undefined;
  curve.forEach((point, i) => {
    if (point.at <= start) {
      base = point;
      return;
    }
    if (point.at > now) return;
    inside++;
    largest = Math.max(largest, point.reserved - (curve[i - 1]?.reserved ?? 0));
    last = point;
  });
  const observed = now - start;
  if (observed <= 0) return { window, perSecond: undefined, samples: inside, sufficient: false };
  // No reservation inside the window: less than one block was used in it.
  if (!last) return { window, perSecond: 0, samples: 0, sufficient: false };
  const delta = last.reserved - base.reserved;
  const elapsed = last.at - base.at;
  if (elapsed <= 0) return { window, perSecond: undefined, samples: inside, sufficient: false };
  return {
    window,
    perSecond: (delta / elapsed) * 1000,
    samples: inside,
    // Half the window observed, so a young version's first minutes do not stand for a whole day.
    sufficient: observed >= length / 2 && delta > 0 && delta >= MIN_BLOCKS_IN_WINDOW * largest,
  };
}

/**
 * Rates over every window, and the one to project with. Smoothing: each window is an average, and
 * the projection takes the highest window that counts, so a burst moves rotation earlier while a
 * lull does not delay it.
 */
export function usageRates(samples: readonly UsageSample[], now: number): UsageRates {
  const windows = (Object.keys(RATE_WINDOWS) as RateWindow[]).map((w) => windowRate(samples, now, w));
  const curve = usedCurve(samples);
  const first = curve[0];
  const last = curve.at(-1);
  let lifetimePerSecond: number | undefined;
  if (first && last && curve.length >= 2 && last.at > first.at) {
    lifetimePerSecond = ((last.reserved - first.reserved) / (last.at - first.at)) * 1000;
  }
  let best: WindowRate | undefined;
  for (const w of windows) {
    if (w.sufficient && w.perSecond !== undefined && (!best || w.perSecond > best.perSecond!)) best = w;
  }
  if (best) return { windows, lifetimePerSecond, projectionPerSecond: best.perSecond, basis: best.window };
  if (lifetimePerSecond !== undefined && lifetimePerSecond > 0) {
    return { windows, lifetimePerSecond, projectionPerSecond: lifetimePerSecond, basis: 'lifetime' };
  }
  return { windows, lifetimePerSecond, projectionPerSecond: undefined, basis: undefined };
}

/** "46.3k/s", "463/s", "0.12/s". */
export function formatRate(perSecond: number | undefined): string {
  if (perSecond === undefined) return 'n/a';
  return `${formatCount(perSecond)}/s`;
}

/** "3.87e9" style for large counts, plain below ten thousand, "46.3k" in between. */
export function formatCount(n: number): string {
  if (n >= 1e9) return n.toExponential(2).replace('e+', 'e');
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e4) return `${(n / 1e3).toFixed(1)}k`;
  if (n >= 100 || Number.isInteger(n)) return String(Math.round(n));
  return n.toFixed(2);
}
