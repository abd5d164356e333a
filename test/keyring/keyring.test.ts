import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { KeyringError } from '../../src/errors.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { DEFAULT_KEK_PROPAGATION_MS, Keyring, type KeyringOptions } from '../../src/keyring/keyring.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import type { KeyState } from '../../src/model/key-version.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

const T0 = Date.UTC(2026, 0, 1);
const WRITES = new Set([
  'commit',
  'rewrapMaterial',
  'putKekInfo',
  'reserveUsage',
  'recordUsed',
  'tryAcquireLease',
]);

/**
 * Another handle on a store, optionally without push notifications (like the file keystore), and
 * recording which write methods were called. Delegates everything else to the real store.
 */
function handle(
  store: Keystore,
  options: { subscribe?: boolean; writes?: string[]; failOn?: (method: string) => boolean } = {},
) {
  return new Proxy(store, {
    get(target, prop, receiver) {
      if (prop === 'subscribe' && options.subscribe === false) return undefined;
      const value = Reflect.get(target, prop, receiver);
      if (typeof value !== 'function') return value;
      return (...args: unknown[]) => {
        const name = String(prop);
        if (WRITES.has(name)) options.writes?.push(name);
        if (options.failOn?.(name)) return Promise.reject(new Error(`injected failure in ${name}`));
        return value.apply(target, args);
      };
    },
  });
}

async function setup(options: Partial<KeyringOptions> = {}) {
  const clock = new ManualClock(T0);
  const store = new MemoryKeystore();
  const kek = new LocalKek(randomBytes(32));
  const open = (extra: Partial<KeyringOptions> = {}) =>
    Keyring.open({
      keystore: handle(store.reopen(), { subscribe: false }),
      kek,
      clock,
      ...options,
      ...extra,
    });
  const keyring = await open();
  return { clock, store, kek, keyring, open };
}

const states = async (keyring: Keyring, ns = 'default') =>
  (await keyring.versions(ns)).map((v) => `${v.version}:${v.state}`);

async function codeOf(p: Promise<unknown>): Promise<string> {
  return p.then(
    () => 'resolved',
    (e: unknown) => (e instanceof KeyringError ? e.code : `not a KeyringError: ${String(e)}`),
  );
}

/** Lets promise callbacks started by timers or notifications run (no time passes). */
const settle = async () => {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r));
};

