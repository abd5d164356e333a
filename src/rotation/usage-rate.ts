import type { UsageSample } from '../keystore/keystore.ts';

/**
 * Encryption rates of one key version, measured from its reservation history
 * (`UsageRecord.samples`): pure functions, no I/O, so the rotator, the CLI and tests share them.
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

/** The reserved count at time `t`: that of the last sample at or before `t` (0 before the first). */
function reservedAt(samples: readonly UsageSample[], t: number): number {
  let value = 0;
  for (const s of samples) {
    if (s.at > t) break;
    value = s.reserved;
  }
  return value;
}

/** The rate over one window ending at `now`. Samples must be oldest first. */
export function windowRate(samples: readonly UsageSample[], now: number, window: RateWindow): WindowRate {
  const length = RATE_WINDOWS[window];
  const first = samples[0];
  if (!first) return { window, perSecond: undefined, samples: 0, sufficient: false };
  // A version younger than the window is measured from its first reservation.
  const start = Math.max(now - length, first.at);
  let inside = 0;
  let largest = 0;
  samples.forEach((sample, i) => {
    if (sample.at <= start || sample.at > now) return;
    inside++;
    largest = Math.max(largest, sample.reserved - (samples[i - 1]?.reserved ?? 0));
  });
  const elapsed = now - start;
  if (elapsed <= 0) return { window, perSecond: undefined, samples: inside, sufficient: false };
  const delta = reservedAt(samples, now) - reservedAt(samples, start);
  return {
    window,
    perSecond: (delta / elapsed) * 1000,
    samples: inside,
    // Half the window observed, so a young version's first minutes do not stand for a whole day.
    sufficient: elapsed >= length / 2 && delta > 0 && delta >= MIN_BLOCKS_IN_WINDOW * largest,
  };
}

/** Rates over every window, and the one to project with. */
export function usageRates(samples: readonly UsageSample[], now: number): UsageRates {
  const windows = (Object.keys(RATE_WINDOWS) as RateWindow[]).map((w) => windowRate(samples, now, w));
  const first = samples[0];
  const last = samples.at(-1);
  let lifetimePerSecond: number | undefined;
  if (first && last && samples.length >= 2 && now > first.at) {
    lifetimePerSecond = ((last.reserved - first.reserved) / (now - first.at)) * 1000;
  }
  let best: WindowRate | undefined;
  for (const w of windows) {
    if (w.sufficient && w.perSecond !== undefined && (!best || w.perSecond > best.perSecond!)) best = w;
  }
  if (best) return { windows, lifetimePerSecond, projectionPerSecond: best.perSecond, basis: best.window };
  if (lifetimePerSecond !== undefined) {
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
