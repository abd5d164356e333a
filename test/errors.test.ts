import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { KEYRING_STATUS } from '../codec-server/error-mapping.ts';
import { EncryptionCodec } from '../src/codec/encryption-codec.ts';
import { KeyringError, type KeyringErrorCode } from '../src/errors.ts';
import { createFastEngine } from '../src/esdk/fast-engine.ts';
import { LocalKek } from '../src/kek/kek.ts';
import { Keyring } from '../src/keyring/keyring.ts';
import { MemoryKeystore } from '../src/keystore/memory-keystore.ts';
import { UsageMeter } from '../src/rotation/usage-meter.ts';
import { ManualClock } from '../src/runtime/clock.ts';
import type { RandomSource } from '../src/runtime/random.ts';
import { jsonPayload } from './codec/fixtures.ts';

async function failure(p: Promise<unknown>): Promise<{ code: KeyringErrorCode; status: number }> {
  const error = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(error).toBeInstanceOf(KeyringError);
  const code = (error as KeyringError).code;
  return { code, status: KEYRING_STATUS[code] };
}

/** A random source that breaks its contract: one byte short. */
const shortRandom: RandomSource = { bytes: (n) => randomBytes(Math.max(0, n - 1)) };

describe('runtime faults are not caller mistakes', () => {
  it('a short random draw in the engine or for a new key: ERR_RANDOM_SOURCE_FAILED, 500', async () => {
    const clock = new ManualClock();
    const keyring = await Keyring.open({
      keystore: new MemoryKeystore(),
      kek: new LocalKek(randomBytes(32)),
      clock,
    });
    await keyring.createNamespace('default');
    const codec = new EncryptionCodec({
      namespace: 'default',
      keys: keyring,
      engine: createFastEngine({ random: shortRandom }),
    });
    expect(await failure(codec.encode([jsonPayload(1)]))).toEqual({
      code: 'ERR_RANDOM_SOURCE_FAILED',
      status: 500,
    });
    const broken = await Keyring.open({
      keystore: new MemoryKeystore(),
      kek: new LocalKek(randomBytes(32)),
      clock,
      random: shortRandom,
    });
    expect(await failure(broken.createNamespace('default'))).toEqual({
      code: 'ERR_RANDOM_SOURCE_FAILED',
      status: 500,
    });
    expect(await broken.namespaces()).toEqual([]); // nothing half-made was committed
    await Promise.all([keyring.close(), broken.close()]);
  });

  it('a closed meter: ERR_METER_CLOSED, 503; a closed keyring: ERR_KEYRING_CLOSED, 503', async () => {
    const keystore = new MemoryKeystore();
    const clock = new ManualClock();
    const meter = new UsageMeter({ keystore, clock });
    const keyring = await Keyring.open({ keystore, kek: new LocalKek(randomBytes(32)), clock, meter });
    await keyring.createNamespace('default');
    await meter.close();
    expect(await failure(Promise.resolve().then(() => meter.spend('default', 1, 1)))).toEqual({
      code: 'ERR_METER_CLOSED',
      status: 503,
    });
    expect(await failure(keyring.encryptionKey('default', 1))).toEqual({
      code: 'ERR_METER_CLOSED',
      status: 503,
    });
    await keyring.close();
    expect(await failure(keyring.encryptionKey('default', 1))).toEqual({
      code: 'ERR_KEYRING_CLOSED',
      status: 503,
    });
  });
});
