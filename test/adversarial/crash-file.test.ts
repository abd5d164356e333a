/**
 * Crash suite, file keystore: five real processes (create, immediate rotation, two-phase rotation,
 * KEK rotation with rotations meanwhile, metered encryption) share one keystore directory and are
 * SIGKILLed at random points, round after round; the store is checked after every round (see
 * fixtures/crash-harness.ts). Complements test/keystore/file-keystore-processes.test.ts, which
 * kills one process at a time and does not check payloads or usage counts.
 */
import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';
import { runCrashRounds, seedStore } from './fixtures/crash-harness.ts';

let dir: string;
beforeAll(async () => {
  dir = await tempDir('tk-crash-file-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

describe('crashes on the file keystore', () => {
  it('loses no key, payload or count when every operation is SIGKILLed at random points', async () => {
    const store = join(dir, 'store');
    const keks = [generateKekBase64(), generateKekBase64(), generateKekBase64()];
    const open = () => FileKeystore.open({ dir: store, lockTimeoutMs: 30_000 });
    const seed = await open();
    await seedStore(seed, keks[0]!);
    await seed.close();

    const stats = await runCrashRounds({
      backend: {
        env: { DIR: store },
        open,
        checkStorage: async (keystore) => {
          await (keystore as FileKeystore).check();
        },
      },
      keks,
      log: join(dir, 'payloads.jsonl'),
      rounds: Number(process.env.CRASH_ROUNDS ?? 20),
      minRounds: 8,
      budgetMs: 90_000,
    });
    if (process.env.SHOW_NUMBERS) console.log('file crash suite', stats);
    expect(stats.kills).toBeGreaterThanOrEqual(40);
    expect(stats.payloads).toBeGreaterThan(stats.rounds);
    expect(stats.printedUsed).toBeGreaterThan(0);
  }, 240_000);
});
