import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import type { Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { encryptionContextOf } from '../../src/codec/payload-format.ts';
import { esdkKeyName, PROVIDER_ID } from '../../src/esdk/engine.ts';
import { createFastEngine, fastEngine } from '../../src/esdk/fast-engine.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { benchKeyring, payloads } from '../lib/fixtures.ts';
import { formatFloor } from '../lib/format-floor.ts';
import { type BenchCase, type CaseResult, measureInterleaved } from '../lib/measure.ts';
import { SampleEquivalentCodec } from '../lib/sample-codec.ts';
import { formatTable, humanSize, type Suite } from '../lib/suite.ts';

/**
 * Codec encode and decode throughput and latency against two references measured in the same
 * run: raw AES-256-GCM on the payload data (one random IV per payload, the floor any encryption
 * pays) and the bare AWS Encryption SDK (`@aws-crypto/client-node`, raw AES keyring, suite 0x0478,
 * default 4 KiB frames). Cases: `raw`, `engine-fast` (fastEngine alone on the payload data, to
 * separate engine from codec cost), `codec-fast` (the default codec), `codec-nocache` (the codec on
 * a fast engine without data key caching: a fresh data key and an unwrap per message, as the SDK
 * does without a caching materials manager), `codec-sdk` (the codec on `sdkEngine`), `sdk-bare`,
 * and `sample`: what the official samples-typescript `encryption` codec does (WebCrypto AES-GCM
 * over the whole serialized payload, one static key; bench/lib/sample-codec.ts), the comparison
 * point of the issue-17 target (codec >= 1.2x the sample at 1 KiB); and `floor`: only the crypto
 * calls the message format requires per payload (bench/lib/format-floor.ts), so `floor÷sample` is
 * the most any implementation of the format could reach against the sample in this runtime.
 *
 * Decode inputs are written by the same codec, as a worker writes them: with data key caching,
 * payloads encrypted close together share a data key, so decode unwraps once per data key.
 */

const SIZES = [128, 1024, 16 * 1024, 256 * 1024, 1024 * 1024];
const BATCHES = [1, 100];
const IMPLS = [
  'raw',
  'engine-fast',
  'codec-fast',
  'codec-nocache',
  'codec-sdk',
  'sdk-bare',
  'sample',
  'floor',
] as const;
type Impl = (typeof IMPLS)[number];
const ProtoPayload = proto.temporal.api.common.v1.Payload;

export const codecSuite: Suite = {
  name: 'codec',
  description: 'EncryptionCodec encode/decode vs raw AES-256-GCM and the bare AWS Encryption SDK',
  async run({ quick, log }) {
    const keyring = await benchKeyring();
    try {
      const key = await keyring.encryptionKey('default', 1);
      const rawKey = Buffer.from(key.exportMaterial());
      const codecs = {
        'codec-fast': new EncryptionCodec({ namespace: 'default', keys: keyring, engine: fastEngine }),
        'codec-nocache': new EncryptionCodec({
          namespace: 'default',
          keys: keyring,
          engine: createFastEngine({ dataKeyCache: false }),
        }),
        'codec-sdk': new EncryptionCodec({ namespace: 'default', keys: keyring, engine: sdkEngine }),
      };
      const sample = await SampleEquivalentCodec.create(randomBytes(32));
      const floor = formatFloor();
      const client = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
      const esdkKeyring = new RawAesKeyringNode({
        keyNamespace: PROVIDER_ID,
        keyName: esdkKeyName('default', key.version),
        unencryptedMasterKey: Uint8Array.from(key.exportMaterial()),
        wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
        utf8Sorting: true,
      });
      const context = encryptionContextOf('default', key.version);
      const suiteId = AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY;

      const cases: BenchCase[] = [];
      for (const size of SIZES) {
        for (const batch of BATCHES) {
          const input = payloads(size, batch);
          const datas = input.map((p) => p.data as Uint8Array);
          const rawSealed = datas.map((d) => rawEncrypt(rawKey, d));
          const wrapping = fastEngine.prepare({
            providerId: PROVIDER_ID,
            keyName: esdkKeyName('default', key.version),
            material: key.exportMaterial(),
          });
          const engineSealed = await Promise.all(datas.map((d) => fastEngine.encrypt(d, wrapping, context)));
          const encodedFast = await codecs['codec-fast'].encode(input);
          const encodedNocache = await codecs['codec-nocache'].encode(input);
          const encodedSdk = await codecs['codec-sdk'].encode(input);
          const encodedSample = await sample.encode(input);
          const floorSealed = datas.map((d) => floor.seal(d));
          const sdkSealed = await Promise.all(
            datas.map(
              async (d) =>
                (await client.encrypt(esdkKeyring, d, { suiteId, encryptionContext: context })).result,
            ),
          );
          const tag = `${humanSize(size)}/x${batch}`;
          const encode: Record<Impl, () => Promise<unknown>> = {
            raw: async () => datas.map((d) => rawEncrypt(rawKey, d)),
            'engine-fast': () => Promise.all(datas.map((d) => fastEngine.encrypt(d, wrapping, context))),
            'codec-fast': () => codecs['codec-fast'].encode(input),
            'codec-nocache': () => codecs['codec-nocache'].encode(input),
            'codec-sdk': () => codecs['codec-sdk'].encode(input),
            'sdk-bare': () =>
              Promise.all(
                datas.map((d) => client.encrypt(esdkKeyring, d, { suiteId, encryptionContext: context })),
              ),
            sample: () => sample.encode(input),
            floor: async () => datas.map((d) => floor.seal(d)),
          };
          const decode: Record<Impl, () => Promise<unknown>> = {
            raw: async () => rawSealed.map((s) => rawDecrypt(rawKey, s)),
            'engine-fast': () => Promise.all(engineSealed.map((s) => fastEngine.decrypt(s, wrapping))),
            'codec-fast': () => codecs['codec-fast'].decode(encodedFast),
            'codec-nocache': () => codecs['codec-nocache'].decode(encodedNocache),
            'codec-sdk': () => codecs['codec-sdk'].decode(encodedSdk),
            'sdk-bare': () => Promise.all(sdkSealed.map((s) => client.decrypt(esdkKeyring, s))),
            sample: () => sample.decode(encodedSample),
            floor: async () => floorSealed.map((m) => floor.open(m)),
          };
          for (const impl of IMPLS) {
            cases.push({ name: `encode/${impl}/${tag}`, items: batch, run: encode[impl] });
            cases.push({ name: `decode/${impl}/${tag}`, items: batch, run: decode[impl] });
          }
        }
      }

      const overhead = await measureOverhead(
        codecs['codec-fast'],
        codecs['codec-sdk'],
        new EncryptionCodec({ namespace: 'default', keys: keyring, format: 2 }),
      );
      log(`${cases.length} cases, interleaved`);
      const results = await measureInterleaved(cases, {
        rounds: quick ? 2 : 5,
        sliceMs: quick ? 40 : 200,
        warmup: quick ? 1 : 2,
        onProgress: log,
      });
      return { table: renderTable(results, overhead), data: { results, overhead } };
    } finally {
      await keyring.close();
    }
  },
};

function rawEncrypt(key: Buffer, data: Uint8Array): Buffer {
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', key, iv);
  const body = cipher.update(data);
  cipher.final();
  return Buffer.concat([iv, body, cipher.getAuthTag()]);
}

function rawDecrypt(key: Buffer, sealed: Buffer): Buffer {
  const decipher = createDecipheriv('aes-256-gcm', key, sealed.subarray(0, 12));
  decipher.setAuthTag(sealed.subarray(sealed.length - 16));
  const out = decipher.update(sealed.subarray(12, sealed.length - 16));
  decipher.final();
  return out;
}

interface Overhead {
  /** Original payload (protobuf) size. */
  payloadBytes: number;
  /** Encoded payload (protobuf) size minus the original's: what encryption adds per payload. */
  codecFast: number;
  codecSdk: number;
  /** The same with payload format 2 (compact). */
  codecCompact: number;
  /** ESDK message length minus its plaintext (the serialized original payload). */
  esdkMessageFast: number;
  esdkMessageSdk: number;
}

/** Exact size overhead per payload at 1 KiB of data. */
async function measureOverhead(
  fast: EncryptionCodec,
  sdk: EncryptionCodec,
  compact: EncryptionCodec,
): Promise<Overhead> {
  const [p] = payloads(1024, 1) as [Payload];
  const original = ProtoPayload.encode(p).finish().length;
  const [f] = (await fast.encode([p])) as [Payload];
  const [s] = (await sdk.encode([p])) as [Payload];
  const [c] = (await compact.encode([p])) as [Payload];
  return {
    payloadBytes: original,
    codecFast: ProtoPayload.encode(f).finish().length - original,
    codecSdk: ProtoPayload.encode(s).finish().length - original,
    codecCompact: ProtoPayload.encode(c).finish().length - original,
    esdkMessageFast: (f.data as Uint8Array).length - original,
    esdkMessageSdk: (s.data as Uint8Array).length - original,
  };
}

function renderTable(results: CaseResult[], overhead: Overhead): string {
  const by = new Map(results.map((r) => [r.name, r]));
  const rows: (string | number)[][] = [
    [
      'op size/batch',
      'raw/cpu-s',
      'fast/cpu-s',
      'fast÷raw',
      'fast÷raw p50',
      'engine÷raw p50',
      'nocache÷raw p50',
      'codec-sdk/cpu-s',
      'sdk-bare/cpu-s',
      'fast÷sdk-bare',
      'sample/cpu-s',
      'fast÷sample',
      'floor÷sample',
      'fast÷sample p50',
      'raw p50 ms',
      'fast p50 ms',
      'fast p99 ms',
      'sdk-bare p50 ms',
    ],
  ];
  for (const op of ['encode', 'decode']) {
    for (const size of SIZES) {
      for (const batch of BATCHES) {
        const tag = `${humanSize(size)}/x${batch}`;
        const get = (impl: Impl) => by.get(`${op}/${impl}/${tag}`)!;
        const raw = get('raw');
        const fast = get('codec-fast');
        const bare = get('sdk-bare');
        rows.push([
          `${op} ${tag}`,
          fmtRate(raw.itemsPerCpuSecond),
          fmtRate(fast.itemsPerCpuSecond),
          (fast.itemsPerCpuSecond / raw.itemsPerCpuSecond).toFixed(2),
          (raw.p50Ms / fast.p50Ms).toFixed(2),
          (raw.p50Ms / get('engine-fast').p50Ms).toFixed(2),
          (raw.p50Ms / get('codec-nocache').p50Ms).toFixed(2),
          fmtRate(get('codec-sdk').itemsPerCpuSecond),
          fmtRate(bare.itemsPerCpuSecond),
          `${(fast.itemsPerCpuSecond / bare.itemsPerCpuSecond).toFixed(1)}x`,
          fmtRate(get('sample').itemsPerCpuSecond),
          (fast.itemsPerCpuSecond / get('sample').itemsPerCpuSecond).toFixed(2),
          (get('floor').itemsPerCpuSecond / get('sample').itemsPerCpuSecond).toFixed(2),
          (get('sample').p50Ms / fast.p50Ms).toFixed(2),
          raw.p50Ms.toFixed(3),
          fast.p50Ms.toFixed(3),
          fast.p99Ms.toFixed(3),
          bare.p50Ms.toFixed(3),
        ]);
      }
    }
  }
  const notes = [
    'Rates: payloads per CPU second of the benchmark process (median of interleaved rounds); fast = the',
    'default codec (EncryptionCodec on fastEngine). Latency: wall time per call (a whole batch), all samples.',
    '"÷raw p50" ratios compare median call latencies (raw p50 / other p50): the steadiest figure when the',
    'machine is oversubscribed. engine = fastEngine alone on the same data (no protobuf, no metadata).',
    'nocache = the codec on a fast engine without data key caching (a data key and an unwrap per message).',
    'sample = what the official samples-typescript encryption codec does (WebCrypto AES-GCM over the serialized',
    'payload); its CPU seconds include the thread pool, where WebCrypto runs. Target: fast÷sample >= 1.2 at 1 KiB.',
    'floor = only the crypto calls the message format requires (HKDF-SHA512 and two AES-GCM contexts per payload,',
    'bench/lib/format-floor.ts): floor÷sample bounds fast÷sample for any implementation of the format on this runtime.',
    `Size overhead at 1 KiB (payload of ${overhead.payloadBytes} B serialized): encoded payload +${overhead.codecFast} B ` +
      `with codec-fast (+${overhead.codecSdk} B with codec-sdk); the ESDK message alone adds ` +
      `${overhead.esdkMessageFast} B (fast) / ${overhead.esdkMessageSdk} B (sdk). Payload format 2 (compact): +${overhead.codecCompact} B.`,
  ];
  return `${formatTable(rows)}\n\n${notes.join('\n')}`;
}

function fmtRate(n: number): string {
  return n >= 100 ? Math.round(n).toLocaleString('en-US') : n.toFixed(1);
}
