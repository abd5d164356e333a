import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError, InvalidOptionError, MalformedPayloadError } from '../../src/errors.ts';
import { esdkKeyName, PROVIDER_ID, type WrappingKey } from '../../src/esdk/engine.ts';
import { createFastEngine, FAST_FRAME_LENGTH, fastEngine } from '../../src/esdk/fast-engine.ts';
import { parseHeader, serializeEncryptionContext } from '../../src/esdk/message-format.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { keyed } from './keyed.ts';

const key: WrappingKey = {
  providerId: PROVIDER_ID,
  keyName: esdkKeyName('default', 1),
  material: randomBytes(32),
};

async function failure(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise;
  } catch (error) {
    return error;
  }
  throw new Error('expected a failure');
}

function isOpaque(error: unknown): boolean {
  return error instanceof DecryptionFailedError || error instanceof MalformedPayloadError;
}

describe('fastEngine', () => {
  it('round-trips and returns the context', async () => {
    const context = { 'temporal-keyring:namespace': 'default', 'temporal-keyring:key-version': '1' };
    for (const n of [0, 1, 1024, FAST_FRAME_LENGTH, FAST_FRAME_LENGTH + 1]) {
      const plaintext = randomBytes(n);
      const message = await keyed(fastEngine).encrypt(plaintext, key, context);
      const out = await keyed(fastEngine).decrypt(message, key);
      expect(Buffer.from(out.plaintext).equals(plaintext)).toBe(true);
      expect(out.context).toEqual(context);
    }
  });

  it('writes the header the spec describes: v2, suite 0x0478, one EDK named exactly by the key', async () => {
    const message = Buffer.from(await keyed(fastEngine).encrypt(randomBytes(10), key, { b: '2', a: '1' }));
    const header = parseHeader(message);
    expect(message[0]).toBe(2);
    expect(message.readUInt16BE(1)).toBe(0x0478);
    expect(Buffer.from(header.providerId).toString()).toBe(PROVIDER_ID);
    const info = Buffer.from(header.providerInfo);
    const name = Buffer.from(key.keyName);
    expect(info.subarray(0, name.length).equals(name)).toBe(true);
    expect(info.readUInt32BE(name.length)).toBe(128);
    expect(info.readUInt32BE(name.length + 4)).toBe(12);
    expect(info.length).toBe(name.length + 20);
    expect(header.encryptedDataKey.length).toBe(48);
    expect(header.contentType).toBe(2);
    expect(header.frameLength).toBe(FAST_FRAME_LENGTH);
    // Context sorted by key bytes.
    expect(Buffer.from(header.context).equals(serializeEncryptionContext({ a: '1', b: '2' }))).toBe(true);
  });

  it('without a cache: draws a data key and a message id per message, and is deterministic given them', async () => {
    const draws: number[] = [];
    const fixed = randomBytes(76);
    const engine = createFastEngine({
      dataKeyCache: false,
      random: {
        bytes: (n) => {
          draws.push(n);
          return Buffer.from(fixed.subarray(0, n));
        },
      },
    });
    const a = await keyed(engine).encrypt(Buffer.from('hello'), key, { x: 'y' });
    const b = await keyed(engine).encrypt(Buffer.from('hello'), key, { x: 'y' });
    expect(draws).toEqual([44, 32, 44, 32]);
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(true);
  });

  it('encrypts plaintext given in parts as their concatenation, within a frame or across frames', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.uint8Array({ maxLength: 40 }), { maxLength: 5 }),
        fc.constantFrom(8, FAST_FRAME_LENGTH),
        async (parts, frameLength) => {
          const engine = createFastEngine({ frameLength });
          const message = await keyed(engine).encrypt(parts, key, { a: 'b' });
          const joined = Buffer.concat(parts);
          expect(Buffer.from((await keyed(sdkEngine).decrypt(message, key)).plaintext).equals(joined)).toBe(
            true,
          );
          expect(Buffer.from((await keyed(engine).decrypt(message, key)).plaintext).equals(joined)).toBe(
            true,
          );
        },
      ),
      { numRuns: 100 },
    );
    await expect(keyed(fastEngine).encrypt([Buffer.alloc(1), 'x' as never], key, {})).rejects.toThrow(
      /plaintext/,
    );
  });

  it('validates options and inputs up front, naming the field', async () => {
    expect(() => createFastEngine({ frameLength: 0 })).toThrow(InvalidOptionError);
    expect(() => createFastEngine({ frameLength: 2 ** 31 })).toThrow(/frameLength/);
    expect(createFastEngine({ frameLength: 2 ** 31 - 1 }).name).toBe('fast');
    await expect(
      keyed(fastEngine).encrypt(Buffer.alloc(1), { ...key, material: randomBytes(16) }, {}),
    ).rejects.toThrow(/key\.material/);
    await expect(
      keyed(fastEngine).encrypt(Buffer.alloc(1), key, { 'aws-crypto-public-key': 'x' }),
    ).rejects.toThrow(InvalidOptionError);
    await expect(keyed(fastEngine).encrypt(Buffer.alloc(1), key, { bad: '\ud800' })).rejects.toThrow(
      /well-formed/,
    );
  });

  it('classifies non-ESDK bytes as malformed and other versions or suites as opaque failures', async () => {
    expect(await failure(keyed(fastEngine).decrypt(Buffer.from('{"not":"esdk"}'), key))).toBeInstanceOf(
      MalformedPayloadError,
    );
    expect(await failure(keyed(fastEngine).decrypt(new Uint8Array(0), key))).toBeInstanceOf(
      MalformedPayloadError,
    );
    const message = Buffer.from(await keyed(fastEngine).encrypt(randomBytes(10), key, {}));
    const v1 = Buffer.from(message);
    v1[0] = 1;
    expect(await failure(keyed(fastEngine).decrypt(v1, key))).toBeInstanceOf(DecryptionFailedError);
    const otherSuite = Buffer.from(message);
    otherSuite.writeUInt16BE(0x0578, 1);
    expect(await failure(keyed(fastEngine).decrypt(otherSuite, key))).toBeInstanceOf(DecryptionFailedError);
  });

  it('refuses a message under another key, provider or key name (no prefix match)', async () => {
    const message = await keyed(fastEngine).encrypt(randomBytes(10), key, {});
    const others: WrappingKey[] = [
      { ...key, material: randomBytes(32) },
      { ...key, providerId: 'someone-else' },
      { ...key, keyName: 'default/v' },
      { ...key, keyName: 'default/v1/x' },
    ];
    for (const other of others) {
      expect(await failure(keyed(fastEngine).decrypt(message, other))).toBeInstanceOf(DecryptionFailedError);
    }
    // Names without the trailing slash: `a/v1` must not open what `a/v10` wrote.
    const v10 = { ...key, keyName: 'a/v10' };
    const written = await keyed(fastEngine).encrypt(randomBytes(10), v10, {});
    expect(await failure(keyed(fastEngine).decrypt(written, { ...v10, keyName: 'a/v1' }))).toBeInstanceOf(
      DecryptionFailedError,
    );
  });

  it('refuses more than one encrypted data key', async () => {
    const message = Buffer.from(await keyed(fastEngine).encrypt(randomBytes(10), key, {}));
    const countAt = 1 + 2 + 32 + 2; // empty context: AAD length 0, count right after
    expect(message.readUInt16BE(countAt)).toBe(1);
    message.writeUInt16BE(2, countAt);
    expect(await failure(keyed(fastEngine).decrypt(message, key))).toBeInstanceOf(DecryptionFailedError);
  });

  it('refuses every truncation and any trailing byte', async () => {
    const message = Buffer.from(
      await keyed(createFastEngine({ frameLength: 8 })).encrypt(randomBytes(20), key, { a: 'b' }),
    );
    for (let length = 0; length < message.length; length++) {
      expect(isOpaque(await failure(keyed(fastEngine).decrypt(message.subarray(0, length), key)))).toBe(true);
    }
    const longer = Buffer.concat([message, Buffer.from([0])]);
    expect(await failure(keyed(fastEngine).decrypt(longer, key))).toBeInstanceOf(DecryptionFailedError);
  });

  it('rejects absurd claimed lengths without allocating them', async () => {
    // A header claiming a 65535-byte context and 2^32-1 frames in a 60-byte message.
    const message = Buffer.alloc(60, 0xff);
    message[0] = 2;
    message.writeUInt16BE(0x0478, 1);
    expect(await failure(keyed(fastEngine).decrypt(message, key))).toBeInstanceOf(DecryptionFailedError);
    const nonFramedHuge = Buffer.from(await keyed(fastEngine).encrypt(Buffer.alloc(0), key, {}));
    expect(
      isOpaque(
        await failure(keyed(fastEngine).decrypt(nonFramedHuge.subarray(0, nonFramedHuge.length - 1), key)),
      ),
    ).toBe(true);
  });

  it('throws nothing but the two opaque errors on arbitrary bytes', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.uint8Array({ maxLength: 400 }),
          fc.uint8Array({ maxLength: 400 }).map((tail) => Buffer.concat([Buffer.from([2, 4, 0x78]), tail])),
        ),
        async (bytes) => {
          expect(isOpaque(await failure(keyed(fastEngine).decrypt(bytes, key)))).toBe(true);
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('keeps a context key named __proto__ as plain data', async () => {
    const context = JSON.parse('{"__proto__":"x","a":"b"}') as Record<string, string>;
    const out = await keyed(fastEngine).decrypt(
      await keyed(fastEngine).encrypt(Buffer.alloc(1), key, context),
      key,
    );
    expect(Object.getPrototypeOf(out.context)).toBe(Object.prototype);
    expect(Object.entries(out.context)).toEqual(Object.entries(context));
  });
});

