/**
 * Interoperability with the bare AWS Encryption SDK, both ways. Format strings are written out
 * literally here (not imported), so that this test pins the wire format that other languages use.
 */
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';

import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { KeyringError } from '../../src/errors.ts';
import type { KeyHandle } from '../../src/keyring/key-handle.ts';
import { jsonPayload, keyringFixture, text, utf8 } from './fixtures.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;
const sdk = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

function rawKeyring(
  namespace: string,
  version: number,
  material: Uint8Array,
  keyName = `${namespace}/v${version}/`,
) {
  return new RawAesKeyringNode({
    keyNamespace: 'temporal-keyring',
    keyName,
    unencryptedMasterKey: Uint8Array.from(material),
    wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
  });
}

/** What another language's worker would write: the bare SDK, the raw key, our names. */
async function foreignPayload(
  inner: Payload,
  key: KeyHandle,
  options: { context?: Record<string, string>; frameLength?: number } = {},
): Promise<Payload> {
  const { result } = await sdk.encrypt(
    rawKeyring(key.namespace, key.version, key.exportMaterial()),
    ProtoPayload.encode(inner).finish(),
    {
      suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
      encryptionContext: options.context ?? {
        'temporal-keyring:namespace': key.namespace,
        'temporal-keyring:key-version': String(key.version),
      },
      frameLength: options.frameLength,
    },
  );
  return {
    metadata: {
      encoding: utf8('binary/encrypted'),
      'encryption-key-id': utf8(`${key.namespace}/v${key.version}`),
      'encryption-key-version': utf8(String(key.version)),
    },
    data: result,
  };
}

const codeOf = (p: Promise<unknown>) =>
  p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof KeyringError ? e.code : String(e)),
  );

describe('interop with the bare AWS Encryption SDK', () => {
  it('a payload from the codec decrypts with @aws-crypto/client-node and the raw key', async () => {
    const { codec, keyring } = await keyringFixture(['orders']);
    await keyring.rotate('orders');
    const original: Payload = {
      metadata: { encoding: utf8('json/plain'), extra: utf8('x') },
      data: utf8('{"n":1}'),
    };
    const [encoded] = await codec('orders').encode([original]);
    const key = await keyring.decryptionKey('orders', 2);
    const { plaintext, messageHeader } = await sdk.decrypt(
      rawKeyring('orders', 2, key.exportMaterial()),
      encoded!.data!,
    );
    expect(messageHeader.suiteId).toBe(0x0478);
    expect(messageHeader.encryptedDataKeys).toHaveLength(1);
    expect(messageHeader.encryptedDataKeys[0]!.providerId).toBe('temporal-keyring');
    expect({ ...messageHeader.encryptionContext }).toEqual({
      'temporal-keyring:namespace': 'orders',
      'temporal-keyring:key-version': '2',
    });
    const inner = ProtoPayload.decode(plaintext);
    expect(text(inner.metadata.encoding)).toBe('json/plain');
    expect(text(inner.metadata.extra)).toBe('x');
    expect(text(inner.data)).toBe('{"n":1}');
    await keyring.close();
  });

  it('a message made by the bare SDK decodes with the codec, whatever its frame length', async () => {
    const { codec, keyring } = await keyringFixture(['orders']);
    const key = await keyring.decryptionKey('orders', 1);
    for (const frameLength of [undefined, 64, 1 << 16]) {
      const foreign = await foreignPayload(jsonPayload({ from: 'go', frameLength }), key, { frameLength });
      const [decoded] = await codec('orders').decode([foreign]);
      expect(text(decoded!.metadata!.encoding)).toBe('json/plain');
      expect(JSON.parse(text(decoded!.data)!)).toEqual({ from: 'go', frameLength });
    }
    await keyring.close();
  });

  it('requires the encryption context to be exactly {namespace, version}', async () => {
    const { codec, keyring } = await keyringFixture(['orders']);
    const key = await keyring.decryptionKey('orders', 1);
    const inner = jsonPayload('x');
    const withContext = (context: Record<string, string>) => foreignPayload(inner, key, { context });
    const ns = 'temporal-keyring:namespace';
    const ver = 'temporal-keyring:key-version';
    expect(await codeOf(codec('orders').decode([await withContext({ [ns]: 'payments', [ver]: '1' })]))).toBe(
      'ERR_NAMESPACE_MISMATCH',
    );
    const contexts: Record<string, string>[] = [
      { [ns]: 'orders', [ver]: '2' },
      { [ns]: 'orders', [ver]: '01' },
      { [ns]: 'orders' },
      { [ver]: '1' },
      {},
      { [ns]: 'orders', [ver]: '1', tenant: 'acme' },
    ];
    for (const context of contexts) {
      expect(await codeOf(codec('orders').decode([await withContext(context)]))).toBe(
        'ERR_DECRYPTION_FAILED',
      );
    }
    expect(await codeOf(codec('orders').decode([await withContext({ [ns]: 'orders', [ver]: '1' })]))).toBe(
      'resolved',
    );
    await keyring.close();
  });

  it('refuses a message whose data key is named for another version, even with the right material', async () => {
    const { codec, keyring } = await keyringFixture(['orders']);
    const key = await keyring.decryptionKey('orders', 1);
    const { result } = await sdk.encrypt(
      rawKeyring('orders', 1, key.exportMaterial(), 'orders/v1'),
      ProtoPayload.encode(jsonPayload(1)).finish(),
      {
        suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
        encryptionContext: { 'temporal-keyring:namespace': 'orders', 'temporal-keyring:key-version': '1' },
      },
    );
    const foreign = { ...(await foreignPayload(jsonPayload(1), key)), data: result };
    // Key name `orders/v1` (no trailing slash) is not `orders/v1/`: not ours.
    expect(await codeOf(codec('orders').decode([foreign]))).toBe('ERR_DECRYPTION_FAILED');
    await keyring.close();
  });
});
