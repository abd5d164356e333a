import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { type RotationPolicy, resolvePolicy } from '../../src/rotation/rotation-policy.ts';
import { Rotator, type RotatorAction } from '../../src/rotation/rotator.ts';
import { UsageMeter } from '../../src/rotation/usage-meter.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

/**
 * A year of traffic in seconds: the meter, the rotator and a keyring over a MemoryKeystore, driven
 * by a ManualClock in 10-minute steps (each step's encryptions spent in chunks of 100k), with the
 * rotator checking every hour. "Truth" is what the keyring handed out per version.
 */

const T0 = Date.UTC(2026, 0, 1);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;
const STEP = 10 * MIN;
const MAX_BLOCK = 1_000_000;

interface Rotation {
  at: number;
  action: RotatorAction;
  /** The active version when the rotation started, and what it had truly encrypted by then. */
  from: number;
  trueCount: number;
}

async function simulate(policy: RotationPolicy, days: number, perDay: (day: number) => number) {
  const clock = new ManualClock(T0);
  const store = new MemoryKeystore();
  const meter = new UsageMeter({
    keystore: store,
    clock,
    holder: 'sim',
    maxBlock: MAX_BLOCK,
    flushIntervalMs: HOUR,
  });
  const keyring = await Keyring.open({
    keystore: store,
    kek: new LocalKek(randomBytes(32)),
    clock,
    meter,
    refreshIntervalMs: HOUR,
  });
  await keyring.createNamespace('default');
  const rotator = new Rotator({
    keyring,
    keystore: store,
    policies: () => policy,
    clock,
    checkIntervalMs: HOUR,
  });
  const truth = new Map<number, number>();
  const rotations: Rotation[] = [];
  const promotions: { at: number; version: number }[] = [];
  let carry = 0;
  for (let t = T0; t < T0 + days * DAY; ) {
    clock.advance(STEP);
    t = clock.now();
    if ((t - T0) % HOUR === 0) {
      const active = (await keyring.versions('default')).find((v) => v.state === 'active')!.version;
      for (const action of (await rotator.runOnce()).actions) {
        if (action.action === 'prepublished')
          rotations.push({ at: t, action, from: active, trueCount: truth.get(active) ?? 0 });
        if (action.action === 'promoted') promotions.push({ at: t, version: action.version! });
      }
    }
    carry += (perDay((t - T0) / DAY) * STEP) / DAY;
    let volume = Math.floor(carry);
    carry -= volume;
    while (volume > 0) {
      const chunk = Math.min(100_000, volume);
      const key = await keyring.encryptionKey('default', chunk);
      truth.set(key.version, (truth.get(key.version) ?? 0) + chunk);
      volume -= chunk;
    }
  }
  await meter.flush();
  const usage = new Map<number, { reserved: number; used: number }>();
  for (const v of truth.keys()) usage.set(v, await store.getUsage('default', v));
  await keyring.close();
  return { truth, rotations, promotions, usage };
}

function expectCountsSound(result: Awaited<ReturnType<typeof simulate>>, policy: RotationPolicy) {
  for (const [version, count] of result.truth) {
    const stored = result.usage.get(version)!;
    expect(count, `version ${version} stayed within its budget`).toBeLessThanOrEqual(policy.maxEncryptions);
    expect(stored.reserved, `version ${version}: reserved never below the truth`).toBeGreaterThanOrEqual(
      count,
    );
    expect(stored.reserved - count, `version ${version}: over-count within one block`).toBeLessThanOrEqual(
      MAX_BLOCK,
    );
    expect(stored.used).toBe(count);
  }
}

const steady = () => 40e6;

describe('rotation over a simulated year', () => {
  it('at 40M/day without max age: every version rotates lead time before its projected limit', async () => {
    const policy = resolvePolicy({ maxAge: null });
    const result = await simulate(policy, 365, steady);
    expectCountsSound(result, policy);
    // 14.6e9 encryptions: three full budgets, each started about 7 days (280M encryptions) early.
    expect(result.rotations.length).toBe(4);
    for (const r of result.rotations) {
      expect(r.action.projection!.reason!.kind).toBe('encryptions');
      const trueDaysLeft = (policy.maxEncryptions - r.trueCount) / 40e6;
      expect(trueDaysLeft).toBeGreaterThan(7 - 0.5);
      expect(trueDaysLeft).toBeLessThan(7 + 0.5);
      // The projected limit agrees with the true one within half a day.
      expect(Math.abs(r.action.projection!.limitAt! - (r.at + trueDaysLeft * DAY))).toBeLessThan(DAY / 2);
    }
    // Each new version becomes active one check after it was published (>= propagationDelay).
    expect(result.promotions.map((p) => p.at)).toEqual(result.rotations.map((r) => r.at + HOUR));
  });

  it('at 40M/day with the defaults: max age rotates every 30 days', async () => {
    const policy = resolvePolicy();
    const result = await simulate(policy, 365, steady);
    expectCountsSound(result, policy);
    expect(result.rotations.every((r) => r.action.projection!.reason!.kind === 'max-age')).toBe(true);
    expect(result.promotions.length).toBe(12);
    const starts = [T0, ...result.promotions.map((p) => p.at)];
    for (let i = 1; i < starts.length; i++) {
      // 30 days, within one hourly check.
      expect(starts[i]! - starts[i - 1]!).toBeGreaterThanOrEqual(30 * DAY);
      expect(starts[i]! - starts[i - 1]!).toBeLessThanOrEqual(30 * DAY + HOUR);
    }
  });

  it('a 10x burst moves rotation earlier, and no version exceeds its limit', async () => {
    const policy = resolvePolicy({ maxAge: null });
    const burst = (day: number) => (day >= 20 && day < 30 ? 400e6 : 40e6);
    const [calm, bursty] = await Promise.all([simulate(policy, 60, steady), simulate(policy, 60, burst)]);
    expectCountsSound(bursty, policy);
    expect(calm.rotations).toHaveLength(0);
    // The burst alone would spend the budget around day 27.7: rotation starts well before.
    const first = bursty.rotations[0]!;
    expect((first.at - T0) / DAY).toBeGreaterThan(20);
    expect((first.at - T0) / DAY).toBeLessThan(25);
    // At 400M/day the 7-day lead is capped at half the budget's life (~4.8 days).
    expect(first.action.reason).toMatch(
      /^encryptions projected to reach 3\.87e9 within lead time 4\.[0-9] d \(at 4[0-9]{3}\/s, 1[mhd] rate\)$/,
    );
    expect(bursty.rotations.length).toBeGreaterThanOrEqual(2);
  });

  it('a small budget rotates many times and never overspends', async () => {
    const policy = resolvePolicy({ maxEncryptions: 20_000_000, maxAge: null });
    const result = await simulate(policy, 60, steady);
    expectCountsSound(result, policy);
    expect(result.rotations.length).toBeGreaterThan(100);
    expect(Math.max(...result.truth.values())).toBeLessThanOrEqual(20_000_000);
  });
});