describe('fastEngine: what a prepared key remembers of the last header', () => {
  const ctxA = { 'temporal-keyring:namespace': 'default', 'temporal-keyring:key-version': '1' };
  const ctxB = { 'temporal-keyring:namespace': 'defaulu', 'temporal-keyring:key-version': '1' };

  it('decrypts interleaved messages of other contexts and data keys to their own context', async () => {
    const engine = createFastEngine();
    const writer = engine.prepare(key);
    const reader = engine.prepare(key);
    const fresh = createFastEngine({ dataKeyCache: false });
    const messages = [
      ...(await Promise.all([1, 2, 3].map(() => engine.encrypt(randomBytes(10), writer, ctxA)))),
      ...(await Promise.all([1, 2].map(() => engine.encrypt(randomBytes(10), writer, ctxB)))),
      ...(await Promise.all([1, 2].map(() => keyed(fresh).encrypt(randomBytes(10), key, ctxA)))),
    ].map((m, i) => ({ m, ctx: i >= 3 && i < 5 ? ctxB : ctxA }));
    for (const order of [
      [0, 3, 1, 4, 2, 5, 6],
      [6, 5, 0, 0, 3, 3, 1],
    ]) {
      for (const i of order) {
        const out = await engine.decrypt(messages[i]!.m, reader);
        expect(out.context).toEqual(messages[i]!.ctx);
      }
    }
  });

  it('refuses a message whose context bytes differ from the last one in a single byte, then reads the original again', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    const message = Buffer.from(await engine.encrypt(randomBytes(10), prepared, ctxA));
    await engine.decrypt(message, prepared);
    // 'default' → 'defaulu' inside the header's context: same length, still canonical.
    const at = message.indexOf(Buffer.from('default'));
    const tampered = Buffer.from(message);
    tampered[at + 6] = 'u'.charCodeAt(0);
    expect(isOpaque(await failure(engine.decrypt(tampered, prepared)))).toBe(true);
    expect((await engine.decrypt(message, prepared)).context).toEqual(ctxA);
  });

  it('hands out a frozen context, so that one caller cannot change what the next one reads', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    const message = await engine.encrypt(randomBytes(10), prepared, ctxA);
    const first = await engine.decrypt(message, prepared);
    expect(Object.isFrozen(first.context)).toBe(true);
    expect(() => {
      (first.context as Record<string, string>)['temporal-keyring:namespace'] = 'other';
    }).toThrow(TypeError);
    expect((await engine.decrypt(message, prepared)).context).toEqual(ctxA);
  });
});

