/**
 * Generates known-answer vectors for the encrypted payload format: fixed keys, fixed inputs, and
 * what the codec wrote for them on the day they were generated. test/codec/vectors.test.ts decodes
 * every vector (with the codec and with the bare AWS Encryption SDK), so a future change that would
 * stop today's stored payloads from decoding fails the tests.
 *
 * Run by hand, never from a test:
 *
 *   node --import tsx test/vectors/generate.ts            # writes test/vectors/v1.json if absent
 *   node --import tsx test/vectors/generate.ts --format 2 --out test/vectors/v2-sdk.json
 *   node --import tsx test/vectors/generate.ts --out /tmp/v1.json
 *
 * The codec writes them on the reference engine (`--engine sdk`, the default: @aws-crypto/
 * client-node itself), so that the vectors are not the work of the fast engine they test.
 * test/vectors/v2.json was written by the fast engine and is kept as an extra set. Besides the
 * ordinary payloads there are vectors with several frames, an empty final frame (a plaintext of
 * exactly two frames, as the SDK writes it), key names of every length in digits of the version,
 * the longest namespace, and non-framed bodies, which no engine writes: those are crafted by
 * test/esdk/craft.ts and marked `layout: non-framed (crafted)`.
 *
 * It refuses to overwrite an existing file: vectors are a record of the past, not a snapshot to
 * refresh. A new format gets a new file (v2.json) beside the old one.
 */
import { createHash } from 'node:crypto';
import { existsSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { FORMATS, formatContextOf } from '../../src/codec/payload-format.ts';
import { serializePayload } from '../../src/codec/serialize-payload.ts';
import { joinPlaintext } from '../../src/esdk/engine.ts';
import { fastEngine } from '../../src/esdk/fast-engine.ts';
import { serializeEncryptionContext } from '../../src/esdk/message-format.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { craftMessage } from '../esdk/craft.ts';
import { createKeyHandle, type KeyHandle, type KeyProvider } from '../../src/keyring/key-handle.ts';

/** Key material of a vector: public test data, derived so that it is reproducible by anyone. */
export function vectorKeyHex(namespace: string, version: number): string {
  return createHash('sha256').update(`temporal-keyring test vector key ${namespace} v${version}`).digest('hex');
}

const utf8 = (s: string) => Buffer.from(s, 'utf8');

const inputs: { name: string; namespace: string; version: number; payload: Payload }[] = [
  {
    name: 'json object',
    namespace: 'default',
    version: 1,
    payload: { metadata: { encoding: utf8('json/plain') }, data: utf8('{"orderId":"A-1001","amount":42.5}') },
  },
  {
    name: 'empty data (binary/null)',
    namespace: 'default',
    version: 1,
    payload: { metadata: { encoding: utf8('binary/null') } },
  },
  {
    name: 'version 10 (key name prefix of v1 must not matter)',
    namespace: 'default',
    version: 10,
    payload: { metadata: { encoding: utf8('json/plain') }, data: utf8('"ten"') },
  },
  {
    name: 'several metadata keys, unicode, binary values',
    namespace: 'payments.prod-eu_1',
    version: 3,
    payload: {
      metadata: {
        encoding: utf8('json/protobuf'),
        messageType: utf8('acme.payments.v1.Charge'),
        'ünïcödé-kéy': utf8('välue ✓'),
        raw: Buffer.from([0, 1, 2, 254, 255]),
      },
      data: utf8('{"amount":{"units":"12","currency":"EUR"},"note":"日本語"}'),
    },
  },
  {
    name: 'three frames (10000 bytes)',
    namespace: 'payments.prod-eu_1',
    version: 3,
    payload: {
      metadata: { encoding: utf8('binary/plain') },
      data: Buffer.from(Array.from({ length: 10_000 }, (_, i) => (i * 31 + 7) & 0xff)),
    },
  },
];

const ProtoPayload0 = proto.temporal.api.common.v1.Payload;
/** A binary/plain payload whose serialized form is exactly `size` bytes. */
function payloadOfSerializedSize(size: number): Payload {
  for (let n = size; n > 0; n--) {
    const payload = {
      metadata: { encoding: utf8('binary/plain') },
      data: Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + 5) & 0xff)),
    };
    if (ProtoPayload0.encode(payload).finish().length === size) return payload;
  }
  throw new Error(`no payload serializes to ${size} bytes`);
}

