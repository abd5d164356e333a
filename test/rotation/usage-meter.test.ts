import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import {
  KeyBudgetExhaustedError,
  KeystoreUnavailableError,
  MeterClosedError,
  UsageLimitReachedError,
  UsageReservationError,
} from '../../src/errors.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { UsageRecord } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { emergencyRotation } from '../../src/rotation/budget-guard.ts';
import { resolvePolicy } from '../../src/rotation/rotation-policy.ts';
import { defaultHolderId, UsageMeter } from '../../src/rotation/usage-meter.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

/** A memory keystore that counts reservations and can be made unreachable. */
class FlakyKeystore extends MemoryKeystore {
  reservations: number[] = [];
  down = false;
  gate: Promise<void> | undefined;
  override async reserveUsage(
    namespace: string,
    version: number,
    count: number,
    at: number,
  ): Promise<UsageRecord> {
    if (this.gate) await this.gate;
    if (this.down) throw new KeystoreUnavailableError('keystore is down');
    this.reservations.push(count);
    return super.reserveUsage(namespace, version, count, at);
  }
}

function setup(options: Partial<ConstructorParameters<typeof UsageMeter>[0]> = {}) {
  const clock = new ManualClock();
  const keystore = new FlakyKeystore();
  const meter = new UsageMeter({ keystore, clock, holder: 'test-holder', ...options });
  return { clock, keystore, meter };
}

