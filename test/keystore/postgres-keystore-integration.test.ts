/**
 * The PostgreSQL keystore under the Keyring and the codec, as several processes share it: two
 * keyrings on two keystores, concurrent rotators, and the database going away and coming back.
 * The database outage tests run last: they stop this file's server.
 */
import { randomBytes } from 'node:crypto';
import { defaultPayloadConverter } from '@temporalio/common';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { KeystoreEvent } from '../../src/keystore/keystore.ts';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';

let server: TestPostgres;
const kek = new LocalKek(randomBytes(32));
const opened: { close(): Promise<void> }[] = [];

beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  for (const o of opened.reverse()) await o.close().catch(() => {});
  await server?.stop();
});

async function open(url: string, clock = new ManualClock()) {
  const store = await PostgresKeystore.open({ connectionString: url, clock, connectTimeoutMs: 2_000 });
  opened.push(store);
  return store;
}
async function keyringOn(store: PostgresKeystore, clock = new ManualClock()) {
  const keyring = await Keyring.open({ keystore: store, kek, clock, minOnDemandRefreshMs: 0 });
  opened.push(keyring);
  return keyring;
}

describe('PostgresKeystore with Keyring and codec', () => {
  it('lets a second keyring decrypt a version it learns of on demand', async () => {
    const url = await server.newDatabase('demand');
    const a = await keyringOn(await open(url));
    const b = await keyringOn(await open(url));
    await a.createNamespace('orders');
    const codecA = new EncryptionCodec({ namespace: 'orders', keys: a });
    const codecB = new EncryptionCodec({ namespace: 'orders', keys: b });
    const first = await codecA.encode([defaultPayloadConverter.toPayload({ n: 1 })]);
    expect(defaultPayloadConverter.fromPayload((await codecB.decode(first))[0]!)).toEqual({ n: 1 });
    // B caches v1; A rotates; B meets a payload naming v2 and fetches it.
    await a.rotate('orders');
    const second = await codecA.encode([defaultPayloadConverter.toPayload({ n: 2 })]);
    expect(defaultPayloadConverter.fromPayload((await codecB.decode(second))[0]!)).toEqual({ n: 2 });
    expect((await b.versions('orders')).map((v) => v.state)).toEqual(['inactive', 'active']);
  });

  it('pushes changes to other keystores with LISTEN/NOTIFY', async () => {
    const url = await server.newDatabase('notify');
    const storeA = await open(url);
    const storeB = await open(url);
    const events: KeystoreEvent[] = [];
    storeB.subscribe((e) => events.push(e));
    expect(await storeB.whenListening()).toBe(true);
    const a = await keyringOn(storeA); // writes the KEK record: kek-changed
    const b = await keyringOn(storeB); // its refresh timer is on a ManualClock: only pushes update it
    await a.createNamespace('billing');
    expect((await b.encryptionKey('billing', 0)).version).toBe(1);
    await a.rotate('billing');
    await vi.waitFor(async () => expect((await b.encryptionKey('billing', 0)).version).toBe(2));
    expect(events).toContainEqual({ type: 'namespace-changed', namespace: 'billing' });
    expect(events).toContainEqual({ type: 'kek-changed' });
  });

  it('keeps its LISTEN connection only while someone subscribes', async () => {
    const store = await open(await server.newDatabase('unsub'));
    expect(await store.whenListening()).toBe(false);
    const keyring = await keyringOn(store);
    expect(await store.whenListening()).toBe(true);
    await keyring.close(); // unsubscribes
    expect(await store.whenListening()).toBe(false);
    const off = store.subscribe(() => {});
    expect(await store.whenListening()).toBe(true);
    off();
    expect(await store.whenListening()).toBe(false);
  });

  it('makes exactly one of 5 concurrent rotators (5 keystores) win', async () => {
    const url = await server.newDatabase('race');
    const keyrings = await Promise.all(Array.from({ length: 5 }, async () => keyringOn(await open(url))));
    await keyrings[0]!.createNamespace('race');
    await Promise.all(keyrings.map((k) => k.versions('race')));
    const results = await Promise.all(keyrings.map((k) => k.rotate('race', { expectedActiveVersion: 1 })));
    expect(results.filter((r) => r.performed).length).toBe(1);
    for (const r of results) expect(r.current.version).toBe(2);
    expect((await keyrings[0]!.versions('race')).map((v) => [v.version, v.state])).toEqual([
      [1, 'inactive'],
      [2, 'active'],
    ]);
  });

  it('hands a lease to exactly one of 5 keystores', async () => {
    const url = await server.newDatabase('lease');
    const stores = await Promise.all(Array.from({ length: 5 }, () => open(url)));
    const T = Date.UTC(2026, 0, 1);
    const got = await Promise.all(stores.map((s, i) => s.tryAcquireLease('rotator', `p${i}`, 10_000, T)));
    expect(got.filter(Boolean).length).toBe(1);
  });
});

