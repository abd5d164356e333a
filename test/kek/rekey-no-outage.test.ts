import { execFile } from 'node:child_process';
import { cp, rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';

const CHILD = resolve(import.meta.dirname, 'fixtures/rekey-child.ts');
const NAMESPACES = ['a', 'b', 'c'];
// 1 write starts the rekey, 3 re-wrap the keys, 1 completes it.
const WRITES = 1 + NAMESPACES.length + 1;

/** Every namespace's key, as a freshly started process holding only `kek` reads it. */
async function readAll(dir: string, kek: LocalKek): Promise<string[]> {
  const store = await FileKeystore.open({ dir });
  try {
    const keyring = await Keyring.open({ keystore: store, kek });
    try {
      return await Promise.all(
        NAMESPACES.map(async (ns) =>
          Buffer.from((await keyring.decryptionKey(ns, 1)).exportMaterial()).toString('hex'),
        ),
      );
    } finally {
      await keyring.close();
    }
  } finally {
    await store.close();
  }
}

describe('rekey without an outage', () => {
  let base: string;
  let seed: string;
  const oldB64 = generateKekBase64();
  const newB64 = generateKekBase64();
  const oldKek = LocalKek.fromBase64(oldB64);
  const newKek = LocalKek.fromBase64(newB64);
  let materials: string[];

  beforeAll(async () => {
    base = await tempDir('tk-rekey-kill-');
    seed = join(base, 'seed');
    const store = await FileKeystore.open({ dir: seed });
    const keyring = await Keyring.open({ keystore: store, kek: oldKek });
    for (const ns of NAMESPACES) await keyring.createNamespace(ns);
    await keyring.close();
    await store.close();
    materials = await readAll(seed, oldKek);
  });
  afterAll(() => rm(base, { recursive: true, force: true, maxRetries: 5 }));

  const points = Array.from({ length: WRITES }, (_, i) => i + 1).flatMap((k) => [
    [k, 'before'] as const,
    [k, 'after'] as const,
  ]);

  it.each(points)(
    'a rekey SIGKILLed at write %i (%s) leaves every key readable with only the old KEK, and the rekey finishes',
    async (k, when) => {
      const dir = join(base, `kill-${k}-${when}`);
      await cp(seed, dir, { recursive: true });
      const child = await promisify(execFile)(
        process.execPath,
        ['--import', 'tsx', CHILD, dir, oldB64, newB64, String(k), when],
        { timeout: 60_000 },
      ).then(
        (r) => ({ killed: false, stdout: r.stdout }),
        (e: { signal?: string }) => ({ killed: e.signal === 'SIGKILL', stdout: '' }),
      );
      const completed = k === WRITES && when === 'after';
      expect(child.killed).toBe(true);
      // A freshly started process holding only the old KEK reads every key (upgrade key).
      expect(await readAll(dir, oldKek)).toEqual(materials);
      if (completed) expect(await readAll(dir, newKek)).toEqual(materials);
      // Resuming with both KEKs finishes it; then the new KEK alone reads every key.
      const store = await FileKeystore.open({ dir });
      const resumer = await Keyring.open({ keystore: store, kek: oldKek, previousKeks: [newKek] });
      await resumer.rekey(newKek);
      await resumer.close();
      await store.close();
      expect(await readAll(dir, newKek)).toEqual(materials);
      expect(await readAll(dir, oldKek)).toEqual(materials); // still, within the propagation delay
    },
  );

  it('reports the keys whose wrapped material is missing and leaves the rekey unfinished', async () => {
    const store = new MemoryKeystore();
    const keyring = await Keyring.open({ keystore: store, kek: oldKek });
    await keyring.createNamespace('a');
    await keyring.createNamespace('b');
    const broken = new Proxy(store, {
      get(target, prop) {
        if (prop === 'getMaterial') {
          return async (ns: string, v: number) => (ns === 'b' ? undefined : target.getMaterial(ns, v));
        }
        const value = Reflect.get(target, prop, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    }) as MemoryKeystore;
    const rekeying = await Keyring.open({ keystore: broken, kek: oldKek });
    const error = await rekeying.rekey(newKek).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe('ERR_KEYSTORE_CORRUPT');
    expect(error?.message).toMatch(
      /1 key version\(s\) have no wrapped material.*: b\/v1 \(1 other\(s\) re-wrapped\)/,
    );
    expect((await store.getKekInfo())?.rekey?.toKekId).toBe(newKek.id);
    await Promise.all([keyring.close(), rekeying.close()]);
  });
});
