/**
 * The narrow window the crash suite can only hit by chance, made deterministic: a process creates
 * a key (rotation) and, between reading the KEK record and committing, another process runs a
 * whole KEK rotation A → B. Without a guard the new key lands wrapped with A after the rotation
 * re-wrapped everything and declared itself complete: processes holding only B can never unwrap
 * it, and running the KEK rotation again does nothing (the store says it is done). Both backends
 * must refuse the stale wrap in the commit, and the keyring must then wrap again with B.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDir } from '../support/temp-dir.ts';

let server: TestPostgres;
let dir: string;
beforeAll(async () => {
  server = await startPostgres();
  dir = await tempDir('tk-kek-race-');
}, 120_000);
afterAll(async () => {
  await server?.stop();
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

/** The same store, whose first `commit` waits for `beforeCommit` (another process's work). */
function pausedBeforeFirstCommit(store: Keystore, beforeCommit: () => Promise<void>): Keystore {
  let paused = false;
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'commit') {
        return async (...args: Parameters<Keystore['commit']>) => {
          if (!paused) {
            paused = true;
            await beforeCommit();
          }
          return target.commit(...args);
        };
      }
      const value = Reflect.get(target, prop, receiver);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}

const backends: [string, () => Promise<() => Promise<Keystore>>][] = [
  [
    'file',
    async () => {
      const path = await mkdtemp(join(dir, 'store-'));
      return () => FileKeystore.open({ dir: path });
    },
  ],
  [
    'postgres',
    async () => {
      const url = await server.newDatabase('kekrace');
      return () => PostgresKeystore.open({ connectionString: url, pollIntervalMs: 3_600_000 });
    },
  ],
];

describe.each(backends)('a key created while a KEK rotation runs (%s keystore)', (_name, makeStore) => {
  it('is wrapped with the new KEK, not stranded under the retired one', async () => {
    const open = await makeStore();
    const [a, b] = [LocalKek.fromBase64(generateKekBase64()), LocalKek.fromBase64(generateKekBase64())];
    const setupStore = await open();
    const setup = await Keyring.open({ keystore: setupStore, kek: a });
    await setup.createNamespace('orders');
    await setup.close();
    await setupStore.close();

    // Process 2: the operator's KEK rotation, run to completion inside process 1's window.
    const rekeyStore = await open();
    const rekeying = await Keyring.open({ keystore: rekeyStore, kek: a });
    const storeOne = await open();
    const one = await Keyring.open({
      keystore: pausedBeforeFirstCommit(storeOne, async () => {
        expect((await rekeying.rekey(b)).rewrapped).toBe(1);
      }),
      kek: a,
      previousKeks: [b],
    });
    const rotated = await one.rotate('orders');
    expect(rotated.current.version).toBe(2);

    const info = (await storeOne.getKekInfo())!;
    expect(info.currentKekId).toBe(b.id);
    expect(info.rekey).toBeUndefined();
    expect((await storeOne.getMaterial('orders', 2))?.kekId).toBe(b.id);

    // A process that holds only the new KEK reads every key.
    const onlyB = await Keyring.open({ keystore: rekeyStore, kek: b });
    for (const version of [1, 2])
      expect((await onlyB.decryptionKey('orders', version)).exportMaterial()).toHaveLength(32);
    for (const k of [one, rekeying, onlyB]) await k.close();
    await storeOne.close();
    await rekeyStore.close();
  }, 60_000);
});
