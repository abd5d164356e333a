import { describe, expect, it } from 'vitest';
import type { UsageSample } from '../../src/keystore/keystore.ts';
import { DEFAULT_ROTATION_POLICY } from '../../src/rotation/rotation-policy.ts';
import { projectRotation } from '../../src/rotation/rotation-projection.ts';
import { formatCount, formatRate, usageRates, windowRate } from '../../src/rotation/usage-rate.ts';

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

/** Reservations of `block` every `everyMs` from `from` to `to` (exclusive), continuing a history. */
function reservations(
  from: number,
  to: number,
  everyMs: number,
  block: number,
  start: UsageSample[] = [],
): UsageSample[] {
  const out = [...start];
  let reserved = out.at(-1)?.reserved ?? 0;
  for (let t = from; t < to; t += everyMs) {
    reserved += block;
    out.push({ at: t, reserved });
  }
  return out;
}

describe('usage rates', () => {
  it('is undefined without history and zero-but-unreliable right after the first reservation', () => {
    expect(usageRates([], T0)).toMatchObject({ projectionPerSecond: undefined, basis: undefined });
    const one = usageRates([{ at: T0, reserved: 100 }], T0 + 1000);
    expect(one.projectionPerSecond).toBeUndefined();
    expect(one.windows.every((w) => !w.sufficient)).toBe(true);
  });

  it('measures a steady rate in every window', () => {
    // 1000 encryptions/s in blocks of 5000 every 5 s, for two days.
    const samples = reservations(T0, T0 + 2 * DAY, 5000, 5000);
    const now = T0 + 2 * DAY;
    const rates = usageRates(samples, now);
    for (const w of rates.windows) {
      expect(w.sufficient).toBe(true);
      // Block granularity: about one block in ten either way.
      expect(w.perSecond).toBeGreaterThan(900);
      expect(w.perSecond).toBeLessThan(1100);
    }
    expect(rates.projectionPerSecond).toBeGreaterThan(990);
  });

  it('does not trust a window holding few large blocks', () => {
    // 1M blocks every 30 min: a minute or an hour holds at most two; the day holds 48.
    const samples = reservations(T0, T0 + DAY + HOUR, 30 * MIN, 1_000_000);
    const now = T0 + DAY + HOUR + 1000;
    expect(windowRate(samples, now, '1m').sufficient).toBe(false);
    expect(windowRate(samples, now, '1h').sufficient).toBe(false);
    const day = windowRate(samples, now, '1d');
    expect(day.sufficient).toBe(true);
    const rates = usageRates(samples, now);
    expect(rates.basis).toBe('1d');
    // 47 blocks in the day: within one block of the true 555.6/s.
    expect(Math.abs(rates.projectionPerSecond! - 1_000_000 / 1800)).toBeLessThan((1_000_000 / DAY) * 1000);
  });

  it('takes the highest sufficient window, so that a burst counts', () => {
    // A day at 100/s, then the last hour at 1000/s.
    let samples = reservations(T0, T0 + DAY, 10_000, 1000);
    samples = reservations(T0 + DAY, T0 + DAY + HOUR, 1000, 1000, samples);
    const now = T0 + DAY + HOUR;
    const rates = usageRates(samples, now);
    expect(['1m', '1h']).toContain(rates.basis);
    expect(rates.projectionPerSecond).toBeCloseTo(1000, -1);
    expect(rates.windows.find((w) => w.window === '1d')!.perSecond).toBeLessThan(200);
  });

  it('sees traffic stop in the short windows but keeps the day window', () => {
    const samples = reservations(T0, T0 + DAY, 5000, 5000);
    const now = T0 + DAY + 2 * HOUR;
    const rates = usageRates(samples, now);
    expect(rates.windows.find((w) => w.window === '1m')!.perSecond).toBe(0);
    expect(rates.windows.find((w) => w.window === '1h')!.perSecond).toBe(0);
    expect(rates.basis).toBe('1d');
  });

  it('formats counts and rates', () => {
    expect(formatCount(3_865_470_566)).toBe('3.87e9');
    expect(formatCount(46_300)).toBe('46.3k');
    expect(formatCount(2_500_000)).toBe('2.5M');
    expect(formatRate(463.2)).toBe('463/s');
    expect(formatRate(undefined)).toBe('n/a');
  });
});

