import {
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { METADATA_KEY_VERSION } from '../../src/codec/payload-format.ts';
import { DecryptionFailedError } from '../../src/errors.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { jsonPayload, keyringFixture, text, utf8 } from './fixtures.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;
const sdk = buildClient({
  commitmentPolicy: CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT,
  maxEncryptedDataKeys: 1,
});

async function codeOf(promise: Promise<unknown>): Promise<string | undefined> {
  try {
    await promise;
  } catch (error) {
    return (error as { code?: string }).code;
  }
  return undefined;
}

/** The message with the first occurrence of namespace `from` in its header replaced by `to` (same length). */
function withHeaderNamespace(data: Uint8Array, from: string, to: string): Uint8Array {
  const out = Buffer.from(data);
  const at = out.indexOf(Buffer.from(from, 'utf8'));
  expect(at).toBeGreaterThan(0);
  expect(to.length).toBe(from.length);
  out.write(to, at, 'utf8');
  return out;
}

describe('payload format 2 (compact)', () => {
  it('writes encoding and version only, and adds at most 300 bytes to a 1 KiB payload', async () => {
    const { keyring } = await keyringFixture();
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2 });
    expect(codec.format).toBe(2);
    const input: Payload = { metadata: { encoding: utf8('json/plain') }, data: new Uint8Array(1024).fill(7) };
    const [encoded] = await codec.encode([input]);
    expect(Object.keys(encoded!.metadata!)).toEqual(['encoding', METADATA_KEY_VERSION]);
    const overhead =
      ProtoPayload.encode(encoded!).finish().length - ProtoPayload.encode(input).finish().length;
    expect(overhead).toBe(294);
    expect((await codec.decode([encoded!]))[0]).toEqual(
      ProtoPayload.decode(ProtoPayload.encode(input).finish()),
    );
  });

  it('is an ordinary ESDK message for provider "tk", key name "v<version>/", context {ns, v}', async () => {
    const { keyring } = await keyringFixture(['orders']);
    const codec = new EncryptionCodec({ namespace: 'orders', keys: keyring, format: 2 });
    const [encoded] = await codec.encode([jsonPayload({ id: 7 })]);
    const key = await keyring.decryptionKey('orders', 1);
    const esdkKeyring = new RawAesKeyringNode({
      keyNamespace: 'tk',
      keyName: 'v1/',
      unencryptedMasterKey: Uint8Array.from(key.exportMaterial()),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
      utf8Sorting: true,
    });
    const { plaintext, messageHeader } = await sdk.decrypt(esdkKeyring, encoded!.data!);
    expect(messageHeader.encryptionContext).toEqual({ ns: 'orders', v: '1' });
    expect(text(ProtoPayload.decode(plaintext).data)).toBe('{"id":7}');
  });

  it('is read by a codec writing format 1, in one batch with format 1 payloads, on either engine', async () => {
    const { keyring } = await keyringFixture();
    const one = new EncryptionCodec({ namespace: 'default', keys: keyring });
    const two = new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2, engine: sdkEngine });
    const batch = [
      ...(await one.encode([jsonPayload('a')])),
      ...(await two.encode([jsonPayload('b')])),
      jsonPayload('plain'),
    ];
    for (const reader of [one, two]) {
      expect((await reader.decode(batch)).map((p) => text(p.data))).toEqual(['"a"', '"b"', '"plain"']);
    }
  });

  it('keeps versions 1, 10 and 100 apart (key names v1/, v10/, v100/)', async () => {
    const { keyring } = await keyringFixture();
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2 });
    const written: Payload[] = [];
    for (let v = 1; v <= 100; v++) {
      if (v > 1) await keyring.rotate('default', { mode: 'immediate' });
      if (v === 1 || v === 10 || v === 100) written.push(...(await codec.encode([jsonPayload(v)])));
    }
    expect(written.map((p) => text(p.metadata![METADATA_KEY_VERSION]))).toEqual(['1', '10', '100']);
    expect((await codec.decode(written)).map((p) => text(p.data))).toEqual(['1', '10', '100']);
    // Claiming another version than the one that wrapped the data key fails, opaquely.
    const claimed = {
      ...written[0]!,
      metadata: { ...written[0]!.metadata, [METADATA_KEY_VERSION]: utf8('10') },
    };
    expect(await codeOf(codec.decode([claimed]))).toBe('ERR_DECRYPTION_FAILED');
  });

  it('a payload of another namespace fails opaquely; its header names the namespace as a hint only', async () => {
    const { keyring } = await keyringFixture(['default', 'other']);
    const other = new EncryptionCodec({ namespace: 'other', keys: keyring, format: 2 });
    const [encoded] = await other.encode([jsonPayload('x')]);
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2 });
    const error = await codec.decode([encoded!]).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(DecryptionFailedError);
    expect(error).toMatchObject({
      code: 'ERR_DECRYPTION_FAILED',
      message: 'decryption failed',
      hint: 'the header names namespace "other", not "default"',
    });
    // A forger chooses what the header says, so it chooses the hint, never the code.
    const forged = await codec
      .decode([{ ...encoded!, data: withHeaderNamespace(encoded!.data!, 'other', 'zzzzz') }])
      .catch((e: unknown) => e);
    expect(forged).toMatchObject({
      code: 'ERR_DECRYPTION_FAILED',
      hint: 'the header names namespace "zzzzz", not "default"',
    });
    // A header naming our own namespace (or nothing readable) gives no hint at all.
    const mine = new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2 });
    const [ours] = await mine.encode([jsonPayload('y')]);
    const flipped = Uint8Array.from(ours!.data!);
    flipped[flipped.length - 1]! ^= 1;
    const tampered = await codec.decode([{ ...ours!, data: flipped }]).catch((e: unknown) => e);
    expect(tampered).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', hint: undefined });
    await keyring.close();
  });

  it('refuses another format, naming the option', async () => {
    const { keyring } = await keyringFixture();
    expect(() => new EncryptionCodec({ namespace: 'default', keys: keyring, format: 3 as never })).toThrow(
      /format: must be 1 or 2/,
    );
  });
});
