import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { KeyringError } from '../../src/errors.ts';
import { PROVIDER_ID } from '../../src/esdk/engine.ts';
import { createFastEngine, fastEngine } from '../../src/esdk/fast-engine.ts';
import { sdkEngine } from '../../src/esdk/sdk-engine.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { createKeyHandle, type KeyHandle, type KeyProvider } from '../../src/keyring/key-handle.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { WrappedKey } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { jsonPayload, text } from '../codec/fixtures.ts';

const NAMES = { providerId: PROVIDER_ID, keyName: 'default/v1/' };
const CONTEXT = { 'temporal-keyring:namespace': 'default', 'temporal-keyring:key-version': '1' };

async function codeOf(p: Promise<unknown> | (() => unknown)): Promise<string> {
  try {
    await (typeof p === 'function' ? p() : p);
    return 'resolved';
  } catch (e) {
    return e instanceof KeyringError ? e.code : `not a KeyringError: ${String(e)}`;
  }
}

async function openKeyring(store = new MemoryKeystore()) {
  const keyring = await Keyring.open({
    keystore: store,
    kek: new LocalKek(randomBytes(32)),
    clock: new ManualClock(),
  });
  return keyring;
}

describe('KeyHandle', () => {
  it('is made from raw material, keeps its own copy, and never shows it', () => {
    const material = randomBytes(32);
    const { handle } = createKeyHandle({ namespace: 'default', version: 1, material });
    expect(handle).toMatchObject({ namespace: 'default', version: 1, keyId: 'default/v1', revoked: false });
    const exported = handle.exportMaterial();
    expect(Buffer.from(exported).equals(material)).toBe(true);
    material.fill(0); // the caller may zero its buffer at once
    exported.fill(0); // and the export is the caller's own
    expect(Buffer.from(handle.exportMaterial()).equals(Buffer.alloc(32))).toBe(false);
    expect(JSON.stringify(handle)).toBe(
      '{"namespace":"default","version":1,"keyId":"default/v1","revoked":false}',
    );
    expect(Object.keys(handle)).toEqual(['namespace', 'version', 'keyId']);
  });

  it('validates its input, naming the field', () => {
    const material = randomBytes(32);
    expect(() => createKeyHandle({ namespace: '../x', version: 1, material })).toThrow(
      expect.objectContaining({ code: 'ERR_INVALID_NAMESPACE' }),
    );
    for (const version of [0, -1, 1.5, Number.NaN]) {
      expect(() => createKeyHandle({ namespace: 'default', version, material })).toThrow(/^version: /);
    }
    expect(() => createKeyHandle({ namespace: 'default', version: 1, material: randomBytes(16) })).toThrow(
      /^material: must be 32 bytes/,
    );
    expect(() => createKeyHandle(undefined as never)).toThrow(/^key: /);
  });

  it('prepares a key once per engine and ESDK names, and owns what it prepared', () => {
    const { handle, revoke } = createKeyHandle({
      namespace: 'default',
      version: 1,
      material: randomBytes(32),
    });
    const other = createFastEngine();
    const fast = handle.prepared(fastEngine, NAMES);
    expect(handle.prepared(fastEngine, { ...NAMES })).toBe(fast);
    expect(handle.prepared(other, NAMES)).not.toBe(fast);
    expect(handle.prepared(fastEngine, { providerId: 'tk', keyName: 'v1/' })).not.toBe(fast);
    const sdk = handle.prepared(sdkEngine, NAMES);
    revoke('test over');
    expect([fast.disposed, sdk.disposed]).toEqual([true, true]);
    expect(handle.revoked).toBe(true);
  });

  it('fails every use after revocation with ERR_KEY_REVOKED, never with a zeroed key', async () => {
    const { handle, revoke } = createKeyHandle({
      namespace: 'default',
      version: 1,
      material: randomBytes(32),
    });
    const prepared = handle.prepared(fastEngine, NAMES);
    const message = await fastEngine.encrypt(Buffer.from('secret'), prepared, CONTEXT);
    revoke();
    revoke(); // idempotent
    expect(await codeOf(() => handle.prepared(fastEngine, NAMES))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(() => handle.exportMaterial())).toBe('ERR_KEY_REVOKED');
    expect(() => handle.exportMaterial()).toThrow('the handle of key default/v1 was revoked');
    // The prepared key someone kept is dead too: no encryption under zeroes, no cached data key.
    expect(await codeOf(fastEngine.encrypt(Buffer.from('more'), prepared, CONTEXT))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(fastEngine.decrypt(message, prepared))).toBe('ERR_KEY_REVOKED');
  });
});

