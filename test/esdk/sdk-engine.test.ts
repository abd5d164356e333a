import { randomBytes } from 'node:crypto';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  MultiKeyringNode,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError, MalformedPayloadError } from '../../src/errors.ts';
import { esdkKeyName, PROVIDER_ID, type WrappingKey } from '../../src/esdk/engine.ts';
import { ESDK_SUITE_ID, sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { keyed } from './keyed.ts';

const keyOf = (namespace: string, version: number, material = randomBytes(32)): WrappingKey => ({
  providerId: PROVIDER_ID,
  keyName: esdkKeyName(namespace, version),
  material,
});
const context = { 'temporal-keyring:namespace': 'default', 'temporal-keyring:key-version': '1' };

const rawKeyring = (key: WrappingKey) =>
  new RawAesKeyringNode({
    keyNamespace: key.providerId,
    keyName: key.keyName,
    unencryptedMasterKey: Uint8Array.from(key.material),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });

describe('sdkEngine', () => {
  it('round-trips plaintexts of several sizes, returning exactly the context given', async () => {
    const key = keyOf('default', 1);
    for (const size of [0, 1, 4095, 4096, 4097, 100_000]) {
      const plaintext = randomBytes(size);
      const message = await keyed(sdkEngine).encrypt(plaintext, key, context);
      const out = await keyed(sdkEngine).decrypt(message, key);
      expect(Buffer.from(out.plaintext).equals(plaintext)).toBe(true);
      // The unsigned suite adds no context keys of its own (signing suites would add aws-crypto-public-key).
      expect(out.context).toEqual(context);
    }
  });

  it('writes message format 2 with suite 0x0478', async () => {
    const message = await keyed(sdkEngine).encrypt(Buffer.from('x'), keyOf('default', 1), context);
    expect(message[0]).toBe(0x02);
    expect((message[1]! << 8) | message[2]!).toBe(ESDK_SUITE_ID);
    expect(ESDK_SUITE_ID).toBe(0x0478);
  });

  it('fails opaquely with another key or another key name', async () => {
    const key = keyOf('default', 1);
    const message = await keyed(sdkEngine).encrypt(Buffer.from('secret'), key, context);
    await expect(keyed(sdkEngine).decrypt(message, keyOf('default', 1))).rejects.toThrow(
      DecryptionFailedError,
    );
    await expect(
      keyed(sdkEngine).decrypt(message, { ...key, keyName: esdkKeyName('other', 1) }),
    ).rejects.toThrow(DecryptionFailedError);
    await expect(keyed(sdkEngine).decrypt(message, { ...key, providerId: 'someone-else' })).rejects.toThrow(
      DecryptionFailedError,
    );
    const error = await keyed(sdkEngine)
      .decrypt(message, keyOf('default', 1))
      .catch((e: unknown) => e);
    expect((error as Error).message).toBe('decryption failed');
  });

  it('keeps versions 1, 10 and 100 apart: each decrypts only with its own key', async () => {
    const keys = [1, 10, 100].map((v) => keyOf('default', v));
    const messages = await Promise.all(
      keys.map((k) => keyed(sdkEngine).encrypt(Buffer.from(k.keyName), k, context)),
    );
    for (const [i, message] of messages.entries()) {
      for (const [j, key] of keys.entries()) {
        if (i === j)
          expect(Buffer.from((await keyed(sdkEngine).decrypt(message, key)).plaintext).toString()).toBe(
            key.keyName,
          );
        else await expect(keyed(sdkEngine).decrypt(message, key)).rejects.toThrow(DecryptionFailedError);
      }
    }
  });

  it('needs the trailing slash: the JS raw AES keyring selects data keys by key-name prefix', async () => {
    const material = randomBytes(32);
    const m10 = await keyed(sdkEngine).encrypt(Buffer.from('ten'), keyOf('default', 10, material), context);
    const header = (
      await buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT).decrypt(
        rawKeyring(keyOf('default', 10, material)),
        m10,
      )
    ).messageHeader;
    const edk = header.encryptedDataKeys[0]!;
    expect(edk.providerId).toBe(PROVIDER_ID);
    expect(edk.providerInfo.startsWith('default/v10/')).toBe(true);
    // Without the slash, version 1's keyring would claim version 10's data key...
    const unslashed = new RawAesKeyringNode({
      keyNamespace: PROVIDER_ID,
      keyName: 'default/v1',
      unencryptedMasterKey: Uint8Array.from(material),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    });
    expect(unslashed._filter(edk)).toBe(true);
    // ...with it, it does not; and even with the same material the message stays closed to it.
    expect(rawKeyring(keyOf('default', 1, material))._filter(edk)).toBe(false);
    await expect(keyed(sdkEngine).decrypt(m10, keyOf('default', 1, material))).rejects.toThrow(
      DecryptionFailedError,
    );
  });

  it('refuses bytes that are not an ESDK message as malformed', async () => {
    const key = keyOf('default', 1);
    for (const bytes of [
      new Uint8Array(0),
      Buffer.from('{"a":1}'),
      Buffer.from([0x02]),
      Buffer.from([0x03, 4, 0x78]),
    ]) {
      await expect(keyed(sdkEngine).decrypt(bytes, key)).rejects.toThrow(MalformedPayloadError);
    }
  });

  it('refuses other suites, message format 1, and more than one data key', async () => {
    const key = keyOf('default', 1);
    const strict = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
    const signed = await strict.encrypt(rawKeyring(key), Buffer.from('x'), {
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
      encryptionContext: context,
    });
    await expect(keyed(sdkEngine).decrypt(signed.result, key)).rejects.toThrow(DecryptionFailedError);

    const legacy = buildClient(CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT);
    const v1 = await legacy.encrypt(rawKeyring(key), Buffer.from('x'), {
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA256,
      encryptionContext: context,
    });
    expect(v1.result[0]).toBe(0x01);
    await expect(keyed(sdkEngine).decrypt(v1.result, key)).rejects.toThrow(DecryptionFailedError);

    const two = await strict.encrypt(
      new MultiKeyringNode({ generator: rawKeyring(key), children: [rawKeyring(keyOf('default', 2))] }),
      Buffer.from('x'),
      {
        suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
        encryptionContext: context,
      },
    );
    expect(two.messageHeader.encryptedDataKeys).toHaveLength(2);
    await expect(keyed(sdkEngine).decrypt(two.result, key)).rejects.toThrow(DecryptionFailedError);
  });

  it('detects truncation at every frame boundary and inside the header', async () => {
    const key = keyOf('default', 1);
    const message = await keyed(sdkEngine).encrypt(randomBytes(10_000), key, context);
    for (const length of [3, 10, 100, 200, message.length - 4097, message.length - 17, message.length - 1]) {
      await expect(keyed(sdkEngine).decrypt(message.subarray(0, length), key)).rejects.toThrow(
        DecryptionFailedError,
      );
    }
  });
});
