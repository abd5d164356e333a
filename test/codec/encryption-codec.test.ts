import type { Payload } from '@temporalio/common';
import {
  decodeFromPayloadsAtIndex,
  decode as decodeWithCodecs,
  encodeToPayloads,
  encode as encodeWithCodecs,
  loadDataConverter,
} from '@temporalio/common/lib/internal-non-workflow/index.js';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  EncryptionCodec,
  isEncryptedPayload,
  keyIdOfPayload,
  keyVersionOf,
} from '../../src/codec/encryption-codec.ts';
import {
  ENCODING_ENCRYPTED,
  METADATA_ENCODING,
  METADATA_KEY_ID,
  METADATA_KEY_VERSION,
  METADATA_KEYSTORE_ID,
} from '../../src/codec/payload-format.ts';
import { KeyProviderFaultError, KeyringError } from '../../src/errors.ts';
import type { KeyProvider } from '../../src/keyring/key-handle.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { contains, jsonPayload, keyringFixture, RecordingKeys, text, utf8 } from './fixtures.ts';

/** Bytes of a given length from a seed (fast-check would take far too long to build 1 MiB arrays). */
function seededBytes(length: number, seed: number): Uint8Array {
  const out = new Uint8Array(length);
  let x = seed | 1;
  for (let i = 0; i < length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    out[i] = x & 0xff;
  }
  return out;
}
const sized = (min: number, max: number) =>
  fc.tuple(fc.integer({ min, max }), fc.integer()).map(([n, seed]) => seededBytes(n, seed));

/** Mostly small payloads, some up to 64 KiB, rarely up to 1 MiB. */
const dataArb = fc.oneof(
  { weight: 40, arbitrary: fc.uint8Array({ maxLength: 300 }) },
  { weight: 4, arbitrary: sized(300, 64 * 1024) },
  { weight: 1, arbitrary: sized(64 * 1024, 1024 * 1024) },
);
const payloadArb: fc.Arbitrary<Payload> = fc.record({
  metadata: fc.dictionary(fc.string({ maxLength: 20 }), fc.uint8Array({ maxLength: 40 }), { maxKeys: 6 }),
  data: dataArb,
});

/** A payload as comparable plain data (protobuf decode yields Buffers and class instances). */
function plain(p: Payload) {
  const metadata = Object.entries(p.metadata ?? {})
    .map(([k, v]) => [k, Buffer.from(v ?? []).toString('hex')] as const)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return { metadata, data: Buffer.from(p.data ?? []).toString('hex') };
}

function expectEncryptedFor(encoded: Payload, original: Payload, namespace: string, version: number) {
  expect(Object.keys(encoded.metadata ?? {}).sort()).toEqual([
    METADATA_ENCODING,
    METADATA_KEY_ID,
    METADATA_KEY_VERSION,
    METADATA_KEYSTORE_ID,
  ]);
  expect(text(encoded.metadata?.[METADATA_ENCODING])).toBe(ENCODING_ENCRYPTED);
  expect(text(encoded.metadata?.[METADATA_KEY_ID])).toBe(`${namespace}/v${version}`);
  expect(text(encoded.metadata?.[METADATA_KEY_VERSION])).toBe(String(version));
  // What Temporal stores holds no plaintext (checked where a chance match is negligible).
  if ((original.data?.length ?? 0) >= 16) expect(contains(encoded.data!, original.data!)).toBe(false);
}

async function codeOf(promise: Promise<unknown>): Promise<string> {
  try {
    await promise;
  } catch (error) {
    expect(error).toBeInstanceOf(KeyringError);
    return (error as KeyringError).code;
  }
  throw new Error('expected a rejection');
}