describe('Keyring key handles', () => {
  it('hands out handles that work whether or not the caller gets the same object again', async () => {
    const keyring = await openKeyring();
    await keyring.createNamespace('default');
    // A provider that wraps every answer in a fresh handle: slower (no prepared key reuse), correct.
    const fresh: KeyProvider = {
      async encryptionKey(ns, count) {
        const k = await keyring.encryptionKey(ns, count);
        return createKeyHandle({ namespace: k.namespace, version: k.version, material: k.exportMaterial() })
          .handle;
      },
      async decryptionKey(ns, version) {
        const k = await keyring.decryptionKey(ns, version);
        return createKeyHandle({ namespace: k.namespace, version: k.version, material: k.exportMaterial() })
          .handle;
      },
    };
    const viaKeyring = new EncryptionCodec({ namespace: 'default', keys: keyring });
    const viaFresh = new EncryptionCodec({ namespace: 'default', keys: fresh });
    const [a] = await viaKeyring.encode([jsonPayload('a')]);
    const [b] = await viaFresh.encode([jsonPayload('b')]);
    expect((await viaFresh.decode([a!, b!])).map((p) => text(p.data))).toEqual(['"a"', '"b"']);
    expect((await viaKeyring.decode([a!, b!])).map((p) => text(p.data))).toEqual(['"a"', '"b"']);
    await keyring.close();
  });

  it('close() revokes every handle: a caller holding one across the close fails cleanly', async () => {
    const keyring = await openKeyring();
    await keyring.createNamespace('default');
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
    const [before] = await codec.encode([jsonPayload('before close')]);
    const held = await keyring.decryptionKey('default', 1);
    await keyring.close();
    expect(held.revoked).toBe(true);
    expect(await codeOf(() => held.prepared(fastEngine, NAMES))).toBe('ERR_KEY_REVOKED');
    expect(() => held.exportMaterial()).toThrow(/revoked \(its keyring is closed\)/);
    // New requests: the keyring itself says it is closed.
    expect(await codeOf(keyring.encryptionKey('default', 1))).toBe('ERR_KEYRING_CLOSED');
    expect(await codeOf(keyring.decryptionKey('default', 1))).toBe('ERR_KEYRING_CLOSED');
    expect(await codeOf(codec.encode([jsonPayload('after close')]))).toBe('ERR_KEYRING_CLOSED');
    expect(await codeOf(codec.decode([before!]))).toBe('ERR_KEYRING_CLOSED');
    await keyring.close(); // idempotent
  });

  it('a cached data key is unreachable after the keyring closes', async () => {
    const keyring = await openKeyring();
    await keyring.createNamespace('default');
    const engine = createFastEngine(); // data key cache on (the default)
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring, engine });
    const [first, second] = await codec.encode([jsonPayload(1), jsonPayload(2)]);
    // Both messages share one cached data key: after their own message ids (bytes 3..34), the
    // headers (context, the one encrypted data key) are the same.
    const edk = (m: Uint8Array) => Buffer.from(m).subarray(35, 200).toString('hex');
    expect(edk(first!.data!)).toBe(edk(second!.data!));
    // The prepared key the codec used (the handle's own, with that data key in its cache).
    const handle = await keyring.encryptionKey('default', 0);
    const prepared = handle.prepared(engine, NAMES);
    expect((await engine.decrypt(first!.data!, prepared)).context).toEqual(CONTEXT);
    await keyring.close();
    expect(prepared.disposed).toBe(true);
    // Neither the cached encryption data key nor the unwrapped decryption one answers any more.
    expect(await codeOf(engine.encrypt(Buffer.from('x'), prepared, CONTEXT))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(engine.decrypt(second!.data!, prepared))).toBe('ERR_KEY_REVOKED');
    expect(await codeOf(() => handle.prepared(engine, NAMES))).toBe('ERR_KEY_REVOKED');
  });

  it('a close during a key lookup leaves no handle behind: the lookup fails with ERR_KEYRING_CLOSED', async () => {
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let gated = false;
    class SlowStore extends MemoryKeystore {
      override async getMaterial(namespace: string, version: number): Promise<WrappedKey | undefined> {
        if (gated) await gate;
        return super.getMaterial(namespace, version);
      }
    }
    const store = new SlowStore();
    const kek = new LocalKek(randomBytes(32));
    const writer = await Keyring.open({ keystore: store, kek, clock: new ManualClock() });
    await writer.createNamespace('default');
    await writer.close();
    const reader = await Keyring.open({ keystore: store, kek, clock: new ManualClock() });
    gated = true;
    const lookup = reader.decryptionKey('default', 1);
    await new Promise((r) => setImmediate(r));
    const closing = reader.close();
    release();
    await closing;
    expect(await codeOf(lookup)).toBe('ERR_KEYRING_CLOSED');
  });

  it('revokes the handle of a version when it is destroyed', async () => {
    const keyring = await openKeyring();
    await keyring.createNamespace('default');
    await keyring.rotate('default', { mode: 'immediate' });
    const old: KeyHandle = await keyring.decryptionKey('default', 1);
    await keyring.setState('default', 1, 'deprecated');
    expect(old.revoked).toBe(false);
    await keyring.setState('default', 1, 'destroyed');
    expect(old.revoked).toBe(true);
    expect(() => old.exportMaterial()).toThrow(/revoked \(its key version was destroyed\)/);
    expect(await codeOf(keyring.decryptionKey('default', 1))).toBe('ERR_KEY_VERSION_DESTROYED');
    await keyring.close();
  });
});
