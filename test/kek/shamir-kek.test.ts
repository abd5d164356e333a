import { combine } from 'shamir-secret-sharing';
import { describe, expect, it } from 'vitest';
import { initShamirKeystore, ShamirKek } from '../../src/kek/shamir-kek.ts';
import { decodeUnsealShare, encodeUnsealShare } from '../../src/kek/unseal-share.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { kekContract } from './contract.ts';

async function unsealed(store: MemoryKeystore, shares: string[]): Promise<ShamirKek> {
  const kek = await ShamirKek.fromKeystore(store);
  for (const s of shares) await kek.submit(s);
  return kek;
}

kekContract('shamir (unsealed by 3 of 5 shares)', async () => {
  const store = new MemoryKeystore();
  const { shares } = await initShamirKeystore(store, { shares: 5, threshold: 3 });
  const otherStore = new MemoryKeystore();
  const other = await initShamirKeystore(otherStore, { shares: 3, threshold: 2 });
  return {
    kek: await unsealed(store, shares.slice(0, 3)),
    again: () => unsealed(store, shares.slice(2, 5)),
    other: () => unsealed(otherStore, other.shares.slice(1)),
    cleanup: async () => {},
  };
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );
}

describe('Shamir-sealed KEK', () => {
  it('stores only the check value and split parameters, and shares name their keystore', async () => {
    const store = new MemoryKeystore();
    const init = await initShamirKeystore(store, { shares: 5, threshold: 3 });
    expect(init.shares).toHaveLength(5);
    const info = (await store.getKekInfo())!;
    expect(info).toEqual({
      format: 1,
      currentKekId: init.kekId,
      checks: [{ kekId: init.kekId, check: expect.any(String) }],
      keystoreId: init.keystoreId,
      shamir: [{ kekId: init.kekId, threshold: 3, shares: 5 }],
    });
    for (const s of init.shares) expect(s.startsWith(`tks1-${init.keystoreId}-`)).toBe(true);
    // The shares are the audited library's: any three rebuild one 32-byte key.
    const raw = init.shares.map((s) => decodeUnsealShare(s).share);
    expect(Buffer.from(await combine(raw.slice(0, 3)))).toEqual(Buffer.from(await combine(raw.slice(2))));
    expect(await codeOf(initShamirKeystore(store, { shares: 5, threshold: 3 }))).toBe('ERR_INVALID_OPTION');
  });

  it('counts distinct valid shares, refuses malformed, duplicate and foreign ones without counting', async () => {
    const store = new MemoryKeystore();
    const { shares, keystoreId } = await initShamirKeystore(store, { shares: 5, threshold: 3 });
    const foreign = (await initShamirKeystore(new MemoryKeystore(), { shares: 5, threshold: 3 })).shares;
    const kek = await ShamirKek.fromKeystore(store);
    expect(kek.status()).toEqual({ sealed: true, t: 3, n: 5, progress: 0, keystoreId, kekId: kek.id });
    expect(await codeOf(kek.wrap(Buffer.alloc(32), Buffer.alloc(0)))).toBe('ERR_SEALED');
    expect((await kek.submit(shares[0])).progress).toBe(1);
    expect(await codeOf(kek.submit(shares[0]))).toBe('ERR_UNSEAL_SHARE_DUPLICATE');
    expect(await codeOf(kek.submit('hello'))).toBe('ERR_UNSEAL_SHARE_MALFORMED');
    const typo = shares[1]!.slice(0, -3) + (shares[1]!.endsWith('A==') ? 'B==' : 'A==');
    expect(await codeOf(kek.submit(typo))).toBe('ERR_UNSEAL_SHARE_MALFORMED');
    expect(await codeOf(kek.submit(foreign[1]))).toBe('ERR_UNSEAL_SHARE_FOREIGN');
    expect(kek.status().progress).toBe(1);
    expect(kek.reset().progress).toBe(0);
    await kek.submit(shares[4]);
    await kek.submit(shares[2]);
    const done = await kek.submit(shares[3]);
    expect(done).toMatchObject({ sealed: false, t: 3, n: 5, progress: 0 });
    kek.seal();
    expect(kek.sealed).toBe(true);
    expect(await codeOf(kek.unwrap(Buffer.alloc(60), Buffer.alloc(0)))).toBe('ERR_SEALED');
  });

  it('resets progress when the shares rebuild a KEK that fails the check value', async () => {
    const store = new MemoryKeystore();
    const { shares, keystoreId, kekId } = await initShamirKeystore(store, { shares: 3, threshold: 2 });
    const kek = await ShamirKek.fromKeystore(store);
    // A forged share: right keystore, right KEK id, valid checksum, wrong y values.
    const forged = decodeUnsealShare(shares[1]);
    forged.share[0]! ^= 0xff;
    await kek.submit(shares[0]);
    const error = await kek.submit(encodeUnsealShare({ keystoreId, kekId, share: forged.share })).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(error?.code).toBe('ERR_UNSEAL_CHECK_FAILED');
    expect(error?.message).toMatch(/progress was reset/);
    expect(kek.status()).toMatchObject({ sealed: true, progress: 0 });
  });

  it('lets a keyring open sealed, answer ERR_SEALED, serve once unsealed, and seal again', async () => {
    const store = new MemoryKeystore();
    const { shares } = await initShamirKeystore(store, { shares: 3, threshold: 2 });
    const kek = await ShamirKek.fromKeystore(store);
    const keyring = await Keyring.open({ keystore: store, kek });
    expect(await codeOf(keyring.createNamespace('default'))).toBe('ERR_SEALED');
    await kek.submit(shares[0]);
    await kek.submit(shares[2]);
    await keyring.createNamespace('default');
    const key = await keyring.encryptionKey('default', 0);
    const copy = Buffer.from(key.exportMaterial());
    keyring.seal();
    // A handle held across the seal is revoked: no zeroed key, a typed error.
    expect(key.revoked).toBe(true);
    expect(() => key.exportMaterial()).toThrow(expect.objectContaining({ code: 'ERR_KEY_REVOKED' }));
    expect(await codeOf(keyring.decryptionKey('default', 1))).toBe('ERR_SEALED');
    await kek.submit(shares[1]);
    await kek.submit(shares[0]);
    expect(Buffer.from((await keyring.decryptionKey('default', 1)).exportMaterial())).toEqual(copy);
    await keyring.close();
  });
});