describe('EncryptionCodec', () => {
  it('round-trips any batch of payloads through the SDK codec helpers, storing only ciphertext', async () => {
    const { codec, keyring } = await keyringFixture();
    const c = codec();
    await fc.assert(
      fc.asyncProperty(fc.array(payloadArb, { maxLength: 100, size: 'medium' }), async (payloads) => {
        const encoded = await encodeWithCodecs([c], payloads);
        expect(encoded).toHaveLength(payloads.length);
        for (const [i, e] of encoded.entries()) expectEncryptedFor(e, payloads[i]!, 'default', 1);
        const decoded = await decodeWithCodecs([c], encoded);
        expect(decoded.map(plain)).toEqual(payloads.map(plain));
      }),
      { numRuns: 40 },
    );
    await keyring.close();
  });

  it('round-trips 1 MiB and batches of 100', async () => {
    const { codec, keyring } = await keyringFixture();
    const c = codec();
    const big: Payload = { metadata: { encoding: utf8('binary/plain') }, data: seededBytes(1024 * 1024, 7) };
    const many = Array.from({ length: 100 }, (_, i) => jsonPayload({ i }));
    for (const batch of [[big], many, []]) {
      const encoded = await c.encode(batch);
      for (const [i, e] of encoded.entries()) expectEncryptedFor(e, batch[i]!, 'default', 1);
      expect((await c.decode(encoded)).map(plain)).toEqual(batch.map(plain));
    }
    await keyring.close();
  });

  it('round-trips values through a loaded data converter with payloadCodecs: [codec]', async () => {
    const { codec, keyring } = await keyringFixture();
    const converter = loadDataConverter({ payloadCodecs: [codec()] });
    await fc.assert(
      fc.asyncProperty(fc.array(fc.jsonValue(), { maxLength: 5 }), async (values) => {
        const marked = [...values, { marker: 'PLAINTEXT-MARKER-0123456789' }];
        const payloads = (await encodeToPayloads(converter, ...marked))!;
        for (const p of payloads) {
          expect(isEncryptedPayload(p)).toBe(true);
          expect(contains(p.data!, utf8('PLAINTEXT-MARKER'))).toBe(false);
          expect(contains(p.data!, utf8('json/plain'))).toBe(false);
        }
        for (const [i, value] of marked.entries()) {
          // JSON has no -0: the JSON converter stores it as 0.
          expect(await decodeFromPayloadsAtIndex(converter, i, payloads)).toEqual(
            JSON.parse(JSON.stringify(value)),
          );
        }
      }),
      { numRuns: 50 },
    );
    await keyring.close();
  });

  it('asks for the encryption key once per batch, counting every payload, and resolves each version once', async () => {
    const { keyring } = await keyringFixture();
    const keys = new RecordingKeys(keyring);
    const c = new EncryptionCodec({ namespace: 'default', keys });
    const v1 = await c.encode([jsonPayload(1), jsonPayload(2), jsonPayload(3)]);
    await keyring.rotate('default');
    const v2 = await c.encode([jsonPayload(4)]);
    expect(await c.encode([])).toEqual([]);
    expect(keys.calls).toEqual(['encrypt default 3', 'encrypt default 1']);
    keys.calls.length = 0;
    const mixed = [v1[0]!, v2[0]!, jsonPayload('clear'), v1[1]!, v2[0]!, v1[2]!];
    const decoded = await c.decode(mixed);
    expect(decoded.map((p) => text(p.data))).toEqual(['1', '4', '"clear"', '2', '4', '3']);
    expect(keys.calls.sort()).toEqual(['decrypt default 1', 'decrypt default 2']);
    // A serialization context is accepted and does not change anything.
    const ctx = { type: 'workflow', namespace: 'default', workflowId: 'wf' } as const;
    expect((await c.decode(await c.encode([jsonPayload(5)], ctx), ctx)).map((p) => text(p.data))).toEqual([
      '5',
    ]);
    await keyring.close();
  });

  it('decodes payloads of every earlier version after rotations', async () => {
    const { codec, keyring, store, kek, clock } = await keyringFixture();
    const c = codec();
    const written: Payload[] = [];
    for (let i = 0; i < 6; i++) {
      written.push(...(await c.encode([jsonPayload({ version: i + 1 })])));
      if (i === 2) {
        await keyring.rotate('default', { mode: 'prepublish' });
        await keyring.promote('default', 4, { force: true });
      } else {
        await keyring.rotate('default');
      }
    }
    expect(written.map(keyVersionOf)).toEqual([1, 2, 3, 4, 5, 6]);
    const decoded = await c.decode(written);
    expect(decoded.map((p) => JSON.parse(text(p.data)!).version)).toEqual([1, 2, 3, 4, 5, 6]);
    // A fresh codec over another keyring on the same store (cold cache: unwraps every key) reads them too.
    const other = await Keyring.open({ keystore: store.reopen(), kek, clock });
    const fresh = new EncryptionCodec({ namespace: 'default', keys: other });
    expect((await fresh.decode(written)).map((p) => JSON.parse(text(p.data)!).version)).toEqual([
      1, 2, 3, 4, 5, 6,
    ]);
    await Promise.all([keyring.close(), other.close()]);
  });

  it('refuses deprecated versions unless allowDeprecatedDecrypt, and says when a version was destroyed', async () => {
    const { codec, keyring, store, kek, clock } = await keyringFixture();
    const old = await codec().encode([jsonPayload('old')]);
    await keyring.rotate('default');
    await keyring.setState('default', 1, 'deprecated');
    expect(await codeOf(codec().decode(old))).toBe('ERR_KEY_VERSION_DEPRECATED');

    const lenient = await Keyring.open({
      keystore: store.reopen(),
      kek,
      clock,
      allowDeprecatedDecrypt: true,
    });
    const lenientCodec = new EncryptionCodec({ namespace: 'default', keys: lenient });
    expect(text((await lenientCodec.decode(old))[0]!.data)).toBe('"old"');
    const perNamespace = await Keyring.open({
      keystore: store.reopen(),
      kek,
      clock,
      allowDeprecatedDecrypt: (ns) => ns === 'other',
    });
    expect(await codeOf(new EncryptionCodec({ namespace: 'default', keys: perNamespace }).decode(old))).toBe(
      'ERR_KEY_VERSION_DEPRECATED',
    );

    clock.set(Date.UTC(2026, 4, 17, 12, 30));
    await keyring.setState('default', 1, 'destroyed');
    const error = (await codec()
      .decode(old)
      .then(
        () => undefined,
        (e: unknown) => e,
      )) as KeyringError & { destroyedAt?: number };
    expect(error.code).toBe('ERR_KEY_VERSION_DESTROYED');
    expect(error.destroyedAt).toBe(Date.UTC(2026, 4, 17, 12, 30));
    expect(error.message).toContain('2026-05-17T12:30:00.000Z');
    // Another process learns of the destruction on its next refresh, and forgets the material.
    await lenient.refresh();
    expect(await codeOf(lenientCodec.decode(old))).toBe('ERR_KEY_VERSION_DESTROYED');
    await Promise.all([keyring.close(), lenient.close(), perNamespace.close()]);
  });

  it('refuses payloads of another namespace, also when their metadata is rewritten to claim ours', async () => {
    const { codec, keyring } = await keyringFixture(['alpha', 'beta']);
    const [fromAlpha] = await codec('alpha').encode([jsonPayload('for alpha only')]);
    expect(await codeOf(codec('beta').decode([fromAlpha!]))).toBe('ERR_NAMESPACE_MISMATCH');
    const claimed: Payload = {
      ...fromAlpha,
      metadata: { ...fromAlpha!.metadata, [METADATA_KEY_ID]: utf8('beta/v1') },
    };
    expect(await codeOf(codec('beta').decode([claimed]))).toBe('ERR_DECRYPTION_FAILED');
    // And the rightful owner still reads it.
    expect(text((await codec('alpha').decode([fromAlpha!]))[0]!.data)).toBe('"for alpha only"');
    await keyring.close();
  });

  it('detects every single-bit flip in the data of a small payload', async () => {
    const { codec, keyring } = await keyringFixture();
    const c = codec();
    const [encoded] = await c.encode([
      { metadata: { encoding: utf8('binary/plain') }, data: seededBytes(100, 3) },
    ]);
    const data = encoded!.data!;
    const codes = new Map<string, number>();
    for (let bit = 0; bit < data.length * 8; bit++) {
      const flipped = Uint8Array.from(data);
      flipped[bit >> 3]! ^= 1 << (bit & 7);
      const code = await codeOf(c.decode([{ ...encoded, data: flipped }]));
      codes.set(code, (codes.get(code) ?? 0) + 1);
    }
    // Only the format byte can make the bytes "not an ESDK message"; everything else fails opaquely.
    expect([...codes.keys()].sort()).toEqual(['ERR_DECRYPTION_FAILED', 'ERR_MALFORMED_PAYLOAD']);
    expect(codes.get('ERR_DECRYPTION_FAILED')! + codes.get('ERR_MALFORMED_PAYLOAD')!).toBe(data.length * 8);
    expect(codes.get('ERR_MALFORMED_PAYLOAD')!).toBeLessThanOrEqual(8);
    await keyring.close();
  });

  it('detects rewritten versions and refuses malformed version metadata', async () => {
    const { codec, keyring } = await keyringFixture();
    const c = codec();
    const [v1] = await c.encode([jsonPayload('one')]);
    await keyring.rotate('default');
    const rewrite = (fields: Record<string, string | undefined>): Payload => {
      const metadata = { ...v1!.metadata };
      for (const [k, v] of Object.entries(fields)) {
        if (v === undefined) delete metadata[k];
        else metadata[k] = utf8(v);
      }
      return { ...v1, metadata };
    };
    // Both fields rewritten consistently: the v2 key cannot open a v1 message.
    expect(
      await codeOf(c.decode([rewrite({ [METADATA_KEY_VERSION]: '2', [METADATA_KEY_ID]: 'default/v2' })])),
    ).toBe('ERR_DECRYPTION_FAILED');
    // Only one of them rewritten: they disagree.
    expect(await codeOf(c.decode([rewrite({ [METADATA_KEY_VERSION]: '2' })]))).toBe('ERR_MALFORMED_PAYLOAD');
    expect(await codeOf(c.decode([rewrite({ [METADATA_KEY_ID]: 'default/v2' })]))).toBe(
      'ERR_MALFORMED_PAYLOAD',
    );
    for (const bad of [
      '',
      '0',
      '01',
      '-1',
      '+1',
      '1.0',
      ' 1',
      '1 ',
      '1e0',
      '0x1',
      'one',
      '99999999999999999',
    ]) {
      expect(
        await codeOf(
          c.decode([rewrite({ [METADATA_KEY_VERSION]: bad, [METADATA_KEY_ID]: `default/v${bad}` })]),
        ),
      ).toBe('ERR_MALFORMED_PAYLOAD');
    }
    expect(await codeOf(c.decode([rewrite({ [METADATA_KEY_VERSION]: undefined })]))).toBe(
      'ERR_MALFORMED_PAYLOAD',
    );
    // Without its key id a format 1 payload reads as format 2 and fails to decrypt: the code stays
    // opaque, and what its unauthenticated header suggests is only a hint.
    const withoutKeyId = await c.decode([rewrite({ [METADATA_KEY_ID]: undefined })]).catch((e: unknown) => e);
    expect(withoutKeyId).toMatchObject({ code: 'ERR_DECRYPTION_FAILED', message: 'decryption failed' });
    expect((withoutKeyId as { hint?: string }).hint).toMatch(/format 1 names.*"encryption-key-id"/);
    expect(await codeOf(c.decode([{ metadata: v1!.metadata }]))).toBe('ERR_MALFORMED_PAYLOAD');
    // A version that does not exist (yet) in the keystore.
    expect(
      await codeOf(c.decode([rewrite({ [METADATA_KEY_VERSION]: '9', [METADATA_KEY_ID]: 'default/v9' })])),
    ).toBe('ERR_KEY_VERSION_NOT_FOUND');
    await keyring.close();
  });

  it('passes payloads that are not ours through unchanged, without asking for keys', async () => {
    const { keyring } = await keyringFixture();
    const keys = new RecordingKeys(keyring);
    const c = new EncryptionCodec({ namespace: 'default', keys });
    const others: Payload[] = [
      jsonPayload({ a: 1 }),
      { metadata: { encoding: utf8('binary/null') } },
      { metadata: { encoding: utf8('binary/encrypted-by-someone-else') }, data: utf8('x') },
      { metadata: { encoding: utf8('BINARY/ENCRYPTED') }, data: utf8('x') },
      { metadata: { encoding: new Uint8Array([0xff, 0xfe]) }, data: utf8('x') },
      { data: utf8('no metadata') },
      {},
    ];
    const decoded = await c.decode(others);
    expect(decoded).toHaveLength(others.length);
    for (const [i, p] of decoded.entries()) expect(p).toBe(others[i]);
    expect(keys.calls).toEqual([]);
    expect(await c.decode([])).toEqual([]);
    await keyring.close();
  });

  it('fails a batch as a whole when one payload is bad, before fetching any key', async () => {
    const { keyring } = await keyringFixture();
    const keys = new RecordingKeys(keyring);
    const c = new EncryptionCodec({ namespace: 'default', keys });
    const [good] = await c.encode([jsonPayload(1)]);
    keys.calls.length = 0;
    const bad: Payload = { ...good, metadata: { ...good!.metadata, [METADATA_KEY_VERSION]: utf8('x') } };
    expect(await codeOf(c.decode([good!, bad]))).toBe('ERR_MALFORMED_PAYLOAD');
    expect(keys.calls).toEqual([]);
    await keyring.close();
  });

  it('exposes metadata helpers for audit logs', async () => {
    const { codec, keyring } = await keyringFixture();
    const [p] = await codec().encode([jsonPayload(1)]);
    expect(isEncryptedPayload(p)).toBe(true);
    expect(keyVersionOf(p)).toBe(1);
    expect(keyIdOfPayload(p)).toBe('default/v1');
    for (const other of [jsonPayload(1), {}, null, undefined]) {
      expect(isEncryptedPayload(other)).toBe(false);
      expect(keyVersionOf(other)).toBeUndefined();
      expect(keyIdOfPayload(other)).toBeUndefined();
    }
    await keyring.close();
  });

  it('blames a key provider that answers with the wrong key, or no handle, as a fault (5xx), not the caller', async () => {
    const { keyring } = await keyringFixture(['default', 'other']);
    const wrongVersion: KeyProvider = {
      encryptionKey: () => keyring.decryptionKey('other', 1),
      decryptionKey: () => keyring.decryptionKey('default', 1),
    };
    const c = new EncryptionCodec({ namespace: 'default', keys: wrongVersion });
    const error = await c.encode([jsonPayload(1)]).catch((e: unknown) => e);
    expect(error).toMatchObject({
      code: 'ERR_KEY_PROVIDER_FAULT',
      message: 'the key provider returned a key other than default/v1',
    });
    await keyring.rotate('default');
    const [encoded] = await new EncryptionCodec({ namespace: 'default', keys: keyring }).encode([
      jsonPayload(2),
    ]);
    expect(await codeOf(c.decode([encoded!]))).toBe('ERR_KEY_PROVIDER_FAULT');
    const raw = { namespace: 'default', version: 2, keyId: 'default/v2', material: new Uint8Array(32) };
    const notAHandle = { encryptionKey: async () => raw, decryptionKey: async () => raw } as never;
    const d = new EncryptionCodec({ namespace: 'default', keys: notAHandle });
    expect(await c.encode([jsonPayload(3)]).catch((e: unknown) => e)).toBeInstanceOf(KeyProviderFaultError);
    expect(await d.encode([jsonPayload(3)]).catch((e: unknown) => (e as Error).message)).toMatch(
      /something other than a KeyHandle \(make one with createKeyHandle\)/,
    );
    await keyring.close();
  });

  it('validates its options up front, naming the field', async () => {
    const { keyring } = await keyringFixture();
    expect(() => new EncryptionCodec({ namespace: '../etc', keys: keyring })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_NAMESPACE' }),
    );
    expect(() => new EncryptionCodec({ namespace: 'default', keys: undefined as never })).toThrow(/^keys: /);
    expect(() => new EncryptionCodec({ namespace: 'default', keys: {} as never })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_OPTION', field: 'keys' }),
    );
    expect(() => new EncryptionCodec({ namespace: 'default', keys: keyring, engine: {} as never })).toThrow(
      /^engine: /,
    );
    expect(() => new EncryptionCodec(undefined as never)).toThrow(/^options: /);
    expect(new EncryptionCodec({ namespace: 'default', keys: keyring }).engineName).toBe('fast');
    await keyring.close();
  });

  it('reports a missing namespace with its code', async () => {
    const { keyring } = await keyringFixture();
    const c = new EncryptionCodec({ namespace: 'unknown', keys: keyring });
    expect(await codeOf(c.encode([jsonPayload(1)]))).toBe('ERR_NAMESPACE_NOT_FOUND');
    await keyring.close();
  });
});