describe('rotation projection', () => {
  const active = { state: 'active' as const, createdAt: T0, activatedAt: T0 };

  it('projects the limit and starts rotation lead time before it', () => {
    // 40M/day in blocks of 100k.
    const perMs = 40e6 / DAY;
    const samples = reservations(T0, T0 + 50 * DAY, 100_000 / perMs, 100_000);
    const now = T0 + 50 * DAY;
    const usage = {
      reserved: samples.at(-1)!.reserved,
      used: 0,
      samples: samples.filter((s) => s.at >= now - 25 * HOUR),
    };
    const p = projectRotation(active, usage, { ...DEFAULT_ROTATION_POLICY, maxAge: null }, now);
    expect(p.reason?.kind).toBe('encryptions');
    expect(p.reason?.text).toMatch(
      /^encryptions projected to reach 3\.87e9 within lead time 7 d \(at 46[0-9]\/s, 1[hd] rate\)$/,
    );
    const limitDays = (p.limitAt! - now) / DAY;
    expect(limitDays).toBeGreaterThan(45);
    expect(limitDays).toBeLessThan(47);
    expect((p.limitAt! - p.rotateAt!) / DAY).toBeCloseTo(7, 1);
    expect(p.due).toBe(false);
  });

  it('caps the lead at half the projected life at very high rates', () => {
    // 100k/s: the budget lasts ~0.45 days, far less than the 7-day lead time.
    const samples = reservations(T0, T0 + 2 * HOUR, 10_000, 1_000_000);
    const now = T0 + 2 * HOUR;
    const usage = { reserved: samples.at(-1)!.reserved, used: 0, samples };
    const p = projectRotation(active, usage, { ...DEFAULT_ROTATION_POLICY, maxAge: null }, now);
    expect(p.due).toBe(false);
    expect(p.reason?.text).toMatch(/within lead time 5\.4 h/);
  });

  it('never rotates for encryptions before half the budget is reserved, however high the rate', () => {
    // Two reservations a millisecond apart: an absurd lifetime rate of ~1M/s.
    const samples = [
      { at: T0, reserved: 100 },
      { at: T0 + 1, reserved: 1_000_100 },
    ];
    for (const reserved of [1_000_100, 1e9, 1.9e9]) {
      const p = projectRotation(
        active,
        { reserved, used: 0, samples },
        { ...DEFAULT_ROTATION_POLICY, maxAge: null },
        T0 + 1000,
      );
      expect(p.due).toBe(false);
    }
    const half = projectRotation(
      active,
      { reserved: DEFAULT_ROTATION_POLICY.maxEncryptions / 2, used: 0, samples },
      { ...DEFAULT_ROTATION_POLICY, maxAge: null },
      T0 + 1000,
    );
    expect(half.due).toBe(true);
  });

  it('rotates for age propagationDelay before maxAge, and at once when the budget is spent', () => {
    const usage = { reserved: 10, used: 0, samples: [{ at: T0, reserved: 10 }] };
    const p = projectRotation(active, usage, DEFAULT_ROTATION_POLICY, T0 + DAY);
    expect(p.reason).toEqual({ kind: 'max-age', text: 'max age 30 d' });
    expect(p.rotateAt).toBe(T0 + 30 * DAY - 120_000);
    expect(p.maxAgeAt).toBe(T0 + 30 * DAY);
    const spent = projectRotation(
      active,
      { reserved: 4e9, used: 0, samples: [] },
      DEFAULT_ROTATION_POLICY,
      T0 + DAY,
    );
    expect(spent).toMatchObject({ due: true, rotateAt: T0 + DAY, reason: { kind: 'budget-spent' } });
    const none = projectRotation(
      active,
      { reserved: 0, used: 0, samples: [] },
      { ...DEFAULT_ROTATION_POLICY, maxAge: null },
      T0,
    );
    expect(none).toMatchObject({ due: false, rotateAt: undefined, reason: undefined, limitAt: undefined });
  });
});
