import { execFile } from 'node:child_process';
import { rename } from 'node:fs/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Pkcs11Kek, type Pkcs11KekOptions } from '../../src/kek/pkcs11-kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { kekContract } from './contract.ts';
import { SOFTHSM_MODULE, type SoftHsm, softhsmInstalled, startSoftHsm } from './softhsm.ts';

// One SoftHSM2 per test file: the module reads SOFTHSM2_CONF once per process.
let hsm: SoftHsm;
let base: Pkcs11KekOptions;
let labels = 0;
beforeAll(async () => {
  if (!softhsmInstalled) throw new Error('SoftHSM2 is not installed: apt-get install -y softhsm2');
  hsm = await startSoftHsm();
  process.env.SOFTHSM2_CONF = hsm.conf;
  base = { module: SOFTHSM_MODULE, token: hsm.token, key: 'unused', pin: hsm.pin };
});
afterAll(async () => {
  await hsm?.cleanup();
});

const label = () => `kek-${process.pid}-${++labels}`;

kekContract('pkcs11 (SoftHSM2)', async () => {
  const key = label();
  const otherKey = label();
  const kek = await Pkcs11Kek.create({ ...base, key });
  return {
    kek,
    again: () => Pkcs11Kek.open({ ...base, key }),
    other: () => Pkcs11Kek.create({ ...base, key: otherKey }),
    cleanup: async () => {},
  };
});

async function codeOf(p: Promise<unknown>): Promise<string | undefined> {
  return p.then(
    () => undefined,
    (e: { code?: string }) => e.code,
  );
}

describe('PKCS#11 KEK', () => {
  it('refuses an unknown token, an unknown key, a second key with one label, and an unloadable module', async () => {
    const key = label();
    await Pkcs11Kek.create({ ...base, key });
    expect(await codeOf(Pkcs11Kek.open({ ...base, key, token: 'no-such-token' }))).toBe(
      'ERR_PKCS11_TOKEN_NOT_FOUND',
    );
    expect(await codeOf(Pkcs11Kek.open({ ...base, key: 'no-such-key' }))).toBe('ERR_PKCS11_KEY_NOT_FOUND');
    expect(await codeOf(Pkcs11Kek.create({ ...base, key }))).toBe('ERR_INVALID_OPTION');
    expect(await codeOf(Pkcs11Kek.open({ ...base, key, module: '/nonexistent/libnothing.so' }))).toBe(
      'ERR_PKCS11_MODULE',
    );
  });

  it('refuses a wrong PIN with its own code (in a fresh process, before anything is written)', async () => {
    const key = label();
    await Pkcs11Kek.create({ ...base, key });
    const script = `
      const { Pkcs11Kek } = await import(${JSON.stringify(new URL('../../src/kek/pkcs11-kek.ts', import.meta.url).pathname)});
      const code = await Pkcs11Kek.open(${JSON.stringify({ ...base, key, pin: 'wrong-pin' })}).then(() => 'opened', (e) => e.code + ' ' + e.message);
      console.log(code);`;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      { env: { ...process.env, SOFTHSM2_CONF: hsm.conf } },
    );
    expect(stdout.trim()).toMatch(/^ERR_PKCS11_PIN the PIN for PKCS#11 token "tk-test" was refused/);
    expect(stdout).not.toContain('wrong-pin');
  });

  it('refuses a key that may leave the token unless allowed', async () => {
    const key = label();
    // Made by another process (as another tool would): this process's module is already initialized.
    const script = `
      const p = (await import('node:module')).createRequire(${JSON.stringify(import.meta.url)})('pkcs11js');
      const api = new p.PKCS11();
      api.load(${JSON.stringify(SOFTHSM_MODULE)});
      api.C_Initialize();
      const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trim() === ${JSON.stringify(hsm.token)});
      const session = api.C_OpenSession(slot, p.CKF_SERIAL_SESSION | p.CKF_RW_SESSION);
      api.C_Login(session, p.CKU_USER, ${JSON.stringify(hsm.pin)});
      api.C_GenerateKey(session, { mechanism: p.CKM_AES_KEY_GEN }, [
        { type: p.CKA_CLASS, value: p.CKO_SECRET_KEY },
        { type: p.CKA_KEY_TYPE, value: p.CKK_AES },
        { type: p.CKA_VALUE_LEN, value: 32 },
        { type: p.CKA_LABEL, value: ${JSON.stringify(key)} },
        { type: p.CKA_TOKEN, value: true },
        { type: p.CKA_SENSITIVE, value: false },
        { type: p.CKA_EXTRACTABLE, value: true },
        { type: p.CKA_ENCRYPT, value: true },
        { type: p.CKA_DECRYPT, value: true },
      ]);
      api.C_Finalize();`;
    await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script], {
      env: { ...process.env, SOFTHSM2_CONF: hsm.conf },
    });
    expect(await codeOf(Pkcs11Kek.open({ ...base, key }))).toBe('ERR_PKCS11_KEY_EXTRACTABLE');
    const allowed = await Pkcs11Kek.open({ ...base, key, allowExtractable: true });
    expect(allowed.id).toMatch(/^[0-9a-f]{16}$/);
  });

  it('keeps serving unwrapped keys when the token goes away, fails new unwraps with ERR_KEK_UNAVAILABLE, and recovers', async () => {
    const kek = await Pkcs11Kek.create({ ...base, key: label() });
    const store = new MemoryKeystore();
    const keyring = await Keyring.open({ keystore: store, kek });
    await keyring.createNamespace('a');
    await keyring.createNamespace('b');
    const loaded = Buffer.from((await keyring.encryptionKey('a', 0)).exportMaterial());
    // A fresh process's view: only namespace b's key has to be unwrapped by the token.
    const second = await Keyring.open({ keystore: store.reopen(), kek });
    await second.encryptionKey('a', 0);
    await rename(hsm.tokenDir, `${hsm.tokenDir}.away`);
    try {
      expect(Buffer.from((await second.encryptionKey('a', 0)).exportMaterial())).toEqual(loaded);
      expect(await codeOf(second.encryptionKey('b', 0))).toBe('ERR_KEK_UNAVAILABLE');
      expect(await kek.health()).toMatch(/not available/);
    } finally {
      await rename(`${hsm.tokenDir}.away`, hsm.tokenDir);
    }
    expect(await kek.health()).toBeUndefined();
    expect((await second.encryptionKey('b', 0)).exportMaterial()).toHaveLength(32);
    await Promise.all([keyring.close(), second.close()]);
  });
});
