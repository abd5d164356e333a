/**
 * Generates known-answer vectors for the encrypted payload format: fixed keys, fixed inputs, and
 * what the codec wrote for them on the day they were generated. test/codec/vectors.test.ts decodes
 * every vector (with the codec and with the bare AWS Encryption SDK), so a future change that would
 * stop today's stored payloads from decoding fails the tests.
 *
 * Run by hand, never from a test:
 *
 *   node --import tsx test/vectors/generate.ts            # writes test/vectors/v1.json if absent
 *   node --import tsx test/vectors/generate.ts --format 2 # writes test/vectors/v2.json if absent
 *   node --import tsx test/vectors/generate.ts --out /tmp/v1.json
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
  const outIndex = process.argv.indexOf('--out');
  const out =
    outIndex > 0 ? process.argv[outIndex + 1]! : join(dirname(fileURLToPath(import.meta.url)), `v${format}.json`);
  if (existsSync(out)) {
    console.error(`${out} exists; vectors are never regenerated. Write a new file with --out.`);
    process.exit(1);
  }
  const vectors = [];
  for (const input of inputs) {
    const codec = new EncryptionCodec({
      namespace: input.namespace,
      keys: new VectorKeys(input.namespace, input.version),
      format,
    });
    const [encoded] = await codec.encode([input.payload]);
    vectors.push({
      name: input.name,
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
    engine: codecEngineName(),
    generatedAt: new Date().toISOString(),
    vectors,
  };
  writeFileSync(out, `${JSON.stringify(document, null, 2)}\n`, { flag: 'wx' });
  console.log(`wrote ${vectors.length} vectors to ${out}`);
}

function codecEngineName(): string {
  return new EncryptionCodec({ namespace: 'default', keys: new VectorKeys('default', 1) }).engineName;
}

await main();