/** Inputs added with the SDK-written set: layouts and name lengths the first sets lacked. */
const extendedInputs: (typeof inputs[number] & { layout?: 'non-framed' })[] = [
  {
    name: 'several frames (15000 bytes: three full 4096-byte frames and a final one)',
    namespace: 'default',
    version: 2,
    payload: {
      metadata: { encoding: utf8('binary/plain') },
      data: Buffer.from(Array.from({ length: 15_000 }, (_, i) => (i * 7 + 3) & 0xff)),
    },
  },
  {
    name: 'empty final frame (a plaintext of exactly two frames)',
    namespace: 'default',
    version: 2,
    payload: payloadOfSerializedSize(8192),
  },
  ...[9, 99, 100, 123_456_789].map((version) => ({
    name: `key name of ${String(version).length + 2} bytes (version ${version})`,
    namespace: 'default',
    version,
    payload: { metadata: { encoding: utf8('json/plain') }, data: utf8(`"version ${version}"`) },
  })),
  {
    name: 'longest namespace (200 characters)',
    namespace: 'n'.repeat(199) + '1',
    version: 1,
    payload: { metadata: { encoding: utf8('json/plain') }, data: utf8('"long"') },
  },
  {
    name: 'non-framed body (crafted: no engine writes it)',
    namespace: 'default',
    version: 1,
    layout: 'non-framed',
    payload: { metadata: { encoding: utf8('json/plain') }, data: utf8('{"nonFramed":true}') },
  },
  {
    name: 'non-framed body, empty plaintext data (crafted)',
    namespace: 'default',
    version: 1,
    layout: 'non-framed',
    payload: { metadata: { encoding: utf8('binary/null') } },
  },
];

const ProtoPayload = proto.temporal.api.common.v1.Payload;

/** Protobuf-JSON of a payload: metadata values and data as standard base64. */
export function payloadToProtoJson(payload: Payload): Record<string, unknown> {
  return ProtoPayload.toObject(ProtoPayload.fromObject(payload), { bytes: String });
}

class VectorKeys implements KeyProvider {
  constructor(private readonly namespace: string, private readonly version: number) {}
  async encryptionKey(): Promise<KeyHandle> {
    return this.decryptionKey(this.namespace, this.version);
  }
  async decryptionKey(namespace: string, version: number): Promise<KeyHandle> {
    const material = Buffer.from(vectorKeyHex(namespace, version), 'hex');
    return createKeyHandle({ namespace, version, material }).handle;
  }
}

async function main(): Promise<void> {
  const formatIndex = process.argv.indexOf('--format');
  const format = formatIndex > 0 ? Number(process.argv[formatIndex + 1]) : 1;
  if (format !== 1 && format !== 2) {
    console.error('--format must be 1 or 2');
    process.exit(2);
  }
  const engineIndex = process.argv.indexOf('--engine');
  const engineName = engineIndex > 0 ? process.argv[engineIndex + 1] : 'sdk';
  if (engineName !== 'sdk' && engineName !== 'fast') {
    console.error('--engine must be sdk or fast');
    process.exit(2);
  }
  const engine = engineName === 'sdk' ? sdkEngine : fastEngine;
  const outIndex = process.argv.indexOf('--out');
  const out =
    outIndex > 0 ? process.argv[outIndex + 1]! : join(dirname(fileURLToPath(import.meta.url)), `v${format}.json`);
  if (existsSync(out)) {
    console.error(`${out} exists; vectors are never regenerated. Write a new file with --out.`);
    process.exit(1);
  }
  const vectors = [];
  for (const input of [...inputs, ...extendedInputs] as (typeof extendedInputs)[number][]) {
    const codec = new EncryptionCodec({
      namespace: input.namespace,
      keys: new VectorKeys(input.namespace, input.version),
      format,
      engine,
    });
    let [encoded] = await codec.encode([input.payload]);
    if (input.layout === 'non-framed') encoded = craftedNonFramed(input, format, encoded!);
    vectors.push({
      name: input.name,
      ...(input.layout ? { layout: 'non-framed (crafted)' } : {}),
      namespace: input.namespace,
      version: input.version,
      keyHex: vectorKeyHex(input.namespace, input.version),
      input: payloadToProtoJson(input.payload),
      encoded: payloadToProtoJson(encoded!),
    });
  }
  const document = {
    description:
      'Known-answer vectors for temporal-keyring encrypted payloads. Test data only: the keys are public. Generated once by test/vectors/generate.ts; never regenerate, add a new file instead.',
    format,
    engine: engine.name,
    generatedAt: new Date().toISOString(),
    vectors,
  };
  writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`, { flag: 'wx' });
  console.log(`wrote ${vectors.length} vectors to ${out}`);
}

/** The payload the codec wrote, with its ESDK message replaced by a crafted non-framed one. */
function craftedNonFramed(input: (typeof extendedInputs)[number], format: 1 | 2, encoded: Payload): Payload {
  const names = FORMATS[format];
  const data = craftMessage({
    key: {
      providerId: names.providerId,
      keyName: names.keyName(input.namespace, input.version),
      material: Buffer.from(vectorKeyHex(input.namespace, input.version), 'hex'),
    },
    contextBytes: serializeEncryptionContext(formatContextOf(format, input.namespace, input.version)),
    plaintext: joinPlaintext(serializePayload(input.payload)),
    content: 'non-framed',
    seed: input.name,
  });
  return { metadata: encoded.metadata, data };
}

await main();
