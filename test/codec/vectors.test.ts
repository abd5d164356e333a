import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
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
import { StaticKeys } from './fixtures.ts';

const ProtoPayload = proto.temporal.api.common.v1.Payload;

interface Vector {
  name: string;
  namespace: string;
  version: number;
  keyHex: string;
  input: Record<string, unknown>;
  encoded: Record<string, unknown>;
}
/** What each format's messages are named by (docs/payload-format.md). */
const FORMAT_NAMES = {
  1: {
    providerId: 'temporal-keyring',
    keyName: (v: Vector) => `${v.namespace}/v${v.version}/`,
    context: (v: Vector) => ({
      'temporal-keyring:namespace': v.namespace,
      'temporal-keyring:key-version': String(v.version),
    }),
    metadataKeys: ['encoding', 'encryption-key-id', 'encryption-key-version'],
  },
  2: {
    providerId: 'tk',
    keyName: (v: Vector) => `v${v.version}/`,
    context: (v: Vector) => ({ ns: v.namespace, v: String(v.version) }),
    metadataKeys: ['encoding', 'encryption-key-version'],
  },
} as const;
const fromJson = (json: Record<string, unknown>): Payload => ProtoPayload.fromObject(json);
const toJson = (p: Payload) => ProtoPayload.toObject(ProtoPayload.fromObject(p), { bytes: String });
const sdk = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);

for (const format of [1, 2] as const) {
  describe(`known-answer vectors (test/vectors/v${format}.json)`, () => {
    const file = JSON.parse(readFileSync(new URL(`../vectors/v${format}.json`, import.meta.url), 'utf8')) as {
      format: number;
      vectors: Vector[];
    };
    const names = FORMAT_NAMES[format];

    it(`holds vectors of format ${format}`, () => {
      expect(file.format).toBe(format);
      expect(file.vectors.length).toBeGreaterThanOrEqual(5);
    });

    for (const v of file.vectors) {
      it(`decodes "${v.name}" with the codec`, async () => {
        const keys = new StaticKeys([
          { namespace: v.namespace, version: v.version, material: Buffer.from(v.keyHex, 'hex') },
        ]);
        const codec = new EncryptionCodec({ namespace: v.namespace, keys, format });
        const [decoded] = await codec.decode([fromJson(v.encoded)]);
        expect(toJson(decoded!)).toEqual(v.input);
        // And today's codec writes something of the same shape that decodes to the same input.
        const [again] = await codec.encode([fromJson(v.input)]);
        expect(Object.keys(toJson(again!).metadata as object)).toEqual(
          Object.keys(v.encoded.metadata as object),
        );
        expect(toJson((await codec.decode([again!]))[0]!)).toEqual(v.input);
      });

      it(`decodes "${v.name}" with the bare AWS Encryption SDK and the raw key`, async () => {
        const keyring = new RawAesKeyringNode({
          keyNamespace: names.providerId,
          keyName: names.keyName(v),
          unencryptedMasterKey: Uint8Array.from(Buffer.from(v.keyHex, 'hex')),
          wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
        });
        const encoded = fromJson(v.encoded);
        expect(Buffer.from(encoded.metadata!.encoding!).toString()).toBe('binary/encrypted');
        expect(Object.keys(encoded.metadata!)).toEqual(names.metadataKeys);
        if (format === 1) {
          expect(Buffer.from(encoded.metadata!['encryption-key-id']!).toString()).toBe(
            `${v.namespace}/v${v.version}`,
          );
        }
        expect(Buffer.from(encoded.metadata!['encryption-key-version']!).toString()).toBe(String(v.version));
        const { plaintext, messageHeader } = await sdk.decrypt(keyring, encoded.data!);
        expect(messageHeader.suiteId).toBe(0x0478);
        expect({ ...messageHeader.encryptionContext }).toEqual(names.context(v));
        expect(toJson(ProtoPayload.decode(plaintext))).toEqual(v.input);
      });
    }
  });
}

describe('the vector generator', () => {
  it('has a generator that refuses to overwrite them', async () => {
    const run = promisify(execFile)(process.execPath, ['--import', 'tsx', 'test/vectors/generate.ts'], {
      cwd: new URL('../..', import.meta.url).pathname,
      timeout: 30_000,
    });
    await expect(run).rejects.toMatchObject({
      code: 1,
      stderr: expect.stringContaining('never regenerated'),
    });
  });
});
