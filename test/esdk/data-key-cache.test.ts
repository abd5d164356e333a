import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError, InvalidOptionError, KeyRevokedError } from '../../src/errors.ts';
import { DATA_KEY_CACHE_DEFAULTS, DataKeyCache, dataKeyCacheLimits } from '../../src/esdk/data-key-cache.ts';
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

const LIMITS = { maxMessages: 10_000, maxAgeMs: 60_000, maxBytes: 1 << 20 };

describe('data key cache (fast engine)', () => {
  it('reuses one wrapped data key for maxMessages messages, each with its own message id', async () => {
    const engine = createFastEngine({
      dataKeyCache: { ...LIMITS, maxMessages: 3, clock: new ManualClock() },
    });
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
    const engine = createFastEngine({ dataKeyCache: { ...LIMITS, maxAgeMs: 1000, clock } });
    const key = keyOf(1);
    const first = edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}));
    clock.advance(999);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}))).toBe(first);
    clock.advance(1);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), key, {}))).not.toBe(first);
  });

  it('draws a fresh data key once maxBytes would be exceeded; a larger message gets an uncached one', async () => {
    const engine = createFastEngine({ dataKeyCache: { ...LIMITS, maxBytes: 100, clock: new ManualClock() } });
    const key = keyOf(1);
    const edk = async (n: number) => edkOf(await keyed(engine).encrypt(Buffer.alloc(n), key, {}));
    const first = await edk(60);
    expect(await edk(40)).toBe(first); // 100 bytes: the limit reached, the key let go
    const second = await edk(10);
    expect(second).not.toBe(first);
    expect(await edk(90)).toBe(second);
    const big = await edk(101);
    expect(new Set([first, second, big]).size).toBe(3);
    expect(await edk(101)).not.toBe(big); // never cached
    const stats = keyed(engine).prepared(key).cacheStats()!;
    expect(stats.encryptEntries).toBe(0);
    expect(stats.encryptHits).toBe(2);
    expect(stats.encryptMisses).toBe(4);
  });

  it('keeps data keys apart per prepared key and encryption context', async () => {
    const engine = createFastEngine();
    const material = randomBytes(32);
    const v1 = keyOf(1, material);
    const base = edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'a' }));
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'a' }))).toBe(base);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), v1, { n: 'b' }))).not.toBe(base);
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), keyOf(2, material), { n: 'a' }))).not.toBe(
      base,
    );
    // Another key term of the same material: its own cache.
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('x'), { ...v1 }, { n: 'a' }))).not.toBe(base);
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

  it('keeps at most maxEntries unwrapped data keys, and forgets them after maxAgeMs', () => {
    const clock = new ManualClock();
    const cache = new DataKeyCache(dataKeyCacheLimits({ ...LIMITS, maxEntries: 2, maxAgeMs: 100, clock }));
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
    keys[1]!.fill(0);
    expect(cache.forDecryption('b')?.equals(Buffer.alloc(32, 2))).toBe(true);
    clock.advance(100);
    expect(cache.forDecryption('c')).toBeUndefined();
    expect(cache.stats().decryptEntries).toBe(0);
  });

  it('hands out copies for encryption too, and zeroes a data key the moment it is used up', () => {
    const cache = new DataKeyCache(
      dataKeyCacheLimits({ ...LIMITS, maxMessages: 2, clock: new ManualClock() }),
    );
    const own = {
      dataKey: Buffer.alloc(32, 7),
      providerInfo: Buffer.alloc(31, 1),
      encryptedDataKey: Buffer.alloc(48, 2),
    };
    const first = cache.forEncryption('ctx', 1, () => own);
    for (const name of ['dataKey', 'providerInfo', 'encryptedDataKey'] as const) {
      expect(first[name]).not.toBe(own[name]);
      expect(first[name].equals(own[name])).toBe(true);
    }
    first.dataKey.fill(0);
    first.encryptedDataKey.fill(0);
    const second = cache.forEncryption('ctx', 1, () => {
      throw new Error('not a miss');
    });
    expect(second.dataKey.equals(Buffer.alloc(32, 7))).toBe(true);
    expect(second.encryptedDataKey.equals(Buffer.alloc(48, 2))).toBe(true);
    // Used up after two messages: the cache's own copy is zeroed (all 32 bytes) and forgotten.
    expect(own.dataKey.every((b) => b === 0)).toBe(true);
    expect(cache.stats().encryptEntries).toBe(0);
  });

  it('validates its limits up front and refuses to run without maxMessages, maxAgeMs and maxBytes', () => {
    for (const missing of ['maxMessages', 'maxAgeMs', 'maxBytes'] as const) {
      const options: Record<string, number> = { ...LIMITS };
      delete options[missing];
      expect(() => createFastEngine({ dataKeyCache: options as never })).toThrow(
        new RegExp(`dataKeyCache\\.${missing}: is required`),
      );
    }
    expect(() => createFastEngine({ dataKeyCache: { ...LIMITS, maxMessages: 0 } })).toThrow(
      InvalidOptionError,
    );
    expect(() => createFastEngine({ dataKeyCache: { ...LIMITS, maxMessages: 2 ** 32 + 1 } })).toThrow(
      /maxMessages/,
    );
    expect(() => createFastEngine({ dataKeyCache: { ...LIMITS, maxAgeMs: 1.5 } })).toThrow(
      /dataKeyCache\.maxAgeMs/,
    );
    expect(() => createFastEngine({ dataKeyCache: { ...LIMITS, maxBytes: 2 ** 53 } })).toThrow(
      /dataKeyCache\.maxBytes/,
    );
    expect(() => createFastEngine({ dataKeyCache: { ...LIMITS, maxEntries: -1 } })).toThrow(
      /dataKeyCache\.maxEntries/,
    );
    expect(() => createFastEngine({ dataKeyCache: null as never })).toThrow(/dataKeyCache/);
    expect(() => createFastEngine({ dataKeyCache: {} as never })).toThrow(/is required/);
  });

  it('shows its limits on the engine and its state on each prepared key, without key material', async () => {
    expect(createFastEngine().dataKeyCacheLimits).toEqual(DATA_KEY_CACHE_DEFAULTS);
    expect(createFastEngine({ dataKeyCache: false }).dataKeyCacheLimits).toBeUndefined();
    expect(sdkEngine.dataKeyCacheLimits).toBeUndefined();
    const engine = createFastEngine({ dataKeyCache: { ...LIMITS, clock: new ManualClock() } });
    const key = keyOf(1);
    const m = await keyed(engine).encrypt(Buffer.from('x'), key, {});
    await keyed(engine).encrypt(Buffer.from('x'), key, {});
    await keyed(engine).decrypt(m, key);
    await keyed(engine).decrypt(m, key);
    const stats = keyed(engine).prepared(key).cacheStats();
    expect(stats).toEqual({
      limits: { ...LIMITS, maxEntries: 1000 },
      encryptEntries: 1,
      decryptEntries: 1,
      encryptHits: 1,
      encryptMisses: 1,
      decryptHits: 1,
      decryptMisses: 1,
    });
    expect(JSON.stringify(stats)).not.toMatch(/data|Key"/);
  });
});

