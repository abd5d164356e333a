import { rm } from 'node:fs/promises';
import type { Payload } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import type { KeyEncryptionKey } from '../../src/kek/kek.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Pkcs11Kek } from '../../src/kek/pkcs11-kek.ts';
import { addShamirParams, ShamirKek } from '../../src/kek/shamir-kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';
import { SOFTHSM_MODULE, type SoftHsm, startSoftHsm } from './softhsm.ts';

let hsm: SoftHsm;
let dir: string;
beforeAll(async () => {
  hsm = await startSoftHsm();
  process.env.SOFTHSM2_CONF = hsm.conf;
  dir = await tempDir('tk-rekey-kinds-');
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await hsm?.cleanup();
});

const enc = (text: string): Payload => ({
  metadata: { encoding: Buffer.from('json/plain') },
  data: Buffer.from(JSON.stringify(text)),
});

/** Opens the keystore in a fresh keyring holding only `kek` (what a freshly started process has). */
async function withOnly<T>(
  kek: KeyEncryptionKey,
  fn: (codec: EncryptionCodec, keyring: Keyring) => Promise<T>,
) {
  const store = await FileKeystore.open({ dir });
  const keyring = await Keyring.open({ keystore: store, kek });
  try {
    return await fn(new EncryptionCodec({ namespace: 'default', keys: keyring }), keyring);
  } finally {
    await keyring.close();
    await store.close();
  }
}

describe('rekey between every KEK kind', () => {
  it('file -> HSM -> sealed -> file -> sealed -> HSM -> file, every payload decoding at every step', async () => {
    let hsmKeys = 0;
    const makeHsm = () =>
      Pkcs11Kek.create({ module: SOFTHSM_MODULE, token: hsm.token, key: `kek-${++hsmKeys}`, pin: hsm.pin });
    const makeFile = async () => LocalKek.fromBase64(generateKekBase64());
    let keystoreId = '';
    const makeSealed = async () => {
      const made = await ShamirKek.generate({ keystoreId, shares: 3, threshold: 2 });
      const store = await FileKeystore.open({ dir });
      await addShamirParams(store, made.params);
      await store.close();
      // What a restarted process does: a sealed KEK from the record, unsealed by 2 of the 3 shares.
      const reopen = async () => {
        const store2 = await FileKeystore.open({ dir });
        const info = (await store2.getKekInfo())!;
        await store2.close();
        const kek = ShamirKek.fromRecord(info, made.params.kekId);
        await kek.submit(made.shares[2]);
        await kek.submit(made.shares[0]);
        return kek;
      };
      return { kek: made.kek, reopen };
    };

    const first = await makeFile();
    const payloads: { plain: string; encoded: Payload }[] = [];
    await withOnly(first, async (codec, keyring) => {
      keystoreId = keyring.keystoreId;
      await keyring.createNamespace('default');
      const [encoded] = await codec.encode([enc('step 0')]);
      payloads.push({ plain: 'step 0', encoded: encoded! });
    });

    let current: KeyEncryptionKey = first;
    for (const kind of ['pkcs11', 'shamir', 'local', 'shamir', 'pkcs11', 'local']) {
      let next: KeyEncryptionKey;
      let reopen: () => Promise<KeyEncryptionKey>;
      if (kind === 'pkcs11') {
        next = await makeHsm();
        const label = `kek-${hsmKeys}`;
        reopen = () => Pkcs11Kek.open({ module: SOFTHSM_MODULE, token: hsm.token, key: label, pin: hsm.pin });
      } else if (kind === 'shamir') {
        ({ kek: next, reopen } = await makeSealed());
      } else {
        const b64 = generateKekBase64();
        next = LocalKek.fromBase64(b64);
        reopen = async () => LocalKek.fromBase64(b64);
      }
      const store = await FileKeystore.open({ dir });
      const keyring = await Keyring.open({ keystore: store, kek: current });
      await keyring.rekey(next);
      await keyring.rotate('default');
      const [encoded] = await new EncryptionCodec({ namespace: 'default', keys: keyring }).encode([
        enc(`after ${kind}`),
      ]);
      payloads.push({ plain: `after ${kind}`, encoded: encoded! });
      await keyring.close();
      await store.close();
      // A freshly started process holding only the new KEK decodes every payload so far.
      const fresh = await reopen();
      expect(fresh.kind).toBe(kind);
      const decoded = await withOnly(fresh, (codec) => codec.decode(payloads.map((p) => p.encoded)));
      expect(decoded.map((p) => JSON.parse(Buffer.from(p.data!).toString()))).toEqual(
        payloads.map((p) => p.plain),
      );
      current = fresh;
    }
  });
});
