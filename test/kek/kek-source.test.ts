import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64, kekFromPassphrase, loadKek } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';

let dir: string;
beforeEach(async () => {
  dir = await tempDir('tk-kek-');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

async function rejection(p: Promise<unknown>): Promise<Error & { code?: string }> {
  return p.then(
    () => {
      throw new Error('expected a rejection');
    },
    (e: Error & { code?: string }) => e,
  );
}

const PASSPHRASE = 'correct horse battery staple';

describe('loadKek', () => {
  it('generates 256-bit base64 KEKs that load back to the same id', async () => {
    const text = generateKekBase64();
    expect(Buffer.from(text, 'base64')).toHaveLength(32);
    expect(generateKekBase64()).not.toBe(text);
    const kek = await loadKek({ type: 'base64', value: `  ${text}\n` });
    expect(kek.id).toBe(LocalKek.fromBase64(text).id);
  });

  it('refuses empty, non-base64 and short base64 KEKs without echoing them', async () => {
    const short = Buffer.alloc(16, 7).toString('base64');
    for (const value of ['', '   ', 'not base64 at all!', short]) {
      const error = await rejection(loadKek({ type: 'base64', value }));
      expect(error.code).toBe('ERR_INVALID_KEK');
      if (value.trim()) expect(error.message).not.toContain(value.trim());
    }
  });

  it('reads a KEK file that only its owner may read', async () => {
    const text = generateKekBase64();
    const file = join(dir, 'kek');
    await writeFile(file, `${text}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    expect((await loadKek({ type: 'file', path: file })).id).toBe(LocalKek.fromBase64(text).id);
  });

  it('refuses a KEK file readable by group or others, naming the path, unless allowed', async () => {
    const text = generateKekBase64();
    const file = join(dir, 'kek');
    await writeFile(file, text);
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(file, mode);
      const error = await rejection(loadKek({ type: 'file', path: file }));
      expect(error.code).toBe('ERR_INVALID_KEK');
      expect(error.message).toContain(file);
      expect(error.message).toContain('chmod 600');
      expect(error.message).not.toContain(text);
    }
    const kek = await loadKek({ type: 'file', path: file }, { allowInsecurePermissions: true });
    expect(kek.id).toBe(LocalKek.fromBase64(text).id);
  });

  it('refuses a missing file and a file of several lines', async () => {
    const missing = await rejection(loadKek({ type: 'file', path: join(dir, 'nope') }));
    expect(missing.code).toBe('ERR_INVALID_KEK');
    expect(missing.message).toContain('ENOENT');
    const file = join(dir, 'two');
    const a = generateKekBase64();
    await writeFile(file, `${a}\n${generateKekBase64()}\n`, { mode: 0o600 });
    const error = await rejection(loadKek({ type: 'file', path: file }));
    expect(error.code).toBe('ERR_INVALID_KEK');
    expect(error.message).not.toContain(a);
  });

  it('derives a passphrase KEK with scrypt: same passphrase and salt, same KEK', async () => {
    const salt = Buffer.alloc(16, 9);
    const a = await loadKek({ type: 'passphrase', passphrase: PASSPHRASE, salt });
    const b = await loadKek({ type: 'passphrase', passphrase: PASSPHRASE, salt: Buffer.from(salt) });
    const otherSalt = await loadKek({
      type: 'passphrase',
      passphrase: PASSPHRASE,
      salt: Buffer.alloc(16, 8),
    });
    expect(a.id).toBe(b.id);
    expect(otherSalt.id).not.toBe(a.id);
    const error = await rejection(loadKek({ type: 'passphrase', passphrase: 'short', salt }));
    expect(error.code).toBe('ERR_INVALID_KEK');
    expect(error.message).not.toContain('short');
    expect(
      (await rejection(loadKek({ type: 'passphrase', passphrase: PASSPHRASE, salt: Buffer.alloc(8) }))).code,
    ).toBe('ERR_INVALID_KEK');
  });

  it('names the field of an unknown source type', async () => {
    await expect(loadKek({ type: 'kms' } as never)).rejects.toThrow(/^kek\.type: /);
  });
});

describe('kekFromPassphrase', () => {
  it('creates the salt with the KEK record of a new keystore, which Keyring.open then verifies', async () => {
    const keystore = await FileKeystore.open({ dir });
    const kek = await kekFromPassphrase(PASSPHRASE, keystore);
    const info = await keystore.getKekInfo();
    expect(Buffer.from(info!.passphraseSalt!, 'base64')).toHaveLength(16);
    expect(info!.currentKekId).toBe(kek.id);
    const keyring = await Keyring.open({ keystore, kek });
    await keyring.createNamespace('default');
    await keyring.close();

    // Another process: same passphrase, same KEK (from the stored salt); the keys unwrap.
    const other = await FileKeystore.open({ dir });
    const again = await kekFromPassphrase(PASSPHRASE, other);
    expect(again.id).toBe(kek.id);
    const k2 = await Keyring.open({ keystore: other, kek: again });
    expect((await k2.encryptionKey('default', 1)).exportMaterial()).toHaveLength(32);
    await k2.close();

    // A wrong passphrase derives another KEK, which the keystore refuses before any write.
    const wrong = await kekFromPassphrase('a different passphrase', other);
    await expect(Keyring.open({ keystore: other, kek: wrong })).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
    });
  });

  it('agrees on one salt when two handles initialize the keystore at once', async () => {
    const a = await FileKeystore.open({ dir });
    const b = await FileKeystore.open({ dir });
    const [ka, kb] = await Promise.all([kekFromPassphrase(PASSPHRASE, a), kekFromPassphrase(PASSPHRASE, b)]);
    expect(ka.id).toBe(kb.id);
  });

  it('refuses a keystore whose KEK is not passphrase-derived', async () => {
    const keystore = await FileKeystore.open({ dir });
    const keyring = await Keyring.open({ keystore, kek: LocalKek.fromBase64(generateKekBase64()) });
    await keyring.close();
    await expect(kekFromPassphrase(PASSPHRASE, keystore)).rejects.toMatchObject({ code: 'ERR_KEK_MISMATCH' });
  });
});
