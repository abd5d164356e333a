import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { emergencyRotation } from '../../src/rotation/budget-guard.ts';
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
    // The same policy as the rotator's, as `serve` does: the lifecycle owner applies its delay.
    policies: () => policy,
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

/**
 * Seconds instead of hours: two processes (A runs the rotator, started as in `serve`, woken by its
 * meter; B learns every change `lagMs` late, the switch lag), the rotator's backstop interval, the
 * propagation delay, and the budget guard, with traffic in 1-second steps split between them.
 */
async function simulateProcesses(
  policy: RotationPolicy,
  seconds: number,
  perSecond: (second: number) => number,
  options: { checkIntervalMs: number; lagMs: number },
) {
  const clock = new ManualClock(T0);
  const store = new MemoryKeystore();
  const kek = new LocalKek(randomBytes(32));
  const lagging = (): Keystore => {
    const handle = store.reopen();
    const subscribe = handle.subscribe.bind(handle);
    return Object.assign(handle, {
      subscribe: (listener: Parameters<typeof subscribe>[0]) =>
        subscribe((event) => {
          clock.setTimer(options.lagMs, () => listener(event));
        }),
    });
  };
  const emergencies: { at: number; from: number }[] = [];
  const open = async (keystore: Keystore, holder: string) => {
    const meter = new UsageMeter({ keystore, clock, holder, policies: () => policy, flushIntervalMs: HOUR });
    const keyring = await Keyring.open({
      keystore,
      kek,
      clock,
      meter,
      refreshIntervalMs: 30_000,
      policies: () => policy,
    });
    meter.setBudgetExhaustedHandler(emergencyRotation(keyring));
    meter.on({ emergencyRotation: (e) => emergencies.push({ at: clock.now(), from: e.from }) });
    return { keyring, meter };
  };
  const a = await open(store, 'a');
  const b = await open(lagging(), 'b');
  await a.keyring.createNamespace('default');
  const promotions: { at: number; version: number; publishedAt: number }[] = [];
  const rotator = new Rotator({
    keyring: a.keyring,
    keystore: store,
    policies: () => policy,
    clock,
    checkIntervalMs: options.checkIntervalMs,
    meter: a.meter,
    metrics: {
      rotation: () => {},
      usage: () => {},
    },
  });
  const settle = async () => {
    for (let i = 0; i < 5; i++) {
      await rotator.idle();
      await new Promise((r) => setImmediate(r));
    }
  };
  rotator.start();
  await settle();
  const truth = new Map<number, number>();
  /** Per promotion, when B first encrypted under the new version. */
  const switched = new Map<number, number>();
  for (let second = 0; second < seconds; second++) {
    clock.advance(1000);
    await settle();
    let volume = Math.round(perSecond(second));
    const chunkSize = Math.min(10_000, Math.ceil(volume / 2));
    let turn = 0;
    while (volume > 0) {
      const chunk = Math.min(chunkSize, volume);
      const p = turn++ % 2 === 0 ? a : b;
      const key = await p.keyring.encryptionKey('default', chunk);
      truth.set(key.version, (truth.get(key.version) ?? 0) + chunk);
      if (p === b && !switched.has(key.version)) switched.set(key.version, clock.now());
      volume -= chunk;
    }
  }
  await rotator.stop();
  for (const v of await a.keyring.versions('default')) {
    if (v.activatedAt !== undefined && v.version > 1)
      promotions.push({ at: v.activatedAt, version: v.version, publishedAt: v.createdAt });
  }
  await a.meter.flush();
  await b.meter.flush();
  const usage = new Map<number, { reserved: number; used: number }>();
  for (const v of truth.keys()) usage.set(v, await store.getUsage('default', v));
  await a.keyring.close();
  await b.keyring.close();
  return { truth, usage, promotions, emergencies, switched };
}

describe('rotation with event-driven checks, the propagation delay and a switch lag', () => {
  it('10x bursts: no version over its budget, rotations planned ahead, B switches within its lag', async () => {
    const policy = resolvePolicy({
      maxEncryptions: 10_000_000,
      maxAge: null,
      leadTime: '10m',
      propagationDelay: '30s',
    });
    // 5k/s, with ten-minute bursts at 50k/s every hour, for six hours.
    const rate = (second: number) => (second % 3600 >= 1800 && second % 3600 < 2400 ? 50_000 : 5_000);
    const result = await simulateProcesses(policy, 6 * 3600, rate, { checkIntervalMs: 60_000, lagMs: 1000 });
    for (const [version, count] of result.truth) {
      const stored = result.usage.get(version)!;
      expect(count, `version ${version} within its budget`).toBeLessThanOrEqual(policy.maxEncryptions);
      expect(stored.reserved).toBeGreaterThanOrEqual(count);
      expect(stored.used).toBe(count);
    }
    expect(result.promotions.length).toBeGreaterThan(10);
    const planned = result.promotions.filter((p) => p.at - p.publishedAt >= 30_000);
    // Promotion on time: the timer fires at prepublish + propagationDelay (1-second steps).
    for (const p of planned) expect(p.at - p.publishedAt).toBeLessThanOrEqual(30_000 + 1000);
    // B encrypts under each new version within the switch lag plus one step.
    for (const p of result.promotions) {
      const first = result.switched.get(p.version);
      if (first !== undefined) expect(first - p.at).toBeLessThanOrEqual(1000 + 1000);
    }
    console.log(
      JSON.stringify({
        promotions: result.promotions.length,
        planned: planned.length,
        emergencies: result.emergencies.length,
        maxShareOfBudget: Math.max(...result.truth.values()) / policy.maxEncryptions,
      }),
    );
  }, 120_000);
});
