/**
 * The shared contract every {@link Keystore} backend must pass. A backend's test file calls
 * `keystoreContract(name, factory)`; the factory returns a fresh, empty store (and may return a
 * second handle on the same store via `reopen`, to test what another process would see).
 */
import { describe, expect, it } from 'vitest';
import { InvalidStateTransitionError, KeystoreConflictError } from '../../src/errors.ts';
import type { KekInfo, Keystore, WrappedKey } from '../../src/keystore/keystore.ts';

export interface KeystoreFixture {
  store: Keystore;
  /** A second, independent handle on the same underlying store (another process's view). */
  reopen(): Promise<Keystore>;
  cleanup(): Promise<void>;
}

const T0 = Date.UTC(2026, 0, 1);
const wrapped = (kekId = 'kek-a', fill = 1): WrappedKey => ({
  kekId,
  alg: 'A256GCM',
  ciphertext: new Uint8Array(60).fill(fill),
});

export function keystoreContract(name: string, makeFixture: () => Promise<KeystoreFixture>): void {
  describe(`Keystore contract: ${name}`, () => {
    const withStore = (fn: (f: KeystoreFixture) => Promise<void>) => async () => {
      const f = await makeFixture();
      try {
        await fn(f);
      } finally {
        await f.store.close();
        await f.cleanup();
      }
    };

    it(
      'starts empty',
      withStore(async ({ store }) => {
        expect(await store.listNamespaces()).toEqual([]);
        expect(await store.getVersions('default')).toEqual([]);
        expect(await store.getMaterial('default', 1)).toBeUndefined();
        expect(await store.getKekInfo()).toBeUndefined();
        expect(await store.getUsage('default', 1)).toEqual({ reserved: 0, used: 0, samples: [] });
        await store.ping();
      }),
    );

    it(
      'creates a namespace with an active first version and its material',
      withStore(async ({ store, reopen }) => {
        const after = await store.commit(
          { namespace: 'default', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        expect(after).toEqual([
          {
            namespace: 'default',
            version: 1,
            keyId: 'default/v1',
            state: 'active',
            createdAt: T0,
            activatedAt: T0,
          },
        ]);
        const other = await reopen();
        try {
          expect(await other.listNamespaces()).toEqual(['default']);
          expect(await other.getVersions('default')).toEqual(after);
          const m = await other.getMaterial('default', 1);
          expect(m?.kekId).toBe('kek-a');
          expect(Buffer.from(m!.ciphertext)).toEqual(Buffer.from(wrapped().ciphertext));
        } finally {
          await other.close();
        }
      }),
    );

    it(
      'rotates atomically and rejects a stale rotation without writing',
      withStore(async ({ store }) => {
        await store.commit(
          { namespace: 'ns1', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        const rotate = {
          namespace: 'ns1',
          at: T0 + 1000,
          expectedLatestVersion: 1,
          add: { version: 2, state: 'active' as const },
          transitions: [{ version: 1, from: 'active' as const, to: 'inactive' as const }],
        };
        const after = await store.commit(rotate, wrapped('kek-a', 2));
        expect(after.map((v) => [v.version, v.state])).toEqual([
          [1, 'inactive'],
          [2, 'active'],
        ]);
        expect(after[0]!.deactivatedAt).toBe(T0 + 1000);
        await expect(store.commit(rotate, wrapped('kek-a', 3))).rejects.toBeInstanceOf(KeystoreConflictError);
        expect((await store.getVersions('ns1')).length).toBe(2);
        expect(Buffer.from((await store.getMaterial('ns1', 2))!.ciphertext)[0]).toBe(2);
      }),
    );

    it(
      'refuses changes that would leave zero or two active versions',
      withStore(async ({ store }) => {
        await store.commit(
          { namespace: 'ns1', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        await expect(
          store.commit({ namespace: 'ns1', at: T0, add: { version: 2, state: 'active' } }, wrapped()),
        ).rejects.toBeInstanceOf(InvalidStateTransitionError);
        await expect(
          store.commit({
            namespace: 'ns1',
            at: T0,
            transitions: [{ version: 1, from: 'active', to: 'inactive' }],
          }),
        ).rejects.toBeInstanceOf(InvalidStateTransitionError);
        expect((await store.getVersions('ns1')).map((v) => v.state)).toEqual(['active']);
      }),
    );

    it(
      'keeps metadata but erases material on destroy',
      withStore(async ({ store }) => {
        await store.commit(
          { namespace: 'ns1', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        await store.commit(
          {
            namespace: 'ns1',
            at: T0 + 1,
            add: { version: 2, state: 'active' },
            transitions: [{ version: 1, from: 'active', to: 'inactive' }],
          },
          wrapped(),
        );
        await store.commit({
          namespace: 'ns1',
          at: T0 + 2,
          transitions: [{ version: 1, from: 'inactive', to: 'deprecated' }],
        });
        await store.commit({
          namespace: 'ns1',
          at: T0 + 3,
          transitions: [{ version: 1, from: 'deprecated', to: 'destroyed' }],
        });
        const v1 = (await store.getVersions('ns1'))[0]!;
        expect(v1.state).toBe('destroyed');
        expect(v1.destroyedAt).toBe(T0 + 3);
        expect(await store.getMaterial('ns1', 1)).toBeUndefined();
        expect(await store.getMaterial('ns1', 2)).toBeDefined();
      }),
    );

    it(
      'keeps namespaces apart',
      withStore(async ({ store }) => {
        await store.commit(
          { namespace: 'a', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped('k', 1),
        );
        await store.commit(
          { namespace: 'b', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped('k', 2),
        );
        expect(await store.listNamespaces()).toEqual(['a', 'b']);
        expect(Buffer.from((await store.getMaterial('a', 1))!.ciphertext)[0]).toBe(1);
        expect(Buffer.from((await store.getMaterial('b', 1))!.ciphertext)[0]).toBe(2);
      }),
    );

    it(
      'rewraps material only from the expected KEK',
      withStore(async ({ store }) => {
        await store.commit(
          { namespace: 'a', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped('old'),
        );
        await expect(store.rewrapMaterial('a', 1, wrapped('new', 9), 'other')).rejects.toBeInstanceOf(
          KeystoreConflictError,
        );
        await store.rewrapMaterial('a', 1, wrapped('new', 9), 'old');
        expect((await store.getMaterial('a', 1))!.kekId).toBe('new');
      }),
    );

    it(
      'stores the KEK record with compare-and-set',
      withStore(async ({ store, reopen }) => {
        const info: KekInfo = { format: 1, currentKekId: 'k1', checks: [{ kekId: 'k1', check: 'AAAA' }] };
        await store.putKekInfo(info, undefined);
        await expect(store.putKekInfo(info, undefined)).rejects.toBeInstanceOf(KeystoreConflictError);
        const next: KekInfo = { ...info, rekey: { fromKekId: 'k1', toKekId: 'k2', startedAt: T0 } };
        await store.putKekInfo(next, info);
        const other = await reopen();
        try {
          expect(await other.getKekInfo()).toEqual(next);
        } finally {
          await other.close();
        }
      }),
    );

    it(
      'reserves usage atomically and never loses a reservation',
      withStore(async ({ store, reopen }) => {
        const other = await reopen();
        try {
          await Promise.all(
            Array.from({ length: 20 }, (_, i) => (i % 2 ? store : other).reserveUsage('a', 1, 100, T0 + i)),
          );
          const usage = await store.getUsage('a', 1);
          expect(usage.reserved).toBe(2000);
          expect(usage.samples.length).toBe(20);
          expect(usage.samples.at(-1)!.reserved).toBe(2000);
          await store.recordUsed('a', 1, 'p1', 50, T0);
          await store.recordUsed('a', 1, 'p1', 40, T0); // per-holder maximum
          await other.recordUsed('a', 1, 'p2', 70, T0);
          expect((await store.getUsage('a', 1)).used).toBe(120);
          expect((await store.getUsage('a', 2)).reserved).toBe(0);
        } finally {
          await other.close();
        }
      }),
    );

    it(
      'grants a lease to one holder at a time, until it expires or is released',
      withStore(async ({ store, reopen }) => {
        const other = await reopen();
        try {
          expect(await store.tryAcquireLease('rotator', 'p1', 10_000, T0)).toBe(true);
          expect(await other.tryAcquireLease('rotator', 'p2', 10_000, T0 + 1)).toBe(false);
          expect(await store.tryAcquireLease('rotator', 'p1', 10_000, T0 + 5000)).toBe(true); // renew
          expect(await other.tryAcquireLease('rotator', 'p2', 10_000, T0 + 14_000)).toBe(false);
          expect(await other.tryAcquireLease('rotator', 'p2', 10_000, T0 + 15_001)).toBe(true); // expired
          await other.releaseLease('rotator', 'p2');
          expect(await store.tryAcquireLease('rotator', 'p1', 10_000, T0 + 15_002)).toBe(true);
          await store.releaseLease('rotator', 'p2'); // not the holder: no effect
          expect(await other.tryAcquireLease('rotator', 'p2', 10_000, T0 + 15_003)).toBe(false);
        } finally {
          await other.close();
        }
      }),
    );

    it(
      'rejects invalid namespace names before touching storage',
      withStore(async ({ store }) => {
        for (const bad of ['', '..', '../x', 'a/b', 'a\0b', 'x'.repeat(300), 'ü']) {
          await expect(store.getVersions(bad)).rejects.toMatchObject({ code: 'ERR_INVALID_NAMESPACE' });
        }
      }),
    );

    it(
      'makes exactly one of many concurrent rotations win',
      withStore(async ({ store, reopen }) => {
        await store.commit(
          { namespace: 'race', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        const handles = [store, await reopen(), await reopen()];
        try {
          const results = await Promise.allSettled(
            handles.flatMap((h) =>
              [0, 1].map(() =>
                h.commit(
                  {
                    namespace: 'race',
                    at: T0 + 1,
                    expectedLatestVersion: 1,
                    add: { version: 2, state: 'active' },
                    transitions: [{ version: 1, from: 'active', to: 'inactive' }],
                  },
                  wrapped(),
                ),
              ),
            ),
          );
          expect(results.filter((r) => r.status === 'fulfilled').length).toBe(1);
          for (const r of results) {
            if (r.status === 'rejected') expect(r.reason).toBeInstanceOf(KeystoreConflictError);
          }
          expect((await store.getVersions('race')).map((v) => v.state)).toEqual(['inactive', 'active']);
        } finally {
          for (const h of handles.slice(1)) await h.close();
        }
      }),
    );
  });
}
