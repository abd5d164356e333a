/**
 * Exportable keys (Vault Transit's rule) in the core: refused until marked, a mark never removed
 * (it survives reopening a file keystore), and what `exportKeys` hands out is enough for the bare
 * AWS Encryption SDK (RawAesKeyringNode, the equivalent of the Python recipe in
 * docs/payload-format.md) to decrypt our payloads of both formats.
 */
import { rm } from 'node:fs/promises';
import {
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { exportableSince, exportKeys, markExportable, setExportable } from '../../src/codec/key-export.ts';
import { InvalidStateTransitionError, NotExportableError } from '../../src/errors.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { TEST_KEK } from '../codec-server/support.ts';
import { tempDir } from '../support/temp-dir.ts';

// As the Python recipe: commitment required both ways, at most one encrypted data key.
const sdk = buildClient({
  commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
  maxEncryptedDataKeys: 1,
});
const Payload = proto.temporal.api.common.v1.Payload;

describe('exportable keys', () => {
  it('refuses export until the namespace is marked; a mark cannot be undone and survives reopening', async () => {
    const dir = await tempDir('tk-export-');
    try {
      const clock = new ManualClock(Date.UTC(2026, 5, 1));
      let keystore = await FileKeystore.open({ dir });
      let keyring = await Keyring.open({ keystore, kek: TEST_KEK, clock });
      await keyring.createNamespace('orders');
      await keyring.createNamespace('billing');
      await expect(exportKeys(keyring, 'orders')).rejects.toBeInstanceOf(NotExportableError);
      await expect(exportKeys(keyring, 'orders')).rejects.toMatchObject({ code: 'ERR_NOT_EXPORTABLE' });
      expect(await setExportable(keyring, 'orders', false)).toEqual({ exportable: false, changed: false });
      expect(await markExportable(keyring, 'orders')).toEqual({ markedAt: clock.now(), changed: true });
      clock.advance(1000);
      expect(await markExportable(keyring, 'orders')).toEqual({
        markedAt: clock.now() - 1000,
        changed: false,
      });
      const refusal = await setExportable(keyring, 'orders', false).catch((e: unknown) => e);
      expect(refusal).toBeInstanceOf(InvalidStateTransitionError);
      expect(String((refusal as Error).message)).toMatch(
        /marked exportable on 2026-06-01T00:00:00.000Z and cannot be unmarked/,
      );
      await keyring.close();
      await keystore.close();
      keystore = await FileKeystore.open({ dir });
      keyring = await Keyring.open({ keystore, kek: TEST_KEK, clock });
      expect(await exportableSince(keyring, 'orders')).toBe(Date.UTC(2026, 5, 1));
      expect(await exportableSince(keyring, 'billing')).toBeUndefined();
      await expect(exportKeys(keyring, 'billing')).rejects.toBeInstanceOf(NotExportableError);
      // A KEK record change elsewhere (a rekey) keeps the mark.
      await keyring.rekey(new LocalKek(Buffer.alloc(32, 9)));
      expect(await exportableSince(keyring, 'orders')).toBe(Date.UTC(2026, 5, 1));
      await keyring.close();
      await keystore.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('exports every version that may decrypt, with the ESDK names; the bare SDK decrypts our payloads of format 1 and 2 with them', async () => {
    const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
    await keyring.createNamespace('orders');
    const inner = { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('{"card":"4111"}') };
    const f1 = (
      await new EncryptionCodec({ namespace: 'orders', keys: keyring, format: 1 }).encode([inner])
    )[0]!;
    await keyring.rotate('orders');
    const f2 = (
      await new EncryptionCodec({ namespace: 'orders', keys: keyring, format: 2 }).encode([inner])
    )[0]!;
    await keyring.rotate('orders');
    await keyring.setState('orders', 1, 'deprecated');
    await markExportable(keyring, 'orders');

    const all = await exportKeys(keyring, 'orders');
    expect(all.versions.map((v) => [v.version, v.state])).toEqual([
      [2, 'inactive'],
      [3, 'active'],
    ]);
    expect(all.skipped).toEqual([
      { version: 1, state: 'deprecated', reason: 'deprecated versions may not decrypt' },
    ]);
    expect(all.versions[0]!.esdk).toEqual({
      format1: {
        providerId: 'temporal-keyring',
        keyName: 'orders/v2/',
        encryptionContext: { 'temporal-keyring:namespace': 'orders', 'temporal-keyring:key-version': '2' },
      },
      format2: { providerId: 'tk', keyName: 'v2/', encryptionContext: { ns: 'orders', v: '2' } },
    });
    await keyring.setState('orders', 1, 'inactive');
    const one = await exportKeys(keyring, 'orders', { version: 1 });
    expect(one.versions.map((v) => v.version)).toEqual([1]);

    const decryptWith = async (
      exported: (typeof all.versions)[number],
      format: 'format1' | 'format2',
      data: Uint8Array,
    ) => {
      const names = exported.esdk[format];
      const rawKeyring = new RawAesKeyringNode({
        keyNamespace: names.providerId,
        keyName: names.keyName,
        unencryptedMasterKey: Uint8Array.from(Buffer.from(exported.material, 'base64')),
        wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
      });
      const { plaintext, messageHeader } = await sdk.decrypt(rawKeyring, data);
      expect(messageHeader.encryptionContext).toEqual(names.encryptionContext);
      return Payload.decode(plaintext);
    };
    const p1 = await decryptWith(one.versions[0]!, 'format1', f1.data!);
    expect(Buffer.from(p1.data).toString()).toBe('{"card":"4111"}');
    const p2 = await decryptWith(all.versions[0]!, 'format2', f2.data!);
    expect(Buffer.from(p2.metadata.encoding!).toString()).toBe('json/plain');
    expect(Buffer.from(p2.data).toString()).toBe('{"card":"4111"}');
    await keyring.close();
  });
});