describe('Keyring', () => {
  it('creates a namespace with version 1 active, once', async () => {
    const { keyring, clock } = await setup();
    const v1 = await keyring.createNamespace('default');
    expect(v1).toEqual({
      namespace: 'default',
      version: 1,
      keyId: 'default/v1',
      state: 'active',
      createdAt: clock.now(),
      activatedAt: clock.now(),
    });
    expect(await codeOf(keyring.createNamespace('default'))).toBe('ERR_NAMESPACE_EXISTS');
    expect(await codeOf(keyring.createNamespace('../x'))).toBe('ERR_INVALID_NAMESPACE');
    expect(await codeOf(keyring.encryptionKey('missing', 1))).toBe('ERR_NAMESPACE_NOT_FOUND');
    expect(await codeOf(keyring.decryptionKey('missing', 1))).toBe('ERR_NAMESPACE_NOT_FOUND');
    expect(await keyring.namespaces()).toEqual(['default']);
    const key = await keyring.encryptionKey('default', 1);
    expect(key).toMatchObject({ namespace: 'default', version: 1, keyId: 'default/v1' });
    expect(key.exportMaterial()).toHaveLength(32);
    await keyring.close();
  });

  it('creates namespaces on first use only when asked to', async () => {
    const { keyring, open } = await setup();
    expect(await codeOf(keyring.encryptionKey('fresh', 1))).toBe('ERR_NAMESPACE_NOT_FOUND');
    const dev = await open({ createNamespacesOnFirstUse: true });
    expect((await dev.encryptionKey('fresh', 1)).version).toBe(1);
    // Decryption never creates anything.
    expect(await codeOf(dev.decryptionKey('other', 1))).toBe('ERR_NAMESPACE_NOT_FOUND');
    await Promise.all([keyring.close(), dev.close()]);
  });

  it('rotates immediately: the new version encrypts, the old one still decrypts', async () => {
    const { keyring, clock } = await setup();
    await keyring.createNamespace('default');
    const k1 = await keyring.encryptionKey('default', 1);
    clock.advance(1000);
    const r = await keyring.rotate('default');
    expect(r).toMatchObject({
      performed: true,
      previous: { version: 1 },
      current: { version: 2, state: 'active' },
    });
    expect(r.current.activatedAt).toBe(T0 + 1000);
    expect(await states(keyring)).toEqual(['1:inactive', '2:active']);
    const k2 = await keyring.encryptionKey('default', 1);
    expect(k2.version).toBe(2);
    expect(Buffer.from(k2.exportMaterial()).equals(Buffer.from(k1.exportMaterial()))).toBe(false);
    expect(
      Buffer.from((await keyring.decryptionKey('default', 1)).exportMaterial()).equals(
        Buffer.from(k1.exportMaterial()),
      ),
    ).toBe(true);
    const [v1] = await keyring.versions('default');
    expect(v1!.deactivatedAt).toBe(T0 + 1000);
    await keyring.close();
  });

  it('rotates in two phases: prepublish (decrypts, does not encrypt), then promote', async () => {
    const { keyring, clock } = await setup();
    await keyring.createNamespace('default');
    const r = await keyring.rotate('default', { mode: 'prepublish' });
    expect(r).toMatchObject({ performed: true, current: { version: 2, state: 'prepublished' } });
    expect(await states(keyring)).toEqual(['1:active', '2:prepublished']);
    expect((await keyring.encryptionKey('default', 1)).version).toBe(1);
    expect((await keyring.decryptionKey('default', 2)).version).toBe(2);
    // A second prepublish does not stack another version.
    expect(await keyring.rotate('default', { mode: 'prepublish' })).toMatchObject({
      performed: false,
      current: { version: 2 },
    });
    // Not before the propagation delay (2 min by default) has passed.
    expect(await codeOf(keyring.promote('default', 2))).toBe('ERR_INVALID_STATE_TRANSITION');
    expect(await states(keyring)).toEqual(['1:active', '2:prepublished']);
    clock.advance(120_000);
    const p = await keyring.promote('default', 2);
    expect(p).toMatchObject({
      performed: true,
      previous: { version: 1 },
      current: { version: 2, state: 'active' },
    });
    expect(await states(keyring)).toEqual(['1:inactive', '2:active']);
    expect((await keyring.encryptionKey('default', 1)).version).toBe(2);
    expect(await keyring.promote('default', 2)).toMatchObject({ performed: false });
    // An immediate rotation with a prepublished version pending promotes it rather than adding one.
    await keyring.rotate('default', { mode: 'prepublish' });
    expect(await codeOf(keyring.rotate('default'))).toBe('ERR_INVALID_STATE_TRANSITION');
    expect(await keyring.rotate('default', { force: true })).toMatchObject({
      performed: true,
      current: { version: 3, state: 'active' },
    });
    expect(await states(keyring)).toEqual(['1:inactive', '2:inactive', '3:active']);
    // Rolling back to an inactive version is a promotion too.
    await keyring.promote('default', 1);
    expect(await states(keyring)).toEqual(['1:active', '2:inactive', '3:inactive']);
    await keyring.close();
  });

  it('rejects invalid transitions with ERR_INVALID_STATE_TRANSITION, changing nothing', async () => {
    const { keyring } = await setup();
    await keyring.createNamespace('default');
    await keyring.rotate('default');
    await keyring.rotate('default', { mode: 'prepublish' });
    await keyring.setState('default', 1, 'deprecated');
    await keyring.setState('default', 1, 'destroyed');
    expect(await states(keyring)).toEqual(['1:destroyed', '2:active', '3:prepublished']);
    const invalid: [number, KeyState][] = [
      [2, 'inactive'], // leaving active only by rotating
      [2, 'deprecated'],
      [2, 'destroyed'],
      [3, 'inactive'], // prepublished goes to active or destroyed only
      [3, 'deprecated'],
      [1, 'inactive'], // destroyed is final
      [1, 'active'],
      [1, 'deprecated'],
      [2, 'prepublished'],
    ];
    for (const [version, state] of invalid) {
      expect(`${version}->${state}: ${await codeOf(keyring.setState('default', version, state))}`).toBe(
        `${version}->${state}: ERR_INVALID_STATE_TRANSITION`,
      );
    }
    await keyring.rotate('default', { force: true }); // promotes 3
    expect(await codeOf(keyring.setState('default', 2, 'destroyed'))).toBe('ERR_INVALID_STATE_TRANSITION'); // deprecate first
    expect(await codeOf(keyring.promote('default', 1))).toBe('ERR_INVALID_STATE_TRANSITION');
    expect(await codeOf(keyring.setState('default', 9, 'inactive'))).toBe('ERR_KEY_VERSION_NOT_FOUND');
    expect(await codeOf(keyring.promote('default', 9))).toBe('ERR_KEY_VERSION_NOT_FOUND');
    expect(await states(keyring)).toEqual(['1:destroyed', '2:inactive', '3:active']);
    await keyring.close();
  });

  it('keeps exactly one active version through any sequence of operations', async () => {
    const op = fc.oneof(
      fc.record({
        kind: fc.constant('rotate' as const),
        mode: fc.constantFrom('immediate' as const, 'prepublish' as const),
      }),
      fc.record({ kind: fc.constant('promote' as const), version: fc.integer({ min: 1, max: 8 }) }),
      fc.record({
        kind: fc.constant('setState' as const),
        version: fc.integer({ min: 1, max: 8 }),
        state: fc.constantFrom<KeyState>('prepublished', 'active', 'inactive', 'deprecated', 'destroyed'),
      }),
    );
    await fc.assert(
      fc.asyncProperty(fc.array(op, { maxLength: 25 }), async (ops) => {
        const { keyring } = await setup();
        await keyring.createNamespace('default');
        for (const o of ops) {
          const run =
            o.kind === 'rotate'
              ? keyring.rotate('default', { mode: o.mode })
              : o.kind === 'promote'
                ? keyring.promote('default', o.version)
                : keyring.setState('default', o.version, o.state);
          const code = await codeOf(run);
          expect(['resolved', 'ERR_INVALID_STATE_TRANSITION', 'ERR_KEY_VERSION_NOT_FOUND']).toContain(code);
          const versions = await keyring.versions('default');
          expect(versions.filter((v) => v.state === 'active')).toHaveLength(1);
          expect(versions.filter((v) => v.state === 'prepublished').length).toBeLessThanOrEqual(1);
          const active = versions.find((v) => v.state === 'active')!;
          expect((await keyring.encryptionKey('default', 1)).version).toBe(active.version);
        }
        await keyring.close();
      }),
      { numRuns: 60 },
    );
  });

  it('refuses deprecated versions unless allowed, re-allows them when set back to inactive, and reports destruction', async () => {
    const { keyring, clock, store, open } = await setup();
    await keyring.createNamespace('default');
    await keyring.rotate('default');
    const material = Buffer.from((await keyring.decryptionKey('default', 1)).exportMaterial());
    await keyring.setState('default', 1, 'deprecated');
    expect(await codeOf(keyring.decryptionKey('default', 1))).toBe('ERR_KEY_VERSION_DEPRECATED');
    const lenient = await open({ allowDeprecatedDecrypt: true });
    expect(Buffer.from((await lenient.decryptionKey('default', 1)).exportMaterial()).equals(material)).toBe(
      true,
    );
    await keyring.setState('default', 1, 'inactive');
    expect(await codeOf(keyring.decryptionKey('default', 1))).toBe('resolved');

    await keyring.setState('default', 1, 'deprecated');
    clock.set(Date.UTC(2026, 2, 3, 4, 5, 6));
    await keyring.setState('default', 1, 'destroyed');
    expect(await store.getMaterial('default', 1)).toBeUndefined();
    const error = (await keyring.decryptionKey('default', 1).then(
      () => undefined,
      (e: unknown) => e,
    )) as KeyringError & { destroyedAt: number };
    expect(error.code).toBe('ERR_KEY_VERSION_DESTROYED');
    expect(error.destroyedAt).toBe(Date.UTC(2026, 2, 3, 4, 5, 6));
    expect(error.message).toContain('2026-03-03T04:05:06.000Z');
    expect(error.message).not.toContain(material.toString('hex'));
    // Another keyring that still had the material cached forgets it once it sees the destruction.
    await lenient.refresh();
    expect(await codeOf(lenient.decryptionKey('default', 1))).toBe('ERR_KEY_VERSION_DESTROYED');
    expect(await codeOf(keyring.decryptionKey('default', 7))).toBe('ERR_KEY_VERSION_NOT_FOUND');
    await Promise.all([keyring.close(), lenient.close()]);
  });

  it('refreshes on demand when a payload names a version another keyring created, at a bounded rate', async () => {
    const {
      keyring: a,
      clock,
      open,
    } = await setup({ minOnDemandRefreshMs: 1000, refreshIntervalMs: 30_000 });
    await a.createNamespace('default');
    const b = await open();
    expect((await a.encryptionKey('default', 1)).version).toBe(1);
    await b.rotate('default');
    // A has not seen version 2, but finds it when asked to decrypt with it.
    expect((await a.decryptionKey('default', 2)).version).toBe(2);
    // On-demand refreshes are rate-limited: a version that does not exist is looked up once per interval.
    await b.rotate('default', { mode: 'prepublish' });
    expect(await codeOf(a.decryptionKey('default', 3))).toBe('ERR_KEY_VERSION_NOT_FOUND');
    clock.advance(1000);
    expect((await a.decryptionKey('default', 3)).version).toBe(3);
    // Version 3 became active elsewhere; the periodic refresh makes A encrypt with it.
    await b.rotate('default', { force: true });
    expect((await a.encryptionKey('default', 1)).version).toBe(2);
    clock.advance(30_000);
    await settle();
    expect((await a.encryptionKey('default', 1)).version).toBe(3);
    await Promise.all([a.close(), b.close()]);
  });

  it('follows pushed keystore notifications without waiting for the refresh timer', async () => {
    const clock = new ManualClock(T0);
    const store = new MemoryKeystore();
    const kek = new LocalKek(randomBytes(32));
    const a = await Keyring.open({ keystore: store, kek, clock });
    const b = await Keyring.open({ keystore: store.reopen(), kek, clock });
    await a.createNamespace('default');
    expect((await a.encryptionKey('default', 1)).version).toBe(1);
    await b.rotate('default');
    await settle();
    expect((await a.encryptionKey('default', 1)).version).toBe(2);
    await Promise.all([a.close(), b.close()]);
  });

  it('refuses a wrong KEK at open with ERR_KEK_MISMATCH before writing anything', async () => {
    const { keyring, store, clock } = await setup();
    await keyring.createNamespace('default');
    await keyring.close();
    const writes: string[] = [];
    const wrong = new LocalKek(randomBytes(32));
    const result = Keyring.open({ keystore: handle(store.reopen(), { writes }), kek: wrong, clock });
    expect(await codeOf(result)).toBe('ERR_KEK_MISMATCH');
    // Also when the wrong KEK claims the right id: the check value must unwrap.
    const info = (await store.getKekInfo())!;
    const impostor = Object.assign(Object.create(wrong) as LocalKek, { id: info.currentKekId });
    expect(
      await codeOf(Keyring.open({ keystore: handle(store.reopen(), { writes }), kek: impostor, clock })),
    ).toBe('ERR_KEK_MISMATCH');
    expect(writes).toEqual([]);
    expect(await store.getKekInfo()).toEqual(info);
  });

  it('rekeys under a new KEK; the old KEK alone is refused afterwards, and keys are unchanged', async () => {
    const { keyring, store, clock, kek } = await setup();
    await keyring.createNamespace('default');
    await keyring.createNamespace('other');
    await keyring.rotate('default');
    await keyring.rotate('default', { mode: 'prepublish' });
    await keyring.setState('default', 1, 'deprecated');
    await keyring.setState('default', 1, 'destroyed');
    const before = Buffer.from((await keyring.decryptionKey('default', 2)).exportMaterial());
    const newKek = new LocalKek(randomBytes(32));
    expect(await keyring.rekey(newKek)).toEqual({ rewrapped: 3 }); // default v2, v3; other v1 (v1 destroyed)
    expect(keyring.kekId).toBe(newKek.id);
    expect((await store.getMaterial('default', 2))!.kekId).toBe(newKek.id);
    const info = (await store.getKekInfo())!;
    expect(info.currentKekId).toBe(newKek.id);
    expect(info.rekey).toBeUndefined();
    expect(info.checks.map((c) => c.kekId)).toEqual([newKek.id]);
    // Running it again does nothing.
    expect(await keyring.rekey(newKek)).toEqual({ rewrapped: 0 });
    await keyring.close();

    // Until the propagation delay has passed, the old KEK alone still reads every key (upgrade key).
    const oldOnly = await Keyring.open({ keystore: store.reopen(), kek, clock });
    expect(Buffer.from((await oldOnly.decryptionKey('default', 2)).exportMaterial()).equals(before)).toBe(
      true,
    );
    await oldOnly.close();
    clock.advance(DEFAULT_KEK_PROPAGATION_MS);
    const refused = await Keyring.open({ keystore: store.reopen(), kek, clock }).then(
      () => undefined,
      (e: Error & { code?: string }) => e,
    );
    expect(refused?.code).toBe('ERR_KEK_MISMATCH');
    expect(refused?.message).toContain(`wrapped with now (KEK ${newKek.id})`);
    // Running the rekey again after the delay removes the expired upgrade key from the record.
    expect((await store.getKekInfo())!.upgrades).toHaveLength(1);
    const again = await Keyring.open({ keystore: store.reopen(), kek: newKek, clock });
    expect(await again.rekey(newKek)).toEqual({ rewrapped: 0 });
    expect((await store.getKekInfo())!.upgrades).toBeUndefined();
    await again.close();
    const reopened = await Keyring.open({ keystore: store.reopen(), kek: newKek, clock });
    expect(Buffer.from((await reopened.decryptionKey('default', 2)).exportMaterial()).equals(before)).toBe(
      true,
    );
    expect((await reopened.decryptionKey('other', 1)).version).toBe(1);
    // New keys are wrapped with the new KEK.
    await reopened.rotate('other');
    expect((await store.getMaterial('other', 2))!.kekId).toBe(newKek.id);
    await reopened.close();
  });

  it('resumes an interrupted rekey; meanwhile both KEKs are accepted at open', async () => {
    const { keyring, store, clock, kek } = await setup();
    for (const ns of ['a', 'b', 'c']) await keyring.createNamespace(ns);
    const materials = await Promise.all(
      ['a', 'b', 'c'].map(async (ns) => Buffer.from((await keyring.decryptionKey(ns, 1)).exportMaterial())),
    );
    await keyring.close();
    const newKek = new LocalKek(randomBytes(32));
    let rewraps = 0;
    const crashing = await Keyring.open({
      keystore: handle(store.reopen(), { failOn: (m) => m === 'rewrapMaterial' && ++rewraps > 1 }),
      kek,
      clock,
    });
    await expect(crashing.rekey(newKek)).rejects.toThrow('injected failure');
    await crashing.close();
    expect((await store.getKekInfo())!.rekey).toMatchObject({ fromKekId: kek.id, toKekId: newKek.id });

    // The old KEK alone still opens (the rekey is unfinished)...
    const old = await Keyring.open({ keystore: store.reopen(), kek, clock });
    await old.close();
    // ...and the new one, holding the old as previous, finishes the job.
    const resumed = await Keyring.open({ keystore: store.reopen(), kek: newKek, previousKeks: [kek], clock });
    expect(await resumed.rekey(newKek)).toEqual({ rewrapped: 2 });
    await resumed.close();
    const done = await Keyring.open({ keystore: store.reopen(), kek: newKek, clock });
    for (const [i, ns] of ['a', 'b', 'c'].entries()) {
      expect(Buffer.from((await done.decryptionKey(ns, 1)).exportMaterial()).equals(materials[i]!)).toBe(
        true,
      );
    }
    await done.close();
  });

  it('never wraps new keys with a KEK retired by another process', async () => {
    const { keyring: stale, store, clock, kek, open } = await setup();
    await stale.createNamespace('default');
    const admin = await open();
    const newKek = new LocalKek(randomBytes(32));
    // A process that was also given the new KEK as a previous one (rolling restart in progress).
    const both = await open({ previousKeks: [newKek] });
    await admin.rekey(newKek);
    await admin.close();
    clock.advance(DEFAULT_KEK_PROPAGATION_MS); // past the upgrade key's lifetime
    // The stale process still decrypts with what it has cached, but refuses to create keys.
    expect(await codeOf(stale.rotate('default'))).toBe('ERR_KEK_MISMATCH');
    expect(await states(stale)).toEqual(['1:active']);
    expect(await codeOf(stale.createNamespace('other'))).toBe('ERR_KEK_MISMATCH');
    // One holding the new KEK follows the rotation.
    expect((await both.rotate('default')).performed).toBe(true);
    expect((await store.getMaterial('default', 2))!.kekId).toBe(newKek.id);
    const fresh = await Keyring.open({ keystore: store.reopen(), kek: newKek, clock });
    expect((await fresh.encryptionKey('default', 1)).version).toBe(2);
    expect(kek.id).not.toBe(newKek.id);
    await Promise.all([stale.close(), both.close(), fresh.close()]);
  });

  it('yields exactly one new version when two keyrings rotate concurrently', async () => {
    const { keyring: a, open } = await setup();
    await a.createNamespace('default');
    const b = await open();
    const results = await Promise.all([a.rotate('default'), b.rotate('default')]);
    expect(results.filter((r) => r.performed)).toHaveLength(1);
    expect(results.map((r) => r.current.version)).toEqual([2, 2]);
    expect(await states(a)).toEqual(['1:inactive', '2:active']);

    // Many rotators guarded by the version they saw active: one rotation among them all.
    const others = await Promise.all(Array.from({ length: 4 }, () => open()));
    const guarded = await Promise.all(
      [a, b, ...others].map((k) => k.rotate('default', { mode: 'prepublish', expectedActiveVersion: 2 })),
    );
    expect(guarded.filter((r) => r.performed)).toHaveLength(1);
    expect(await states(a)).toEqual(['1:inactive', '2:active', '3:prepublished']);
    // A rotator that saw an older active version does nothing.
    expect(await a.rotate('default', { expectedActiveVersion: 1 })).toMatchObject({ performed: false });
    await Promise.all([a, b, ...others].map((k) => k.close()));
  });

  it('validates its options up front', async () => {
    const store = new MemoryKeystore();
    const kek = new LocalKek(randomBytes(32));
    expect(await codeOf(Keyring.open({ keystore: undefined as never, kek }))).toBe('ERR_INVALID_OPTION');
    expect(await codeOf(Keyring.open({ keystore: store, kek: undefined as never }))).toBe(
      'ERR_INVALID_OPTION',
    );
    await expect(Keyring.open({ keystore: store, kek, refreshIntervalMs: -1 })).rejects.toThrow(
      /^refreshIntervalMs: /,
    );
    expect(await store.getKekInfo()).toBeUndefined();
  });
});
