import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import {
  DEFAULT_ROTATION_POLICY,
  type RotationPolicy,
  resolvePolicy,
} from '../../src/rotation/rotation-policy.ts';
import { ROTATOR_LEASE, Rotator, type RotatorMetrics } from '../../src/rotation/rotator.ts';
import { UsageMeter } from '../../src/rotation/usage-meter.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import type { Logger } from '../../src/runtime/logger.ts';

const DAY = 86_400_000;

/** A second handle on the same store without push notifications: it learns only by polling or on demand. */
function pollingHandle(store: MemoryKeystore): Keystore {
  const handle = store.reopen();
  return Object.assign(handle, { subscribe: undefined });
}

async function world(policy: RotationPolicy = DEFAULT_ROTATION_POLICY) {
  const clock = new ManualClock();
  const store = new MemoryKeystore();
  const kek = new LocalKek(randomBytes(32));
  const open = async (keystore: Keystore = store.reopen()) => {
    const meter = new UsageMeter({ keystore, clock });
    const keyring = await Keyring.open({ keystore, kek, clock, meter, refreshIntervalMs: 30_000 });
    return { keystore, keyring, meter };
  };
  const a = await open(store);
  await a.keyring.createNamespace('default');
  const logs: { level: string; obj: object; msg?: string }[] = [];
  const logger: Logger = {
    debug: () => {},
    info: (obj, msg) => logs.push({ level: 'info', obj, msg }),
    warn: (obj, msg) => logs.push({ level: 'warn', obj, msg }),
    error: (obj, msg) => logs.push({ level: 'error', obj, msg }),
  };
  const events: unknown[] = [];
  const metrics: RotatorMetrics = {
    rotation: (e) => events.push({ rotation: e }),
    usage: (s) => events.push({ usage: s }),
  };
  const rotatorOf = (keyring: Keyring, keystore: Keystore, holder: string) =>
    new Rotator({ keyring, keystore, policies: () => policy, clock, logger, metrics, holder });
  return { clock, store, kek, a, open, logs, events, rotatorOf };
}