describe('a cached data key is unreachable after its limit and after dispose', () => {
  /** A RandomSource that records the buffers it hands out, to find the data key later. */
  function recordingRandom() {
    const handed: Buffer[] = [];
    return {
      handed,
      random: {
        bytes: (n: number) => {
          const b = randomBytes(n);
          handed.push(b);
          return b;
        },
      },
    };
  }

  it('after maxMessages: a fresh data key, and no message can be made under the old one', async () => {
    const engine = createFastEngine({
      dataKeyCache: { ...LIMITS, maxMessages: 2, clock: new ManualClock() },
    });
    const key = keyOf(1);
    const a = edkOf(await keyed(engine).encrypt(Buffer.from('1'), key, {}));
    expect(edkOf(await keyed(engine).encrypt(Buffer.from('2'), key, {}))).toBe(a);
    for (let i = 0; i < 5; i++)
      expect(edkOf(await keyed(engine).encrypt(Buffer.from('3'), key, {}))).not.toBe(a);
  });

  it('after maxAgeMs: both entries are gone (zeroed) and the next decryption unwraps again', async () => {
    const clock = new ManualClock();
    const engine = createFastEngine({ dataKeyCache: { ...LIMITS, maxAgeMs: 50, clock } });
    const key = keyOf(1);
    const m = await keyed(engine).encrypt(Buffer.from('x'), key, {});
    await keyed(engine).decrypt(m, key);
    expect(keyed(engine).prepared(key).cacheStats()).toMatchObject({ encryptEntries: 1, decryptEntries: 1 });
    clock.advance(50);
    expect(keyed(engine).prepared(key).cacheStats()).toMatchObject({ encryptEntries: 0, decryptEntries: 0 });
    await keyed(engine).decrypt(m, key);
    expect(keyed(engine).prepared(key).cacheStats()).toMatchObject({ decryptMisses: 2, decryptHits: 0 });
  });

  it('after dispose: every buffer the prepared key owned is zero, and any use throws ERR_KEY_REVOKED', async () => {
    const { handed, random } = recordingRandom();
    const engine = createFastEngine({ random, dataKeyCache: { ...LIMITS, clock: new ManualClock() } });
    const wrapping = keyOf(1);
    const prepared = engine.prepare(wrapping);
    const m = await engine.encrypt(Buffer.from('x'), prepared, { a: 'b' });
    await engine.decrypt(m, prepared);
    // The draw of data key and wrap IV was zeroed at once; the cache holds its own copies.
    expect(handed[0]!.every((b) => b === 0)).toBe(true);
    prepared.dispose();
    expect(prepared.disposed).toBe(true);
    expect(prepared.cacheStats()).toBeUndefined();
    await expect(engine.encrypt(Buffer.from('x'), prepared, {})).rejects.toBeInstanceOf(KeyRevokedError);
    await expect(engine.decrypt(m, prepared)).rejects.toMatchObject({ code: 'ERR_KEY_REVOKED' });
    prepared.dispose(); // twice is harmless
    // The caller's material is untouched: the prepared key zeroed only its own copy.
    expect(wrapping.material.some((b) => b !== 0)).toBe(true);
  });

  it('dispose zeroes every cached data key in full and refuses any later use', () => {
    const cache = new DataKeyCache(dataKeyCacheLimits({ ...LIMITS, clock: new ManualClock() }));
    const enc = {
      dataKey: Buffer.alloc(32, 7),
      providerInfo: Buffer.alloc(31, 1),
      encryptedDataKey: Buffer.alloc(48, 2),
    };
    cache.forEncryption('ctx', 1, () => enc);
    const kept = Buffer.alloc(32, 9);
    cache.keepDecrypted('edk', kept);
    cache.dispose();
    expect(enc.dataKey.every((b) => b === 0)).toBe(true);
    expect(() => cache.forDecryption('edk')).toThrow(KeyRevokedError);
    expect(() => cache.forEncryption('ctx', 1, () => enc)).toThrow(KeyRevokedError);
  });

  it('a key prepared by one engine is refused by another, and a disposed one by the sdk engine too', async () => {
    const key = keyOf(1);
    const a = createFastEngine();
    const b = createFastEngine();
    await expect(b.encrypt(Buffer.from('x'), a.prepare(key), {})).rejects.toThrow(/prepared by this engine/);
    await expect(sdkEngine.encrypt(Buffer.from('x'), a.prepare(key), {})).rejects.toThrow(
      /prepared by this engine/,
    );
    await expect(a.encrypt(Buffer.from('x'), key as never, {})).rejects.toThrow(InvalidOptionError);
    const sdkKey = sdkEngine.prepare(key);
    const m = await sdkEngine.encrypt(Buffer.from('x'), sdkKey, {});
    sdkKey.dispose();
    await expect(sdkEngine.decrypt(m, sdkKey)).rejects.toBeInstanceOf(KeyRevokedError);
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