describe('PostgresKeystore when the database goes away', () => {
  it('throws KeystoreUnavailableError, keeps cached keys working, and recovers without reopening', async () => {
    const url = await server.newDatabase('outage');
    const password = new URL(url).password;
    const clock = new ManualClock();
    const store = await open(url, clock);
    const keyring = await keyringOn(store, clock);
    await keyring.createNamespace('ns');
    const codec = new EncryptionCodec({ namespace: 'ns', keys: keyring });
    const encoded = await codec.encode([defaultPayloadConverter.toPayload('before')]);
    expect(await store.whenListening()).toBe(true);
    const events: KeystoreEvent[] = [];
    store.subscribe((e) => events.push(e));

    await server.halt();
    const T = Date.UTC(2026, 0, 1);
    const calls: [string, () => Promise<unknown>][] = [
      ['ping', () => store.ping()],
      ['listNamespaces', () => store.listNamespaces()],
      ['getVersions', () => store.getVersions('ns')],
      ['getMaterial', () => store.getMaterial('ns', 1)],
      ['getKekInfo', () => store.getKekInfo()],
      ['getUsage', () => store.getUsage('ns', 1)],
      ['reserveUsage', () => store.reserveUsage('ns', 1, 10, T)],
      ['recordUsed', () => store.recordUsed('ns', 1, 'p', 1, T)],
      ['tryAcquireLease', () => store.tryAcquireLease('rotator', 'p', 1000, T)],
      ['releaseLease', () => store.releaseLease('rotator', 'p')],
      ['commit', () => store.commit({ namespace: 'ns', at: T, transitions: [] })],
      [
        'rewrapMaterial',
        () =>
          store.rewrapMaterial('ns', 1, { kekId: 'x', alg: 'A256GCM', ciphertext: new Uint8Array(1) }, 'y'),
      ],
      ['putKekInfo', () => store.putKekInfo({ format: 1, currentKekId: 'x', checks: [] }, undefined)],
    ];
    for (const [name, call] of calls) {
      const error = await call().then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(error, name).toMatchObject({ code: 'ERR_KEYSTORE_UNAVAILABLE' });
      expect((error as Error).message, name).not.toContain(password);
      expect((error as Error).message, name).toContain('***');
    }
    // Keys the keyring already holds keep decrypting (and encrypting: no meter here).
    expect(defaultPayloadConverter.fromPayload((await codec.decode(encoded))[0]!)).toBe('before');
    await codec.encode([defaultPayloadConverter.toPayload('during')]);
    expect(await store.whenListening()).toBe(false);

    await server.resume();
    // The pool opens new connections by itself.
    await store.ping();
    expect(await store.listNamespaces()).toEqual(['ns']);
    await keyring.rotate('ns');
    // The listener retries on the injected clock (first retry after 100 ms), then announces every
    // namespace, since notifications sent while it was away are lost.
    events.length = 0;
    clock.advance(100);
    expect(await store.whenListening()).toBe(true);
    await vi.waitFor(() => expect(events).toContainEqual({ type: 'namespace-changed', namespace: 'ns' }));
  });
});
