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
import { DecryptionFailedError } from '../../src/errors.ts';
import { fastEngine } from '../../src/esdk/fast-engine.ts';
import { deriveKeys } from '../../src/esdk/key-derivation.ts';
import { parseHeader } from '../../src/esdk/message-format.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
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

/*
 * v1.json and v2-sdk.json were written by the codec on sdkEngine (@aws-crypto/client-node itself),
 * not by the fast engine under test. v2.json was written by the fast engine: kept as an extra set,
 * because payloads written then must decode forever.
 */
const FILES = [
  { name: 'v1.json', format: 1, engine: 'sdk' },
  { name: 'v2.json', format: 2, engine: 'fast' },
  { name: 'v2-sdk.json', format: 2, engine: 'sdk' },
] as const;

for (const { name: fileName, format, engine } of FILES) {
  describe(`known-answer vectors (test/vectors/${fileName})`, () => {
    const file = JSON.parse(readFileSync(new URL(`../vectors/${fileName}`, import.meta.url), 'utf8')) as {
      format: number;
      engine: string;
      vectors: Vector[];
    };
    const names = FORMAT_NAMES[format];

    it(`holds vectors of format ${format} written by the ${engine} engine`, () => {
      expect(file.format).toBe(format);
      expect(file.engine).toBe(engine);
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

describe('the SDK-written set covers the layouts and name lengths it claims', () => {
  const file = JSON.parse(readFileSync(new URL('../vectors/v2-sdk.json', import.meta.url), 'utf8')) as {
    vectors: (Vector & { layout?: string })[];
  };
  const messages = file.vectors.map((v) => ({ v, data: Buffer.from(fromJson(v.encoded).data!) }));
  /** Frame content lengths of a framed message, in order (the last is the final frame's). */
  const frames = (data: Buffer) => {
    const h = parseHeader(data);
    const out: number[] = [];
    let pos = h.bodyStart;
    while (data.readUInt32BE(pos) !== 0xffffffff) {
      out.push(h.frameLength);
      pos += 4 + 12 + h.frameLength + 16;
    }
    out.push(data.readUInt32BE(pos + 4 + 4 + 12));
    return out;
  };

  it('several regular frames, an empty final frame, non-framed bodies, key names of 3 to 11 bytes and more', () => {
    const framed = messages.filter(({ v }) => !v.layout).map(({ data }) => frames(data));
    expect(framed.some((f) => f.length >= 4)).toBe(true);
    expect(framed.some((f) => f.length >= 3 && f.at(-1) === 0)).toBe(true);
    const nonFramed = messages.filter(({ v }) => v.layout);
    expect(nonFramed.length).toBeGreaterThanOrEqual(2);
    for (const { data } of nonFramed) {
      const h = parseHeader(data);
      expect([h.contentType, h.frameLength]).toEqual([1, 0]);
    }
    const keyNameLengths = new Set(messages.map(({ data }) => parseHeader(data).providerInfo.length - 20));
    for (const length of [3, 4, 5, 11]) expect(keyNameLengths).toContain(length);
    expect(file.vectors.some((v) => v.namespace.length === 200)).toBe(true);
  });
});

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

describe("the AWS Encryption SDK's own commitment test vectors (test/vectors/aws-commitment-vectors.json)", () => {
  const file = JSON.parse(
    readFileSync(new URL('../vectors/aws-commitment-vectors.json', import.meta.url), 'utf8'),
  ) as {
    rawAesKey: { keyNamespace: string; keyName: string; keyHex: string };
    tests: {
      comment: string;
      keyringType: string;
      status: boolean;
      ciphertext?: string;
      plaintext?: string;
      messageId?: string;
      decryptedDek?: string;
      commitment?: string;
      contentEncryptionKey?: string;
    }[];
  };
  const b64 = (s: string) => Buffer.from(s, 'base64');
  const wrapping = {
    providerId: file.rawAesKey.keyNamespace,
    keyName: file.rawAesKey.keyName,
    material: Buffer.from(file.rawAesKey.keyHex, 'hex'),
  };
  const byNumber = (n: number) => file.tests.find((t) => t.comment.startsWith(`${n}.`))!;

  it('key derivation: deriveKeys gives the published commitment and content encryption key', () => {
    const withKdf = file.tests.filter((t) => t.decryptedDek);
    expect(withKdf.length).toBeGreaterThanOrEqual(4);
    for (const t of withKdf) {
      const { commitment, key } = deriveKeys(b64(t.decryptedDek!), b64(t.messageId!));
      expect(commitment.toString('base64'), t.comment).toBe(t.commitment);
      expect(key.toString('base64'), t.comment).toBe(t.contentEncryptionKey);
    }
  });

  it('test 1 (good commitment, raw AES key of zeros): both engines and the bare SDK decrypt it', async () => {
    const t = byNumber(1);
    expect(t.status).toBe(true);
    for (const engine of [fastEngine, sdkEngine]) {
      const out = await engine.decrypt(b64(t.ciphertext!), engine.prepare(wrapping));
      expect(Buffer.from(out.plaintext).toString(), engine.name).toBe(t.plaintext);
      expect(out.context).toEqual({});
    }
    const keyring = new RawAesKeyringNode({
      keyNamespace: wrapping.providerId,
      keyName: wrapping.keyName,
      unencryptedMasterKey: Uint8Array.from(wrapping.material),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    });
    expect((await sdk.decrypt(keyring, b64(t.ciphertext!))).plaintext.toString()).toBe(t.plaintext);
  });

  it('test 2 (bad commitment): refused by both engines, opaquely, as by the SDK', async () => {
    const t = byNumber(2);
    expect(t.status).toBe(false);
    for (const engine of [fastEngine, sdkEngine]) {
      await expect(engine.decrypt(b64(t.ciphertext!), engine.prepare(wrapping))).rejects.toBeInstanceOf(
        DecryptionFailedError,
      );
    }
    // And it is the commitment that fails: the header's differs from the one its data key derives.
    const header = parseHeader(b64(t.ciphertext!));
    expect(Buffer.from(header.commitment).toString('base64')).not.toBe(t.commitment);
  });

  it('tests 3 (a signing suite) and 4 (two AWS KMS data keys): refused by both engines whatever the key', async () => {
    for (const n of [3, 4]) {
      const t = byNumber(n);
      for (const engine of [fastEngine, sdkEngine]) {
        await expect(
          engine.decrypt(b64(t.ciphertext!), engine.prepare(wrapping)),
          `${n} ${engine.name}`,
        ).rejects.toBeInstanceOf(DecryptionFailedError);
      }
    }
    expect(b64(byNumber(3).ciphertext!).readUInt16BE(1)).toBe(0x0578);
  });
});