describe('UsageMeter', () => {
  it('reserves before use and spends synchronously while the block lasts', async () => {
    const { keystore, meter } = setup();
    await meter.spend('default', 1, 1);
    expect(keystore.reservations).toEqual([100]);
    for (let i = 0; i < 99; i++) expect(meter.spend('default', 1, 1)).toBeUndefined(); // no promise: no I/O
    expect(keystore.reservations).toEqual([100]);
    const next = meter.spend('default', 1, 1);
    expect(next).toBeInstanceOf(Promise);
    await next;
    expect(keystore.reservations.length).toBe(2);
    const usage = await keystore.getUsage('default', 1);
    expect(usage.reserved).toBeGreaterThanOrEqual(101);
    expect(meter.entries()).toMatchObject([{ namespace: 'default', version: 1, used: 101 }]);
  });

  it('shares one reservation among concurrent spenders', async () => {
    const { keystore, meter } = setup();
    let open!: () => void;
    keystore.gate = new Promise((resolve) => {
      open = resolve;
    });
    const spenders = Array.from({ length: 10 }, () => meter.spend('default', 1, 5));
    expect(keystore.reservations).toEqual([]);
    open();
    await Promise.all(spenders);
    // One reservation of the first block (100) serves all ten (50).
    expect(keystore.reservations).toEqual([100]);
    expect(meter.entries()[0]!.used).toBe(50);
  });

  it('sizes blocks to a few seconds of the local rate, within bounds', async () => {
    const { clock, keystore, meter } = setup({ targetBlockMs: 5000, minBlock: 100, maxBlock: 50_000 });
    // 1000 encryptions/s in 100 ms steps.
    for (let i = 0; i < 200; i++) {
      clock.advance(100);
      await meter.spend('default', 1, 100);
    }
    const block = meter.entries()[0]!.nextBlock;
    expect(block).toBeGreaterThan(3000);
    expect(block).toBeLessThan(8000);
    // An instant burst grows the block to the maximum, never beyond.
    for (let i = 0; i < 20; i++) await meter.spend('default', 1, 10_000);
    expect(meter.entries()[0]!.nextBlock).toBe(50_000);
    expect(Math.max(...keystore.reservations)).toBeLessThanOrEqual(50_000);
    // The stored count is never below what was spent, and over by less than one block.
    const { reserved } = await keystore.getUsage('default', 1);
    const { used } = meter.entries()[0]!;
    expect(reserved).toBeGreaterThanOrEqual(used);
    expect(reserved - used).toBeLessThan(50_000);
  });

  it('a single spend larger than the block reserves what it needs', async () => {
    const { keystore, meter } = setup({ maxBlock: 1000 });
    await meter.spend('default', 1, 25_000);
    expect(keystore.reservations).toEqual([25_000]);
  });

  it('keeps encrypting within what is reserved when the keystore is down, then refuses', async () => {
    const { keystore, meter } = setup();
    await meter.spend('default', 1, 10); // reserves 100
    keystore.down = true;
    for (let i = 0; i < 9; i++) await meter.spend('default', 1, 10);
    const refused = Promise.resolve(meter.spend('default', 1, 1));
    await expect(refused).rejects.toBeInstanceOf(UsageReservationError);
    await expect(meter.spend('default', 1, 1)).rejects.toThrow(
      /could not reserve encryptions for key version 1 of namespace "default" \(keystore unreachable\?\)/,
    );
    expect(((await refused.catch((e: unknown) => e)) as Error).cause).toBeInstanceOf(
      KeystoreUnavailableError,
    );
    keystore.down = false;
    await meter.spend('default', 1, 1); // recovers
    expect(meter.entries()[0]!.used).toBe(101);
  });

  it('stops hard at the limit: exactly the limit is granted, then UsageLimitReachedError', async () => {
    const { keystore, meter } = setup({ hardLimit: 1000, minBlock: 300, maxBlock: 300 });
    const other = new UsageMeter({
      keystore: keystore.reopen(),
      hardLimit: 1000,
      minBlock: 300,
      maxBlock: 300,
    });
    let granted = 0;
    for (let i = 0; i < 100; i++) {
      for (const m of [meter, other]) {
        try {
          await m.spend('default', 1, 7);
          granted += 7;
        } catch (error) {
          expect(error).toBeInstanceOf(UsageLimitReachedError);
        }
      }
    }
    expect(granted).toBeLessThanOrEqual(1000);
    expect(granted).toBeGreaterThan(1000 - 2 * 7);
    const drain = async () => {
      for (let i = 0; i < 1000; i++) await meter.spend('default', 1, 1);
    };
    await expect(drain()).rejects.toThrow(
      'key version 1 of namespace "default" reached its encryption limit',
    );
    expect((await keystore.getUsage('default', 1)).reserved).toBeGreaterThan(1000); // over-reserved, never under
    await meter.spend('default', 2, 7); // another version is unaffected
    await other.close();
  });

  it('flushes exact used counts periodically and on close', async () => {
    const { clock, keystore, meter } = setup({ flushIntervalMs: 10_000 });
    await meter.spend('default', 1, 42);
    expect((await keystore.getUsage('default', 1)).used).toBe(0);
    clock.advance(10_000);
    await meter.flush(); // waits for the timer's flush in progress
    expect((await keystore.getUsage('default', 1)).used).toBe(42);
    await meter.spend('default', 1, 8);
    await meter.close();
    expect((await keystore.getUsage('default', 1)).used).toBe(50);
    expect(() => meter.spend('default', 1, 1)).toThrow(MeterClosedError);
  });

  it('validates its options up front, naming the field', () => {
    const keystore = new MemoryKeystore();
    expect(() => new UsageMeter({} as never)).toThrow('keystore: is required');
    expect(() => new UsageMeter({ keystore, minBlock: 0 })).toThrow('minBlock: must be a positive number');
    expect(() => new UsageMeter({ keystore, minBlock: 10, maxBlock: 5 })).toThrow(
      'maxBlock: must be at least minBlock',
    );
    expect(() => new UsageMeter({ keystore, holder: '' })).toThrow('holder: must be a non-empty string');
    const meter = new UsageMeter({ keystore, clock: new ManualClock() });
    expect(() => meter.spend('default', 1, -1)).toThrow('count: must be a non-negative integer');
    expect(defaultHolderId()).toMatch(/^.+:\d+:[0-9a-f]{12}$/);
    expect(defaultHolderId()).not.toBe(defaultHolderId());
  });

  it('never grants past maxEncryptions: refuse fails closed with ERR_KEY_BUDGET_EXHAUSTED', async () => {
    const policy = resolvePolicy({ maxEncryptions: 1_000_000, onBudgetExhausted: 'refuse' });
    const events: string[] = [];
    const { keystore, meter } = setup({ policies: () => policy });
    meter.on({ budgetExhausted: (e) => events.push(`${e.namespace}/${e.version}:${e.action}`) });
    await keystore.reserveUsage('ns', 1, 999_950, 0); // other processes spent almost all of it
    await meter.spend('ns', 1, 50);
    await expect(meter.spend('ns', 1, 1)).rejects.toMatchObject({
      code: 'ERR_KEY_BUDGET_EXHAUSTED',
      rotated: false,
    });
    await expect(meter.spend('ns', 1, 1)).rejects.toBeInstanceOf(KeyBudgetExhaustedError);
    expect(meter.entries()[0]!.used).toBe(50);
    expect(events).toEqual(['ns/1:refuse']);
    await meter.close();
  });

  it('rotate (default): an emergency rotation, and the keyring encrypts the batch under the new version', async () => {
    const clock = new ManualClock();
    const keystore = new MemoryKeystore();
    const policy = resolvePolicy({ maxEncryptions: 1_000_000, maxAge: null });
    const meter = new UsageMeter({ keystore, clock, policies: () => policy });
    const keyring = await Keyring.open({ keystore, kek: new LocalKek(randomBytes(32)), clock, meter });
    meter.setBudgetExhaustedHandler(emergencyRotation(keyring));
    const emergencies: unknown[] = [];
    meter.on({ emergencyRotation: (e) => emergencies.push(e) });
    await keyring.createNamespace('ns');
    await keystore.reserveUsage('ns', 1, 999_990, clock.now());
    expect((await keyring.encryptionKey('ns', 5)).version).toBe(1);
    // 5 left in v1's budget, a batch of 20: all 20 under v2, none past v1's budget.
    expect((await keyring.encryptionKey('ns', 20)).version).toBe(2);
    expect(emergencies).toEqual([{ namespace: 'ns', from: 1, to: 2, how: 'rotated' }]);
    expect((await keyring.versions('ns')).map((v) => v.state)).toEqual(['inactive', 'active']);
    await keyring.close();
    expect((await keystore.getUsage('ns', 1)).used).toBeLessThanOrEqual(1_000_000);
    expect((await keystore.getUsage('ns', 2)).used).toBe(20);
  });
});