describe('Rotator', () => {
  it('rotates in two phases: publishes, waits for propagation, then activates', async () => {
    const { clock, a, logs, events, rotatorOf } = await world();
    const rotator = rotatorOf(a.keyring, a.keystore, 'r1');
    expect((await rotator.runOnce()).actions).toMatchObject([{ namespace: 'default', action: 'none' }]);

    clock.advance(30 * DAY - 120_000); // max age minus propagation delay
    const first = await rotator.runOnce();
    expect(first).toMatchObject({
      leader: true,
      actions: [{ action: 'prepublished', version: 2, reason: 'max age 30 d' }],
    });
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['active', 'prepublished']);
    // Encryption still uses version 1 while every process learns version 2.
    expect((await a.keyring.encryptionKey('default', 1)).version).toBe(1);

    clock.advance(60_000);
    expect((await rotator.runOnce()).actions[0]).toMatchObject({
      action: 'waiting-for-propagation',
      version: 2,
    });
    clock.advance(60_000);
    expect((await rotator.runOnce()).actions[0]).toMatchObject({ action: 'promoted', version: 2 });
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['inactive', 'active']);
    expect((await a.keyring.encryptionKey('default', 1)).version).toBe(2);

    expect(logs.filter((l) => l.msg?.startsWith('rotation:')).map((l) => l.msg)).toEqual([
      'rotation: new key version published (max age 30 d)',
      'rotation: new key version active',
    ]);
    expect(events.filter((e) => 'rotation' in (e as object))).toEqual([
      { rotation: { namespace: 'default', phase: 'prepublish', reason: 'max-age' } },
      { rotation: { namespace: 'default', phase: 'promote', reason: 'propagated' } },
    ]);
    expect(events.find((e) => 'usage' in (e as object))).toMatchObject({
      usage: { namespace: 'default', version: 1 },
    });
  });

  it('rotates when the budget is spent, and leaves disabled namespaces alone (still counting)', async () => {
    const policy = resolvePolicy({ maxEncryptions: 1_000_000, maxAge: null });
    const { clock, a, rotatorOf } = await world(policy);
    await a.keystore.reserveUsage('default', 1, 1_000_000, clock.now());
    const disabled = new Rotator({
      keyring: a.keyring,
      keystore: a.keystore,
      policies: () => ({ ...policy, enabled: false }),
      clock,
      holder: 'off',
    });
    expect((await disabled.runOnce()).actions[0]).toMatchObject({ action: 'disabled', version: 1 });
    await disabled.stop();
    const run = await rotatorOf(a.keyring, a.keystore, 'on').runOnce();
    // Spent: no prepublish and propagation delay, a new version active at once.
    expect(run.actions[0]).toMatchObject({ action: 'emergency-rotated', version: 2 });
    expect(run.actions[0]!.reason).toMatch(/^encryption budget spent \(1\.0M of 1\.0M reserved\)$/);
    expect((await a.keyring.versions('default')).map((v) => `${v.version}:${v.state}`)).toEqual([
      '1:inactive',
      '2:active',
    ]);
  });

  it('two rotators on one keystore rotate exactly once', async () => {
    const { clock, store, a, open, rotatorOf } = await world();
    const b = await open(store.reopen());
    const r1 = rotatorOf(a.keyring, a.keystore, 'r1');
    const r2 = rotatorOf(b.keyring, b.keystore, 'r2');
    clock.advance(30 * DAY);
    const runs = await Promise.all([r1.runOnce(), r2.runOnce(), r1.runOnce(), r2.runOnce()]);
    expect(runs.filter((r) => r.leader).length).toBeGreaterThanOrEqual(1);
    expect(runs.flatMap((r) => r.actions).filter((x) => x.action === 'prepublished')).toHaveLength(1);
    // The leader stops: the other takes over once the lease expires, and completes the rotation.
    await r1.stop();
    clock.advance(5 * 60_000);
    const [x, y] = await Promise.all([r2.runOnce(), r1.runOnce()]);
    expect([x, y].flatMap((r) => r.actions).filter((v) => v.action === 'promoted')).toHaveLength(1);
    const versions = await a.keyring.versions('default');
    expect(versions.map((v) => `${v.version}:${v.state}`)).toEqual(['1:inactive', '2:active']);
    // Even without the lease, the conditional rotation makes racing rotators rotate once.
    await a.keystore.releaseLease(ROTATOR_LEASE, 'r1');
    await a.keystore.releaseLease(ROTATOR_LEASE, 'r2');
    clock.advance(30 * DAY);
    const results = await Promise.all([
      a.keyring.rotate('default', { mode: 'prepublish', expectedActiveVersion: 2 }),
      b.keyring.rotate('default', { mode: 'prepublish', expectedActiveVersion: 2 }),
    ]);
    expect(results.filter((r) => r.performed)).toHaveLength(1);
    expect((await a.keyring.versions('default')).length).toBe(3);
  });

  it('a keyring that meets a newer version refreshes and decodes it', async () => {
    const { clock, store, a, kek, rotatorOf } = await world();
    // Process B has no push and polls only yearly; it has cached the namespace before the rotation.
    const bStore = pollingHandle(store);
    const b = await Keyring.open({ keystore: bStore, kek, clock, refreshIntervalMs: 365 * DAY });
    const codecB = new EncryptionCodec({ namespace: 'default', keys: b });
    const codecA = new EncryptionCodec({ namespace: 'default', keys: a.keyring });
    await codecB.encode([{ metadata: {}, data: new TextEncoder().encode('warm cache') }]);

    const rotator = rotatorOf(a.keyring, a.keystore, 'r');
    clock.advance(30 * DAY);
    await rotator.runOnce();
    clock.advance(120_000);
    expect((await rotator.runOnce()).actions[0]!.action).toBe('promoted');

    const [payload] = await codecA.encode([
      {
        metadata: { encoding: new TextEncoder().encode('binary/plain') },
        data: new TextEncoder().encode('hello'),
      },
    ]);
    const [decoded] = await codecB.decode([payload!]);
    expect(new TextDecoder().decode(decoded!.data!)).toBe('hello');
    // B learned version 2 on demand.
    expect((await b.decryptionKey('default', 2)).version).toBe(2);
    await b.close();
  });

  it('start() checks on the clock until stop()', async () => {
    const { clock, a, rotatorOf, store } = await world();
    const rotator = rotatorOf(a.keyring, a.keystore, 'timer');
    rotator.start();
    await rotator.idle();
    expect(await store.tryAcquireLease(ROTATOR_LEASE, 'someone-else', 1000, clock.now())).toBe(false);
    clock.advance(30 * DAY - 120_000);
    await rotator.idle();
    clock.advance(60_000);
    await rotator.idle();
    clock.advance(60_000);
    await rotator.idle();
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['inactive', 'active']);
    await rotator.stop();
    // stop() gave the lease up.
    expect(await store.tryAcquireLease(ROTATOR_LEASE, 'someone-else', 1000, clock.now())).toBe(true);
  });

  it('promotes by a timer at prepublish + propagationDelay, not at the next check', async () => {
    const { clock, a, rotatorOf } = await world();
    const rotator = rotatorOf(a.keyring, a.keystore, 'timer');
    rotator.start();
    await rotator.idle();
    // Age trigger: the backstop check (every 60 s) prepublishes; the promotion comes exactly 2 min later.
    clock.advance(30 * DAY - 120_000);
    await rotator.idle();
    const pending = (await a.keyring.versions('default')).find((v) => v.state === 'prepublished')!;
    clock.advance(pending.createdAt + 120_000 - clock.now() - 1);
    await rotator.idle();
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['active', 'prepublished']);
    clock.advance(1);
    await rotator.idle();
    const after = await a.keyring.versions('default');
    expect(after.map((v) => v.state)).toEqual(['inactive', 'active']);
    expect(after[1]!.activatedAt).toBe(pending.createdAt + 120_000);
    await rotator.stop();
  });

  it('a reservation crossing the rotation threshold wakes the rotator at once', async () => {
    const policy = resolvePolicy({ maxEncryptions: 1_000_000, maxAge: null, leadTime: '1h' });
    const { clock, a } = await world(policy);
    const meter = new UsageMeter({ keystore: a.keystore, clock, policies: () => policy });
    const rotatorWithMeter = new Rotator({
      keyring: a.keyring,
      keystore: a.keystore,
      policies: () => policy,
      clock,
      checkIntervalMs: 24 * 60 * 60_000,
      meter,
      holder: 'woken',
    });
    rotatorWithMeter.start();
    await rotatorWithMeter.idle();
    // 100/s for ten minutes (the 1-minute window counts), then a burst past half the budget.
    for (let i = 0; i < 600; i++) {
      clock.advance(1000);
      await meter.spend('default', 1, 100);
    }
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['active']);
    for (let i = 0; i < 100; i++) {
      clock.advance(1000);
      await meter.spend('default', 1, 10_000);
      await rotatorWithMeter.idle();
      if ((await a.keyring.versions('default')).length > 1) break;
    }
    expect((await a.keyring.versions('default')).map((v) => v.state)).toEqual(['active', 'prepublished']);
    await rotatorWithMeter.stop();
    await meter.close();
  });

  it('a lease change mid-rotation still promotes once, on time', async () => {
    const { clock, store, a, open, rotatorOf } = await world();
    const b = await open(store.reopen());
    const r1 = rotatorOf(a.keyring, a.keystore, 'r1');
    const r2 = rotatorOf(b.keyring, b.keystore, 'r2');
    clock.advance(30 * DAY);
    expect((await r1.runOnce()).actions[0]).toMatchObject({
      action: 'prepublished',
      next: { action: 'promote' },
    });
    // r1 dies holding the lease; r2 runs on its timers and takes over once the lease expires.
    r2.start();
    await r2.idle();
    for (let i = 0; i < 10; i++) {
      clock.advance(60_000);
      await r2.idle();
    }
    await r1.runOnce(); // r1 comes back: the promotion is done, nothing more happens
    const versions = await a.keyring.versions('default');
    expect(versions.map((v) => `${v.version}:${v.state}`)).toEqual(['1:inactive', '2:active']);
    await r2.stop();
  });

  it('validates its options', () => {
    const keystore = new MemoryKeystore();
    const keyring = {} as Keyring;
    expect(() => new Rotator({ keystore, keyring } as never)).toThrow('policies: must be a function');
    expect(
      () =>
        new Rotator({
          keystore,
          keyring,
          policies: () => DEFAULT_ROTATION_POLICY,
          checkIntervalMs: 1000,
          leaseTtlMs: 500,
        }),
    ).toThrow('leaseTtlMs: must be longer than checkIntervalMs (1000)');
    expect(
      () => new Rotator({ keystore, keyring, policies: () => DEFAULT_ROTATION_POLICY, checkIntervalMs: 0 }),
    ).toThrow('checkIntervalMs: must be a positive number of milliseconds');
  });
});
