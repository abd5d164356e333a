import { randomBytes } from 'node:crypto';
import {
  AlgorithmSuiteIdentifier,
  buildClient,
  CommitmentPolicy,
  type KeyringNode,
  MultiKeyringNode,
  RawAesKeyringNode,
  RawAesWrappingSuiteIdentifier,
} from '@aws-crypto/client-node';
import { defaultPayloadConverter, type Payload } from '@temporalio/common';
import proto from '@temporalio/proto';
import fc from 'fast-check';
import { beforeAll, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { isKeyringError, type KeyringErrorCode } from '../../src/errors.ts';
import {
  type EsdkEngine,
  esdkKeyName,
  PROVIDER_ID,
  type PreparedKey,
  type WrappingKey,
} from '../../src/esdk/engine.ts';
import { fastEngine } from '../../src/esdk/fast-engine.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { fcParams } from './support/harness.ts';

/**
 * Tampered and foreign ciphertexts, through the codec's decode path and straight through both
 * engines: random bytes, every truncation, every bit flip, random mutations, and well-formed ESDK
 * messages that break one of our rules (context, data key count, suite, provider, key name). Every
 * outcome is a typed error with a stable code; decryption failures are opaque.
 */

const ProtoPayload = proto.temporal.api.common.v1.Payload;
const utf8 = (s: string) => Buffer.from(s, 'utf8');

/** Codes an engine may throw on bad bytes. */
const ENGINE_CODES: KeyringErrorCode[] = ['ERR_MALFORMED_PAYLOAD', 'ERR_DECRYPTION_FAILED'];
/** Codes the codec's decode may throw on a bad payload. */
const CODEC_CODES: KeyringErrorCode[] = [
  ...ENGINE_CODES,
  'ERR_NAMESPACE_MISMATCH',
  'ERR_KEY_VERSION_NOT_FOUND',
];

let keyring: Keyring;
let key: WrappingKey;
let otherKey: WrappingKey;
let fastKey: PreparedKey;
let sdkKey: PreparedKey;
const codecs: Record<'fast' | 'sdk', EncryptionCodec> = {} as never;
let valid: Payload;
let validMessage: Buffer;
let multiFrame: Buffer;

/** The error of a promise that must fail, checked to be typed with one of `codes`. */
async function expectTypedFailure(promise: Promise<unknown>, codes: KeyringErrorCode[], what: string) {
  let error: unknown;
  try {
    await promise;
  } catch (e) {
    error = e;
  }
  expect(error, `${what}: no error`).toBeDefined();
  expect(isKeyringError(error), `${what}: ${String(error)}`).toBe(true);
  const code = (error as { code: KeyringErrorCode }).code;
  expect(codes, `${what}: ${code} ${(error as Error).message}`).toContain(code);
  // Opaque: nothing says which check failed.
  if (code === 'ERR_DECRYPTION_FAILED') expect((error as Error).message).toBe('decryption failed');
  return code;
}

const withData = (data: Uint8Array): Payload => ({ metadata: { ...valid.metadata }, data });

beforeAll(async () => {
  keyring = await Keyring.open({
    keystore: new MemoryKeystore(),
    kek: new LocalKek(randomBytes(32)),
    clock: new ManualClock(Date.UTC(2026, 0, 1)),
  });
  await keyring.createNamespace('default');
  await keyring.createNamespace('other');
  const resolved = await keyring.decryptionKey('default', 1);
  key = { providerId: PROVIDER_ID, keyName: esdkKeyName('default', 1), material: resolved.exportMaterial() };
  const other = await keyring.decryptionKey('other', 1);
  otherKey = { providerId: PROVIDER_ID, keyName: esdkKeyName('other', 1), material: other.exportMaterial() };
  fastKey = fastEngine.prepare(key);
  sdkKey = sdkEngine.prepare(key);
  codecs.fast = new EncryptionCodec({ namespace: 'default', keys: keyring, engine: fastEngine });
  codecs.sdk = new EncryptionCodec({ namespace: 'default', keys: keyring, engine: sdkEngine });
  valid = (await codecs.fast.encode([defaultPayloadConverter.toPayload({ order: 'A-1', amount: 42 })]))[0]!;
  validMessage = Buffer.from(valid.data!);
  // Three 4096-byte frames and a final one.
  const [big] = await codecs.fast.encode([{ metadata: {}, data: randomBytes(3 * 4096 + 100) }]);
  multiFrame = Buffer.from(big!.data!);
  // Sanity: both engines read the valid message.
  for (const codec of Object.values(codecs)) expect(await codec.decode([valid!])).toHaveLength(1);
});

describe('random bytes', () => {
  it('fast engine and codec: 25k arbitrary or valid-looking messages, 6k through the codec', async () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 600 }),
      fc.uint8Array({ maxLength: 600 }).map((tail) => Buffer.concat([Buffer.from([2, 4, 0x78]), tail])),
      // The real header with a random body: gets past header parsing into the frames.
      fc
        .uint8Array({ maxLength: 200 })
        .map((tail) => Buffer.concat([validMessage.subarray(0, validMessage.length - 120), tail])),
    );
    await fc.assert(
      fc.asyncProperty(bytes, async (b) => {
        await expectTypedFailure(fastEngine.decrypt(b, fastKey), ENGINE_CODES, 'fast');
      }),
      fcParams(25_000),
    );
    await fc.assert(
      fc.asyncProperty(bytes, async (b) => {
        await expectTypedFailure(codecs.fast.decode([withData(b)]), CODEC_CODES, 'codec');
      }),
      fcParams(6_000),
    );
  }, 120_000);

  it('sdk engine and its codec: 2k arbitrary messages', async () => {
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 400 }),
      fc.uint8Array({ maxLength: 400 }).map((tail) => Buffer.concat([Buffer.from([2, 4, 0x78]), tail])),
      fc
        .uint8Array({ maxLength: 200 })
        .map((tail) => Buffer.concat([validMessage.subarray(0, validMessage.length - 120), tail])),
    );
    await fc.assert(
      fc.asyncProperty(bytes, async (b) => {
        await expectTypedFailure(sdkEngine.decrypt(b, sdkKey), ENGINE_CODES, 'sdk');
        await expectTypedFailure(codecs.sdk.decode([withData(b)]), CODEC_CODES, 'sdk codec');
      }),
      fcParams(1000),
    );
  }, 120_000);
});

