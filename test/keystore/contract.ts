/**
 * The shared contract every {@link Keystore} backend must pass, behind the validating layer that
 * `openKeystore` and the keyring always put in front of it. A backend's test file calls
 * `keystoreContract(name, factory)`; the factory returns a fresh, empty backend (and may return a
 * second handle on the same store via `reopen`, to test what another process would see).
 */
import { describe, expect, it } from 'vitest';
import { InvalidStateTransitionError, KekMismatchError, KeystoreConflictError } from '../../src/errors.ts';
import type { KekInfo, Keystore, WrappedKey } from '../../src/keystore/keystore.ts';
import { ValidatingKeystore } from '../../src/keystore/validating-keystore.ts';
import { namespaceStateOf } from '../../src/model/key-version.ts';

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

const kekInfo = (currentKekId: string, rekeyTo?: string): KekInfo => ({
  format: 1,
  currentKekId,
  checks: [{ kekId: currentKekId, check: 'AAAA' }],
  ...(rekeyTo ? { rekey: { fromKekId: currentKekId, toKekId: rekeyTo, startedAt: T0 } } : {}),
});

interface ContractFixture extends KeystoreFixture {
  /** The backend alone, without the validating layer. */
  raw: Keystore;
}

export function keystoreContract(name: string, makeFixture: () => Promise<KeystoreFixture>): void {
  describe(`Keystore contract: ${name}`, () => {
    const withStore = (fn: (f: ContractFixture) => Promise<void>) => async () => {
      const f = await makeFixture();
      const validated: ContractFixture = {
        raw: f.store,
        store: ValidatingKeystore.wrap(f.store),
        reopen: async () => ValidatingKeystore.wrap(await f.reopen()),
        cleanup: f.cleanup,
      };
      try {
        await fn(validated);
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

    it(
      'validates every argument before touching storage',
      withStore(async ({ store }) => {
        const code = async (p: Promise<unknown>) => {
          try {
            await p;
            return 'resolved';
          } catch (error) {
            return (error as { code?: string }).code;
          }
        };
        const ok = {
          namespace: 'v',
          at: T0,
          expectedLatestVersion: 0,
          add: { version: 1, state: 'active' as const },
        };
        for (const bad of ['', '..', '../x', 'a/b', 'x'.repeat(300)]) {
          expect(await code(store.getMaterial(bad, 1))).toBe('ERR_INVALID_NAMESPACE');
          expect(await code(store.commit({ ...ok, namespace: bad }, wrapped()))).toBe(
            'ERR_INVALID_NAMESPACE',
          );
          expect(await code(store.reserveUsage(bad, 1, 1, T0))).toBe('ERR_INVALID_NAMESPACE');
          expect(await code(store.recordUsed(bad, 1, 'p', 1, T0))).toBe('ERR_INVALID_NAMESPACE');
          expect(await code(store.getUsage(bad, 1))).toBe('ERR_INVALID_NAMESPACE');
          expect(await code(store.rewrapMaterial(bad, 1, wrapped(), 'k'))).toBe('ERR_INVALID_NAMESPACE');
        }
        const invalid: [string, Promise<unknown>][] = [
          ['version 0', store.getMaterial('v', 0)],
          ['version 1.5', store.getUsage('v', 1.5)],
          ['negative count', store.reserveUsage('v', 1, -1, T0)],
          ['fractional count', store.reserveUsage('v', 1, 0.5, T0)],
          ['infinite time', store.reserveUsage('v', 1, 1, Number.POSITIVE_INFINITY)],
          ['negative used', store.recordUsed('v', 1, 'p', -3, T0)],
          ['empty holder', store.recordUsed('v', 1, '', 3, T0)],
          ['bad lease name', store.tryAcquireLease('../lease', 'p', 1000, T0)],
          ['negative ttl', store.tryAcquireLease('rotator', 'p', -1, T0)],
          ['release without holder', store.releaseLease('rotator', '')],
          ['material without a new version', store.commit({ namespace: 'v', at: T0 }, wrapped())],
          ['new version without material', store.commit(ok)],
          [
            'malformed material',
            store.commit(ok, { kekId: '', alg: 'A256GCM', ciphertext: new Uint8Array(4) }),
          ],
          ['unknown algorithm', store.commit(ok, { ...wrapped(), alg: 'XOR' as never })],
          [
            'unknown state',
            store.commit({ ...ok, add: { version: 1, state: 'enabled' as never } }, wrapped()),
          ],
          [
            'unknown transition state',
            store.commit({
              namespace: 'v',
              at: T0,
              transitions: [{ version: 1, from: 'active', to: 'gone' as never }],
            }),
          ],
          ['time not finite', store.commit({ ...ok, at: Number.NaN }, wrapped())],
          ['malformed KEK record', store.putKekInfo({ format: 2 } as never, undefined)],
        ];
        for (const [what, p] of invalid)
          expect(`${what}: ${await code(p)}`).toBe(`${what}: ERR_INVALID_OPTION`);
        expect(await store.listNamespaces()).toEqual([]);
        expect(await store.getKekInfo()).toBeUndefined();
        expect((await store.getUsage('v', 1)).reserved).toBe(0);
      }),
    );

    it(
      'wraps new material only under the KEK target, also during a KEK rotation',
      withStore(async ({ store }) => {
        await store.putKekInfo(kekInfo('k1'), undefined);
        const create = (ns: string) => ({
          namespace: ns,
          at: T0,
          expectedLatestVersion: 0,
          add: { version: 1, state: 'active' as const },
        });
        await expect(store.commit(create('a'), wrapped('k2'))).rejects.toBeInstanceOf(KekMismatchError);
        await store.commit(create('a'), wrapped('k1'));
        await store.putKekInfo(kekInfo('k1', 'k2'), kekInfo('k1'));
        // A rekey to k2 is in progress: new keys go under k2 only.
        await expect(store.commit(create('b'), wrapped('k1'))).rejects.toBeInstanceOf(KekMismatchError);
        await expect(store.rewrapMaterial('a', 1, wrapped('k3'), 'k1')).rejects.toBeInstanceOf(
          KekMismatchError,
        );
        expect(await store.listNamespaces()).toEqual(['a']);
        await store.commit(create('b'), wrapped('k2'));
        await store.rewrapMaterial('a', 1, wrapped('k2'), 'k1');
        expect((await store.getMaterial('a', 1))!.kekId).toBe('k2');
        expect((await store.getMaterial('b', 1))!.kekId).toBe('k2');
      }),
    );

    it(
      'commits under a KEK-record guard only while the record is unchanged',
      withStore(async ({ raw, store }) => {
        await store.putKekInfo(kekInfo('k1'), undefined);
        const change = {
          namespace: 'g',
          at: T0,
          expectedLatestVersion: 0,
          add: { version: 1, state: 'active' as const },
        };
        await expect(raw.commit(change, wrapped('k1'), { kekInfo: kekInfo('k0') })).rejects.toBeInstanceOf(
          KeystoreConflictError,
        );
        await expect(raw.commit(change, wrapped('k1'), { kekInfo: undefined })).rejects.toBeInstanceOf(
          KeystoreConflictError,
        );
        expect(await raw.getVersions('g')).toEqual([]);
        await raw.commit(change, wrapped('k1'), { kekInfo: kekInfo('k1') });
        expect((await raw.getVersions('g')).length).toBe(1);
      }),
    );

    it(
      'refuses a change decided on a state that changed meanwhile (compare-and-set)',
      withStore(async ({ store, reopen }) => {
        const v1 = await store.commit(
          { namespace: 'cas', at: T0, expectedLatestVersion: 0, add: { version: 1, state: 'active' } },
          wrapped(),
        );
        const v2 = await store.commit(
          {
            namespace: 'cas',
            at: T0 + 1,
            expectedState: namespaceStateOf(v1),
            add: { version: 2, state: 'prepublished' },
          },
          wrapped(),
        );
        const promote = {
          namespace: 'cas',
          at: T0 + 2,
          expectedState: namespaceStateOf(v2),
          transitions: [
            { version: 1, from: 'active' as const, to: 'inactive' as const },
            { version: 2, from: 'prepublished' as const, to: 'active' as const },
          ],
        };
        const other = await reopen();
        try {
          // Another process changed the namespace after it was read: the decision is stale.
          await other.commit({
            namespace: 'cas',
            at: T0 + 2,
            expectedState: namespaceStateOf(v2),
            transitions: [{ version: 2, from: 'prepublished', to: 'destroyed' }],
          });
          await expect(store.commit(promote)).rejects.toBeInstanceOf(KeystoreConflictError);
          expect((await store.getVersions('cas')).map((v) => v.state)).toEqual(['active', 'destroyed']);
          // Same-state decisions race: exactly one of them is written.
          const now = await store.getVersions('cas');
          const add = (h: Keystore) =>
            h.commit(
              {
                namespace: 'cas',
                at: T0 + 3,
                expectedState: namespaceStateOf(now),
                add: { version: 3, state: 'prepublished' },
              },
              wrapped(),
            );
          const results = await Promise.allSettled([add(store), add(other), add(store), add(other)]);
          expect(results.filter((r) => r.status === 'fulfilled').length).toBe(1);
        } finally {
          await other.close();
        }
      }),
    );
  });
}
