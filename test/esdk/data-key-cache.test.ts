import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError, InvalidOptionError } from '../../src/errors.ts';
import { DataKeyCache, dataKeyCacheLimits } from '../../src/esdk/data-key-cache.ts';
import { esdkKeyName, PROVIDER_ID, type WrappingKey } from '../../src/esdk/engine.ts';
import { createFastEngine } from '../../src/esdk/fast-engine.ts';
import { parseHeader } from '../../src/esdk/message-format.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { blockRandom } from '../../src/runtime/random.ts';
import { keyed } from './keyed.ts';

const keyOf = (version: number, material: Uint8Array = randomBytes(32)): WrappingKey => ({
  providerId: PROVIDER_ID,
  keyName: esdkKeyName('default', version),
  material,
});

/** The encrypted data key bytes of a message: equal EDKs mean one data key. */
const edkOf = (message: Uint8Array) =>
  Buffer.from(parseHeader(Buffer.from(message)).encryptedDataKey).toString('hex');
const messageIdOf = (message: Uint8Array) =>
  Buffer.from(parseHeader(Buffer.from(message)).messageId).toString('hex');

describe('data key cache (fast engine)', () => {
  it('reuses one wrapped data key for maxMessages messages, each with its own message id', async () => {
    const engine = createFastEngine({ dataKeyCache: { maxMessages: 3, clock: new ManualClock() } });
    const key = keyOf(1);
    const messages = [];
    for (let i = 0; i < 7; i++)
      messages.push(await keyed(engine).encrypt(Buffer.from(`m${i}`), key, { a: 'b' }));
    const edks = messages.map(edkOf);
    expect(new Set(edks.slice(0, 3)).size).toBe(1);
    expect(new Set(edks.slice(3, 6)).size).toBe(1);
    expect(new Set([edks[0], edks[3], edks[6]]).size).toBe(3);
    expect(new Set(messages.map(messageIdOf)).size).toBe(7);
    // Ordinary ESDK messages: the SDK reads every one of them.
    for (const [i, m] of messages.entries()) {
      expect(Buffer.from((await keyed(sdkEngine).decrypt(m, key)).plaintext).toString()).toBe(`m${i}`);
    }
  });

  it('draws a fresh data key after maxAgeMs', async () => {
    const clock = new ManualClock();
    const engine = createFastEngine({ dataKeyCache: { maxAgeMs: 1000, clock } });
    const key = keyOf(1);
    const first = edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}));
    clock.advance(999);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}))).toBe(first);
    clock.advance(1);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}))).not.toBe(first);
  });

  it('keeps data keys apart per wrapping key material, key name and encryption context', async () => {
    const engine = createFastEngine();
    const material = randomBytes(32);
    const v1 = keyOf(1, material);
    const base = edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'a' }));
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'a' }))).toBe(base);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'b' }))).not.toBe(base);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), keyOf(2, material), { n: 'a' }))).not.toBe(
      base,
    );
    expect(
      edkOf(await keyed(engine).encrypt(Buffer.from('x'), keyOf(1, Buffer.from(material)), { n: 'a' })),
    ).not.toBe(base);
  });

  it('never answers a decryption from a data key that other key material unwrapped', async () => {
    const engine = createFastEngine();
    const right = keyOf(1);
    const message = await keyed(engine).encrypt(Buffer.from('secret'), right, { a: 'b' });
    expect(Buffer.from((await keyed(engine).decrypt(message, right)).plaintext).toString()).toBe('secret');
    // Same key name and provider, other material: the cached data key must not be used.
    const wrong = keyOf(1);
    await expect(keyed(engine).decrypt(message, wrong)).rejects.toBeInstanceOf(DecryptionFailedError);
    // And a tampered EDK under the right key is not a cache hit either.
    const tampered = Buffer.from(message);
    const header = parseHeader(tampered);
    const edkStart = tampered.indexOf(header.encryptedDataKey as Buffer);
    tampered[edkStart] = tampered[edkStart]! ^ 1;
    await expect(keyed(engine).decrypt(tampered, right)).rejects.toBeInstanceOf(DecryptionFailedError);
    expect(Buffer.from((await keyed(engine).decrypt(message, right)).plaintext).toString()).toBe('secret');
  });

  it('keeps at most maxEntries unwrapped data keys, and forgets them after maxAgeMs', async () => {
    const clock = new ManualClock();
    const cache = new DataKeyCache(dataKeyCacheLimits({ maxEntries: 2, maxAgeMs: 100, clock }));
    const keys = [Buffer.alloc(32, 1), Buffer.alloc(32, 2), Buffer.alloc(32, 3)];
    cache.keepDecrypted('a', keys[0]!);
    cache.keepDecrypted('b', keys[1]!);
    cache.keepDecrypted('c', keys[2]!);
    expect(cache.forDecryption('a')).toBeUndefined();
    const b = cache.forDecryption('b');
    // A copy: equal bytes, never the cache's own buffer nor the caller's.
    expect(b?.equals(keys[1]!)).toBe(true);
    expect(b).not.toBe(keys[1]);
    b!.fill(0);
    expect(cache.forDecryption('b')?.equals(keys[1]!)).toBe(true);
    clock.advance(100);
    expect(cache.forDecryption('c')).toBeUndefined();
  });

  it('validates its options, naming the field', () => {
    expect(() => createFastEngine({ dataKeyCache: { maxMessages: 0 } })).toThrow(InvalidOptionError);
    expect(() => createFastEngine({ dataKeyCache: { maxAgeMs: 1.5 } })).toThrow(/dataKeyCache\.maxAgeMs/);
    expect(() => createFastEngine({ dataKeyCache: { maxEntries: -1 } })).toThrow(/dataKeyCache\.maxEntries/);
    expect(() => createFastEngine({ dataKeyCache: null as never })).toThrow(/dataKeyCache/);
  });
});

describe('blockRandom', () => {
  it('hands out distinct copies and zeroes what it handed out', () => {
    const random = blockRandom(64);
    const seen = new Set<string>();
    for (let i = 0; i < 100; i++) {
      const a = random.bytes(8);
      expect(a).toHaveLength(8);
      seen.add(Buffer.from(a).toString('hex'));
      a.fill(0); // the caller owns its copy
    }
    expect(seen.size).toBe(100);
    expect(random.bytes(100)).toHaveLength(100); // larger than an eighth of the block: drawn directly
    expect(() => blockRandom(8)).toThrow(RangeError);
  });
});