describe('tampering with a valid message', () => {
  it('every truncation fails, in both engines and through the codec', async () => {
    for (let length = 0; length < validMessage.length; length++) {
      const cut = validMessage.subarray(0, length);
      await expectTypedFailure(fastEngine.decrypt(cut, fastKey), ENGINE_CODES, `fast cut ${length}`);
      await expectTypedFailure(sdkEngine.decrypt(cut, sdkKey), ENGINE_CODES, `sdk cut ${length}`);
      // Length 0 is "no data": malformed before any engine runs.
      await expectTypedFailure(codecs.fast.decode([withData(cut)]), CODEC_CODES, `codec cut ${length}`);
    }
    // A multi-frame message: every truncation with the fast engine, a sample with the SDK.
    for (let length = 0; length < multiFrame.length; length++) {
      const cut = multiFrame.subarray(0, length);
      await expectTypedFailure(
        fastEngine.decrypt(cut, fastKey),
        ENGINE_CODES,
        `fast multi-frame cut ${length}`,
      );
      if (length % 211 === 0 || (length > 4000 && length % 4096 < 40)) {
        await expectTypedFailure(
          sdkEngine.decrypt(cut, sdkKey),
          ENGINE_CODES,
          `sdk multi-frame cut ${length}`,
        );
      }
    }
  }, 120_000);

  it('every single bit flip fails, in the fast engine and the codec (every third bit in the SDK)', async () => {
    for (let bit = 0; bit < validMessage.length * 8; bit++) {
      const flipped = Buffer.from(validMessage);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      await expectTypedFailure(fastEngine.decrypt(flipped, fastKey), ENGINE_CODES, `fast bit ${bit}`);
      if (bit % 3 === 0)
        await expectTypedFailure(sdkEngine.decrypt(flipped, sdkKey), ENGINE_CODES, `sdk bit ${bit}`);
      await expectTypedFailure(codecs.fast.decode([withData(flipped)]), CODEC_CODES, `codec bit ${bit}`);
    }
  }, 120_000);

  it('random multi-byte mutations, insertions and deletions fail (15k cases)', async () => {
    const mutation = fc
      .array(
        fc.tuple(
          fc.nat({ max: validMessage.length - 1 }),
          fc.integer({ min: 0, max: 255 }),
          fc.constantFrom('set', 'insert', 'delete'),
        ),
        { minLength: 1, maxLength: 4 },
      )
      .map((edits) => {
        const bytes = [...validMessage];
        for (const [at, value, kind] of edits) {
          const i = Math.min(at, bytes.length - 1);
          if (kind === 'set') bytes[i] = value;
          else if (kind === 'insert') bytes.splice(i, 0, value);
          else bytes.splice(i, 1);
        }
        return Buffer.from(bytes);
      })
      .filter((b) => !b.equals(validMessage));
    await fc.assert(
      fc.asyncProperty(mutation, async (b) => {
        await expectTypedFailure(fastEngine.decrypt(b, fastKey), ENGINE_CODES, 'fast mutation');
      }),
      fcParams(15_000),
    );
    await fc.assert(
      fc.asyncProperty(mutation, async (b) => {
        await expectTypedFailure(sdkEngine.decrypt(b, sdkKey), ENGINE_CODES, 'sdk mutation');
      }),
      fcParams(800),
    );
  }, 120_000);

  it('metadata that lies about the version, the key id or the namespace (5k cases)', async () => {
    const text = fc.oneof(
      fc.constantFrom(
        '1',
        '2',
        '0',
        '01',
        '-1',
        '1 ',
        '9007199254740993',
        'default/v1',
        'other/v1',
        'default/v2',
        '../v1',
        'default/v1/',
        '',
      ),
      fc.string({ maxLength: 30 }),
    );
    const metadata = fc.record(
      {
        encoding: fc.constantFrom(utf8('binary/encrypted')),
        'encryption-key-version': fc.oneof(text.map(utf8), fc.uint8Array({ maxLength: 8 })),
        'encryption-key-id': fc.oneof(text.map(utf8), fc.uint8Array({ maxLength: 8 })),
      },
      { requiredKeys: ['encoding'] },
    );
    await fc.assert(
      fc.asyncProperty(metadata, async (md) => {
        const isValid =
          Buffer.from(md['encryption-key-version'] ?? []).toString() === '1' &&
          Buffer.from(md['encryption-key-id'] ?? []).toString() === 'default/v1';
        const attempt = codecs.fast.decode([{ metadata: md, data: validMessage }]);
        if (isValid) expect(await attempt).toHaveLength(1);
        else await expectTypedFailure(attempt, CODEC_CODES, JSON.stringify(md));
      }),
      fcParams(5_000),
    );
  }, 60_000);

  it('a payload of one namespace never decodes under another, even with forged metadata', async () => {
    const otherCodec = new EncryptionCodec({ namespace: 'other', keys: keyring });
    // As written: the codec names the namespace it was meant for.
    expect(await expectTypedFailure(otherCodec.decode([valid]), CODEC_CODES, 'as is')).toBe(
      'ERR_NAMESPACE_MISMATCH',
    );
    // Forged to claim "other/v1": the data key is wrapped under default's key name and material.
    const forged: Payload = {
      metadata: { ...valid.metadata, 'encryption-key-id': utf8('other/v1') },
      data: validMessage,
    };
    expect(await expectTypedFailure(otherCodec.decode([forged]), CODEC_CODES, 'forged')).toBe(
      'ERR_DECRYPTION_FAILED',
    );
  });
});

