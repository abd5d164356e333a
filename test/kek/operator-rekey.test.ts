import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { addShamirParams, initShamirKeystore, ShamirKek } from '../../src/kek/shamir-kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { runCli } from './support.ts';

describe('operator rekey (real processes)', () => {
  const dir = tempDirSync('tk-op-rekey-');
  const dataDir = join(dir, 'data');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  const sharesFile = (name: string, shares: string[]) => {
    const path = join(dir, name);
    writeFileSync(path, `${shares.join('\n')}\n`);
    chmodSync(path, 0o600);
    return path;
  };

  it('replaces the unseal keys, and an interrupted one is finished with the old keys then the new', async () => {
    const store = await FileKeystore.open({ dir: dataDir });
    const { shares: old, keystoreId } = await initShamirKeystore(store, { shares: 3, threshold: 2 });
    const oldKek = await ShamirKek.fromKeystore(store);
    for (const s of old.slice(0, 2)) await oldKek.submit(s);
    const keyring = await Keyring.open({ keystore: store, kek: oldKek });
    for (const ns of ['a', 'b', 'c']) await keyring.createNamespace(ns);
    const materials = await Promise.all(
      ['a', 'b', 'c'].map(async (ns) =>
        Buffer.from((await keyring.decryptionKey(ns, 1)).exportMaterial()).toString('hex'),
      ),
    );
    await keyring.close();

    // An operator rekey interrupted after re-wrapping one key (its new unseal keys were shown first).
    const made = await ShamirKek.generate({ keystoreId, shares: 4, threshold: 3 });
    await addShamirParams(store, made.params);
    let rewraps = 0;
    const crashing = new Proxy(store, {
      get(target, prop) {
        const value = Reflect.get(target, prop, target);
        if (prop !== 'rewrapMaterial') return typeof value === 'function' ? value.bind(target) : value;
        return async (...args: Parameters<Keystore['rewrapMaterial']>) => {
          if (++rewraps === 2) throw new Error('killed');
          return target.rewrapMaterial(...args);
        };
      },
    }) as Keystore;
    const interrupted = await Keyring.open({ keystore: crashing, kek: oldKek });
    await expect(interrupted.rekey(made.kek)).rejects.toThrow('killed');
    await interrupted.close();
    await store.close();

    // The old keys still open it meanwhile (the CLI reads every key).
    const oldFile = sharesFile('old', old.slice(1));
    const listed = await runCli([
      '--data-dir',
      dataDir,
      '--unseal-keys-file',
      oldFile,
      'keys',
      'list',
      '--namespace',
      'b',
    ]);
    expect(listed.code, listed.output).toBe(0);

    // Without the new keys, the command says how to finish; with them, it finishes.
    const stuck = await runCli(
      ['--data-dir', dataDir, 'operator', 'rekey', '--key-shares', '3', '--key-threshold', '2'],
      {},
      `${old[0]}\n${old[2]}\n`,
    );
    expect(stuck.code).toBe(4);
    expect(stuck.output).toMatch(
      /a rekey to KEK [0-9a-f]{16} is unfinished: give the current unseal keys followed by 3 of its new unseal keys/,
    );
    const finished = await runCli(
      ['--data-dir', dataDir, 'operator', 'rekey', '--key-shares', '3', '--key-threshold', '2'],
      {},
      `${[old[0], old[2], ...made.shares.slice(1)].join('\n')}\n`,
    );
    expect(finished.code, finished.output).toBe(0);
    expect(finished.output).toMatch(/Rekey complete: 2 key version\(s\) re-wrapped/);

    // A fresh rekey: new unseal keys shown, every key re-wrapped; then only they open the keystore.
    const again = await runCli(
      [
        '--data-dir',
        dataDir,
        'operator',
        'rekey',
        '--key-shares',
        '5',
        '--key-threshold',
        '3',
        '--shares-dir',
        join(dir, 'new'),
      ],
      {},
      `${made.shares.slice(0, 3).join('\n')}\n`,
    );
    expect(again.code, again.output).toBe(0);
    expect(again.output.match(/wrote .*unseal-key-/g)).toHaveLength(5);
    const store2 = await FileKeystore.open({ dir: dataDir });
    const info = (await store2.getKekInfo())!;
    expect(info.shamir?.find((p) => p.kekId === info.currentKekId)).toMatchObject({
      threshold: 3,
      shares: 5,
    });
    const { readFileSync, readdirSync } = await import('node:fs');
    const newShares = readdirSync(join(dir, 'new')).map((f) =>
      readFileSync(join(dir, 'new', f), 'utf8').trim(),
    );
    const newKek = await ShamirKek.fromKeystore(store2);
    for (const s of newShares.slice(2)) await newKek.submit(s);
    const fresh = await Keyring.open({ keystore: store2, kek: newKek });
    expect(
      await Promise.all(
        ['a', 'b', 'c'].map(async (ns) =>
          Buffer.from((await fresh.decryptionKey(ns, 1)).exportMaterial()).toString('hex'),
        ),
      ),
    ).toEqual(materials);
    await fresh.close();
    const stale = await ShamirKek.fromKeystore(store2);
    await expect(stale.submit(old[0])).rejects.toMatchObject({ code: 'ERR_UNSEAL_SHARE_FOREIGN' });
    await store2.close();
  });
});