describe('fastEngine: what a prepared key remembers of the last context it encrypted under', () => {
  const NS = 'temporal-keyring:namespace';
  const VERSION = 'temporal-keyring:key-version';

  /** The context the SDK reads from a message, and the one written into its header. */
  async function boundContext(message: Uint8Array): Promise<Record<string, string>> {
    const sdk = (await keyed(sdkEngine).decrypt(message, key)).context;
    const header = parseHeader(Buffer.from(message));
    expect(Buffer.from(header.context).equals(serializeEncryptionContext(sdk))).toBe(true);
    return { ...sdk };
  }

  it('binds the context as it is at each call: one object changed between calls, other orders, other pairs', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    const context: Record<string, string> = { [NS]: 'default', [VERSION]: '1' };
    const first = await engine.encrypt(randomBytes(10), prepared, context);
    context[VERSION] = '2';
    const changed = await engine.encrypt(randomBytes(10), prepared, context);
    const reordered = await engine.encrypt(randomBytes(10), prepared, { [VERSION]: '2', [NS]: 'default' });
    const more = await engine.encrypt(randomBytes(10), prepared, { [NS]: 'default', [VERSION]: '2', x: 'y' });
    const same = await engine.encrypt(randomBytes(10), prepared, { [NS]: 'default', [VERSION]: '2' });
    expect(await boundContext(first)).toEqual({ [NS]: 'default', [VERSION]: '1' });
    expect(await boundContext(changed)).toEqual({ [NS]: 'default', [VERSION]: '2' });
    expect(await boundContext(reordered)).toEqual({ [NS]: 'default', [VERSION]: '2' });
    expect(await boundContext(more)).toEqual({ [NS]: 'default', [VERSION]: '2', x: 'y' });
    expect(await boundContext(same)).toEqual({ [NS]: 'default', [VERSION]: '2' });
  });

  it('reads values afresh: a getter that changes its answer is bound as it answers', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    let version = 0;
    const context = Object.freeze(
      Object.defineProperty({ [NS]: 'default' }, VERSION, { enumerable: true, get: () => String(++version) }),
    ) as Record<string, string>;
    const a = await engine.encrypt(randomBytes(10), prepared, context);
    const b = await engine.encrypt(randomBytes(10), prepared, context);
    expect((await boundContext(a))[VERSION]).not.toBe((await boundContext(b))[VERSION]);
  });

  it('keeps refusing a context it cannot serialize, after a good one', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    await engine.encrypt(randomBytes(10), prepared, { [NS]: 'default', [VERSION]: '1' });
    const bad = { [NS]: 'default', [VERSION]: 1 } as unknown as Record<string, string>;
    expect(await failure(engine.encrypt(randomBytes(10), prepared, bad))).toBeInstanceOf(InvalidOptionError);
  });

  it('writes under a data key cached for exactly that context', async () => {
    const engine = createFastEngine();
    const prepared = engine.prepare(key);
    const edkOf = (m: Uint8Array) =>
      Buffer.from(parseHeader(Buffer.from(m)).encryptedDataKey).toString('hex');
    const a1 = await engine.encrypt(randomBytes(10), prepared, { [NS]: 'a', [VERSION]: '1' });
    const b1 = await engine.encrypt(randomBytes(10), prepared, { [NS]: 'b', [VERSION]: '1' });
    const a2 = await engine.encrypt(randomBytes(10), prepared, { [NS]: 'a', [VERSION]: '1' });
    expect(edkOf(a1)).toBe(edkOf(a2));
    expect(edkOf(b1)).not.toBe(edkOf(a1));
  });
});