describe('well-formed ESDK messages that break our rules (bare @aws-crypto/client-node)', () => {
  const requireCommit = buildClient(CommitmentPolicy.REQUIRE_ENCRYPT_REQUIRE_DECRYPT);
  const legacy = buildClient(CommitmentPolicy.FORBID_ENCRYPT_ALLOW_DECRYPT);
  const raw = (k: WrappingKey): RawAesKeyringNode =>
    new RawAesKeyringNode({
      keyNamespace: k.providerId,
      keyName: k.keyName,
      unencryptedMasterKey: Uint8Array.from(k.material),
      wrappingSuite: RawAesWrappingSuiteIdentifier.AES256_GCM_IV12_TAG16_NO_PADDING,
    });
  const goodContext = { 'temporal-keyring:namespace': 'default', 'temporal-keyring:key-version': '1' };
  const inner = () => ProtoPayload.encode(defaultPayloadConverter.toPayload('CANARY-not-for-you')).finish();

  async function message(
    keyring: KeyringNode,
    options: { context?: Record<string, string>; suiteId?: AlgorithmSuiteIdentifier; legacy?: boolean } = {},
  ): Promise<Buffer> {
    const client = options.legacy ? legacy : requireCommit;
    const { result } = await client.encrypt(keyring, inner(), {
      suiteId: options.suiteId ?? AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY,
      encryptionContext: options.context ?? goodContext,
    });
    return Buffer.from(result);
  }

  /** Refused by both engines directly and by both codecs. */
  async function expectRefused(bytes: Buffer, what: string, engineCodes = ENGINE_CODES): Promise<void> {
    for (const engine of [fastEngine, sdkEngine] as EsdkEngine[]) {
      await expectTypedFailure(
        engine.decrypt(bytes, engine.prepare(key)),
        engineCodes,
        `${engine.name} ${what}`,
      );
    }
    for (const [name, codec] of Object.entries(codecs)) {
      await expectTypedFailure(codec.decode([withData(bytes)]), CODEC_CODES, `${name} codec ${what}`);
    }
  }

  it('the control: a bare-SDK message with our names, suite and context decodes', async () => {
    const bytes = await message(raw(key));
    for (const codec of Object.values(codecs)) {
      const [out] = await codec.decode([withData(bytes)]);
      expect(defaultPayloadConverter.fromPayload(out!)).toBe('CANARY-not-for-you');
    }
  });

  it('a wrong encryption context: the engines read it, the codec refuses it', async () => {
    const contexts: Record<string, string>[] = [
      {},
      { 'temporal-keyring:namespace': 'default' },
      { 'temporal-keyring:key-version': '1' },
      { ...goodContext, extra: 'x' },
      { ...goodContext, 'temporal-keyring:key-version': '2' },
      { ...goodContext, 'temporal-keyring:key-version': '01' },
      { ...goodContext, 'temporal-keyring:namespace': 'other' },
      { ...goodContext, 'temporal-keyring:namespace': 'Default' },
      { 'temporal-keyring:Namespace': 'default', 'temporal-keyring:key-version': '1' },
    ];
    for (const context of contexts) {
      const bytes = await message(raw(key), { context });
      for (const engine of [fastEngine, sdkEngine]) {
        // The engines authenticate the context, not its meaning: they return it, or refuse a
        // message whose context the SDK serialized out of spec order (localeCompare: "N" vs "k").
        const out = await engine.decrypt(bytes, engine.prepare(key)).catch((e: unknown) => e);
        if (isKeyringError(out)) expect(out.code).toBe('ERR_DECRYPTION_FAILED');
        else expect((out as { context: unknown }).context).toEqual(context);
      }
      for (const codec of Object.values(codecs)) {
        await expectTypedFailure(
          codec.decode([withData(bytes)]),
          ['ERR_DECRYPTION_FAILED', 'ERR_NAMESPACE_MISMATCH'],
          JSON.stringify(context),
        );
      }
    }
  });

  it('more than one encrypted data key (ours first or second) is refused', async () => {
    const attacker: WrappingKey = { ...key, material: randomBytes(32) };
    await expectRefused(
      await message(new MultiKeyringNode({ generator: raw(key), children: [raw(attacker)] })),
      'ours + attacker',
    );
    await expectRefused(
      await message(new MultiKeyringNode({ generator: raw(attacker), children: [raw(key)] })),
      'attacker + ours',
    );
    await expectRefused(
      await message(new MultiKeyringNode({ generator: raw(key), children: [raw(otherKey)] })),
      'ours + other namespace',
    );
  });

  it('a signing suite (0x0578), non-committing suites (0x0178, 0x0378, 0x0014) and message format 1 are refused', async () => {
    await expectRefused(
      await message(raw(key), {
        suiteId: AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA512_COMMIT_KEY_ECDSA_P384,
      }),
      '0x0578',
    );
    for (const suiteId of [
      AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA256,
      AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16_HKDF_SHA384_ECDSA_P384,
      AlgorithmSuiteIdentifier.ALG_AES256_GCM_IV12_TAG16,
    ]) {
      const bytes = await message(raw(key), { suiteId, legacy: true });
      expect(bytes[0]).toBe(0x01); // message format 1: the non-committing suites' format
      await expectRefused(bytes, `suite 0x${suiteId.toString(16)}`);
    }
  });

  it('another provider id, another key name, or the right name with another key is refused', async () => {
    const variants: [string, WrappingKey][] = [
      ['provider aws-kms', { ...key, providerId: 'aws-kms' }],
      ['provider temporal-keyring-x', { ...key, providerId: 'temporal-keyring-x' }],
      ['key name without slash', { ...key, keyName: 'default/v1' }],
      ['key name v10', { ...key, keyName: 'default/v10/' }],
      ['key name of another namespace', { ...key, keyName: 'other/v1/' }],
      ['key name with a suffix', { ...key, keyName: 'default/v1/x' }],
      ['attacker material', { ...key, material: randomBytes(32) }],
      ['other namespace key', otherKey],
    ];
    for (const [what, wrapping] of variants) await expectRefused(await message(raw(wrapping)), what);
  });
});
