import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { kekFromPassphrase } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { KEYSTORE_ID_PATTERN } from '../../src/keystore/keystore-id.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

describe('keystore id', () => {
  it('is created with the KEK record, random, and stable across opens', async () => {
    const store = new MemoryKeystore();
    const kek = new LocalKek(randomBytes(32));
    const a = await Keyring.open({ keystore: store, kek });
    expect(a.keystoreId).toMatch(KEYSTORE_ID_PATTERN);
    expect((await store.getKekInfo())?.keystoreId).toBe(a.keystoreId);
    const b = await Keyring.open({ keystore: store.reopen(), kek });
    expect(b.keystoreId).toBe(a.keystoreId);
    const other = await Keyring.open({ keystore: new MemoryKeystore(), kek });
    expect(other.keystoreId).not.toBe(a.keystoreId);
    await Promise.all([a.close(), b.close(), other.close()]);
  });

  it('is added on first open to a file keystore whose record predates it, and kept', async () => {
    const dir = await tempDir('tk-ksid-');
    dirs.push(dir);
    const store = await FileKeystore.open({ dir });
    const kek = new LocalKek(randomBytes(32));
    const first = await Keyring.open({ keystore: store, kek });
    const info = (await store.getKekInfo())!;
    const legacy = { ...info };
    delete legacy.keystoreId;
    await store.putKekInfo(legacy, info);
    await first.close();
    const reopened = await Keyring.open({ keystore: store, kek });
    expect(reopened.keystoreId).toMatch(KEYSTORE_ID_PATTERN);
    expect(reopened.keystoreId).not.toBe(info.keystoreId);
    expect((await store.getKekInfo())?.keystoreId).toBe(reopened.keystoreId);
    const again = await Keyring.open({ keystore: store, kek });
    expect(again.keystoreId).toBe(reopened.keystoreId);
    await Promise.all([reopened.close(), again.close()]);
    await store.close();
  });

  it('is created with a passphrase keystore record', async () => {
    const store = new MemoryKeystore();
    const kek = await kekFromPassphrase('correct horse battery staple', store);
    const keyring = await Keyring.open({ keystore: store, kek });
    expect((await store.getKekInfo())?.keystoreId).toBe(keyring.keystoreId);
    expect(keyring.keystoreId).toMatch(KEYSTORE_ID_PATTERN);
    await keyring.close();
  });
});
