/**
 * The file keystore's on-disk behaviour in one process: permissions, validation of every read,
 * KEK checks before any write, material bound to its slot, and a crash injected at every step of
 * every durable write.
 */
import { mkdir, readdir, readFile, rename, rm, stat, utimes, writeFile } from 'node:fs/promises';
import { join, relative } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { DEFAULT_KEK_PROPAGATION_MS } from '../../src/kek/kek-upgrade.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import type { WriteStep } from '../../src/keystore/atomic-file.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { tempDir } from '../support/temp-dir.ts';

let dir: string;
beforeEach(async () => {
  dir = await tempDir('tk-file-');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

const kekA = () => new LocalKek(Buffer.alloc(32, 1));
const kekB = () => new LocalKek(Buffer.alloc(32, 2));

/** Every entry under the directory: path, mode, and contents of files. */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (d: string) => {
    for (const name of (await readdir(d)).sort()) {
      const p = join(d, name);
      const s = await stat(p);
      const rel = relative(root, p);
      if (s.isDirectory()) {
        out[`${rel}/`] = (s.mode & 0o777).toString(8);
        await walk(p);
      } else {
        out[rel] = `${(s.mode & 0o777).toString(8)} ${(await readFile(p)).toString('base64')}`;
      }
    }
  };
  await walk(root);
  return out;
}

/** A store with two namespaces, rotations, usage, a lease and a destroyed version. */
async function populate(keystore: FileKeystore, clock = new ManualClock()): Promise<void> {
  const keyring = await Keyring.open({ keystore, kek: kekA(), clock });
  await keyring.createNamespace('orders');
  await keyring.rotate('orders');
  await keyring.rotate('orders');
  await keyring.setState('orders', 1, 'deprecated');
  await keyring.setState('orders', 1, 'destroyed');
  await keyring.createNamespace('billing');
  await keystore.reserveUsage('orders', 3, 100, clock.now());
  await keystore.recordUsed('orders', 3, 'p1', 10, clock.now());
  await keystore.tryAcquireLease('rotator', 'p1', 1000, clock.now());
  await keyring.close();
}

describe('FileKeystore files', () => {
  it('creates directories 0700 and files 0600 whatever the umask', async () => {
    const previous = process.umask(0);
    try {
      const keystore = await FileKeystore.open({ dir: join(dir, 'data') });
      await populate(keystore);
      const entries = Object.entries(await snapshot(join(dir, 'data')));
      expect(entries.length).toBeGreaterThan(10);
      for (const [path, value] of entries) {
        expect([path, value.split(' ')[0]]).toEqual([path, path.endsWith('/') ? '700' : '600']);
      }
      expect((await stat(join(dir, 'data'))).mode & 0o777).toBe(0o700);
      await keystore.close();
    } finally {
      process.umask(previous);
    }
  });

  it('lays files out as documented', async () => {
    const keystore = await FileKeystore.open({ dir });
    await populate(keystore);
    expect(Object.keys(await snapshot(dir)).sort()).toEqual([
      'kek.json',
      'keystore.json',
      'leases/',
      'leases/rotator.json',
      'namespaces/',
      'namespaces/billing/',
      'namespaces/billing/material/',
      'namespaces/billing/material/v1.json',
      'namespaces/billing/versions.json',
      'namespaces/orders/',
      'namespaces/orders/material/',
      'namespaces/orders/material/v2.json',
      'namespaces/orders/material/v3.json',
      'namespaces/orders/versions.json',
      'usage/',
      'usage/orders/',
      'usage/orders/v3.json',
    ]);
    expect(await keystore.check()).toEqual({ namespaces: 2, versions: 4, materials: 3 });
  });

  it('refuses a non-empty directory that holds no keystore', async () => {
    await writeFile(join(dir, 'notes.txt'), 'hello');
    await expect(FileKeystore.open({ dir })).rejects.toMatchObject({ code: 'ERR_INVALID_OPTION' });
    expect(await readdir(dir)).toEqual(['notes.txt']);
    // The lost+found of a volume mounted at the directory is no obstacle.
    await rm(join(dir, 'notes.txt'));
    await mkdir(join(dir, 'lost+found'));
    await (await FileKeystore.open({ dir })).close();
    expect((await readdir(dir)).sort()).toEqual(['keystore.json', 'lost+found']);
  });

  it('validates options up front, naming the field', async () => {
    await expect(FileKeystore.open({ dir: '' })).rejects.toThrow(/^dir: /);
    await expect(FileKeystore.open({ dir, lockTimeoutMs: -1 })).rejects.toThrow(/^lockTimeoutMs: /);
  });

  describe('damaged files', () => {
    const cases: {
      file: string;
      damage: (text: string) => string;
      read: (k: FileKeystore) => Promise<unknown>;
    }[] = [
      {
        file: 'namespaces/orders/versions.json',
        damage: (t) => t.slice(0, t.length / 2),
        read: (k) => k.getVersions('orders'),
      },
      {
        file: 'namespaces/orders/versions.json',
        damage: (t) => t.replace('"inactive"', '"active"'),
        read: (k) => k.getVersions('orders'),
      },
      {
        file: 'namespaces/orders/versions.json',
        damage: (t) => t.replace('"inactive"', '"bogus"'),
        read: (k) => k.getVersions('orders'),
      },
      { file: 'namespaces/orders/versions.json', damage: () => '', read: (k) => k.listNamespaces() },
      {
        file: 'namespaces/orders/material/v3.json',
        damage: (t) => t.replace('"ciphertext": "', '"ciphertext": "!'),
        read: (k) => k.getMaterial('orders', 3),
      },
      {
        file: 'namespaces/orders/material/v3.json',
        damage: (t) => t.slice(0, 40),
        read: (k) => k.getMaterial('orders', 3),
      },
      {
        file: 'kek.json',
        damage: (t) => t.replace('"format": 1', '"format": "1"'),
        read: (k) => k.getKekInfo(),
      },
      { file: 'usage/orders/v3.json', damage: (t) => `${t}}`, read: (k) => k.getUsage('orders', 3) },
      {
        file: 'leases/rotator.json',
        damage: (t) => t.replace('"until": ', '"until": "x'),
        read: (k) => k.tryAcquireLease('rotator', 'p2', 1, 0),
      },
    ];
    for (const [i, c] of cases.entries()) {
      it(`${c.file} (case ${i + 1}) raises ERR_KEYSTORE_CORRUPT naming the file, and stays as it is`, async () => {
        const keystore = await FileKeystore.open({ dir });
        await populate(keystore);
        const path = join(dir, c.file);
        const damaged = c.damage(await readFile(path, 'utf8'));
        await writeFile(path, damaged);
        const reopened = await FileKeystore.open({ dir });
        const error = await c.read(reopened).then(
          () => undefined,
          (e: unknown) => e as Error & { code: string },
        );
        expect(error?.code).toBe('ERR_KEYSTORE_CORRUPT');
        expect(error?.message).toContain(c.file);
        // No contents in the message: no stored value (ids, base64 material, check values).
        for (const m of damaged.matchAll(/"([^"]{12,})"/g)) expect(error?.message).not.toContain(m[1]);
        await expect(reopened.check()).rejects.toMatchObject({ code: 'ERR_KEYSTORE_CORRUPT' });
        // Writes in other namespaces go on; the damaged file is never rewritten or repaired.
        await reopened.reserveUsage('billing', 1, 1, 0);
        expect(await readFile(path, 'utf8')).toBe(damaged);
      });
    }

    it('through the Keyring: a damaged KEK record stops open', async () => {
      const keystore = await FileKeystore.open({ dir });
      await populate(keystore);
      await writeFile(join(dir, 'kek.json'), '{"format":1,');
      await expect(Keyring.open({ keystore, kek: kekA() })).rejects.toMatchObject({
        code: 'ERR_KEYSTORE_CORRUPT',
      });
      expect(await readFile(join(dir, 'kek.json'), 'utf8')).toBe('{"format":1,');
    });
  });

  it('detects a wrong KEK at open before writing anything', async () => {
    const first = await FileKeystore.open({ dir });
    await populate(first);
    await first.close();
    const before = await snapshot(dir);
    const keystore = await FileKeystore.open({ dir });
    await expect(Keyring.open({ keystore, kek: kekB() })).rejects.toMatchObject({ code: 'ERR_KEK_MISMATCH' });
    await keystore.close();
    expect(await snapshot(dir)).toEqual(before);
  });

  it('detects material files swapped between versions or namespaces', async () => {
    const keystore = await FileKeystore.open({ dir });
    await populate(keystore);
    const m = (ns: string, v: number) => join(dir, 'namespaces', ns, 'material', `v${v}.json`);
    const swap = async (a: string, b: string) => {
      await rename(a, `${a}.x`);
      await rename(b, a);
      await rename(`${a}.x`, b);
    };
    await swap(m('orders', 2), m('orders', 3));
    let keyring = await Keyring.open({ keystore, kek: kekA() });
    await expect(keyring.decryptionKey('orders', 2)).rejects.toMatchObject({ code: 'ERR_KEYSTORE_CORRUPT' });
    await expect(keyring.encryptionKey('orders', 1)).rejects.toMatchObject({ code: 'ERR_KEYSTORE_CORRUPT' });
    await keyring.close();
    await swap(m('orders', 2), m('orders', 3));
    await swap(m('orders', 3), m('billing', 1));
    keyring = await Keyring.open({ keystore, kek: kekA() });
    await expect(keyring.decryptionKey('billing', 1)).rejects.toMatchObject({ code: 'ERR_KEYSTORE_CORRUPT' });
    await expect(keyring.decryptionKey('orders', 3)).rejects.toMatchObject({ code: 'ERR_KEYSTORE_CORRUPT' });
    expect((await keyring.decryptionKey('orders', 2)).exportMaterial()).toHaveLength(32);
    await keyring.close();
  });

  it('wraps new keys only under the new KEK once a KEK rotation began, even in a process holding only the retiring one', async () => {
    const keystore = await FileKeystore.open({ dir });
    await populate(keystore);
    const stale = await Keyring.open({ keystore: await FileKeystore.open({ dir }), kek: kekA() });
    const admin = await Keyring.open({ keystore, kek: kekA() });
    expect(await admin.rekey(kekB())).toEqual({ rewrapped: 3 });
    await admin.close();
    // The stale process reaches the new KEK through the upgrade key (for the propagation delay
    // after the rekey) and wraps under it, never under the retiring KEK.
    const rotated = await stale.rotate('billing');
    expect((await keystore.getMaterial('billing', rotated.current.version))?.kekId).toBe(kekB().id);
    await stale.close();
    // Past the delay a process holding only the retiring KEK is refused, and writes nothing.
    const before = await snapshot(dir);
    const late = new ManualClock(Date.now() + DEFAULT_KEK_PROPAGATION_MS + 60_000);
    await expect(Keyring.open({ keystore, kek: kekA(), clock: late })).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
    });
    expect(await snapshot(dir)).toEqual(before);
    const fresh = await Keyring.open({ keystore, kek: kekB() });
    expect((await fresh.rotate('billing')).performed).toBe(true);
    await fresh.close();
  });

  it('takes over a lock whose holder stopped refreshing it (another host)', async () => {
    const keystore = await FileKeystore.open({ dir, lockStaleMs: 1000, lockTimeoutMs: 5000 });
    const lock = join(dir, 'lock');
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: 'elsewhere', token: 't', at: 0 }));
    const old = new Date(Date.now() - 60_000);
    await utimes(lock, old, old);
    expect((await keystore.reserveUsage('a', 1, 1, 0)).reserved).toBe(1);
    // A fresh lock of a live holder is respected until the timeout.
    await writeFile(lock, JSON.stringify({ pid: process.pid, host: 'elsewhere', token: 't', at: 0 }));
    const impatient = await FileKeystore.open({ dir, lockStaleMs: 60_000, lockTimeoutMs: 50 });
    await expect(impatient.reserveUsage('a', 1, 1, 0)).rejects.toMatchObject({ code: 'ERR_LOCK_TIMEOUT' });
    expect(JSON.parse(await readFile(lock, 'utf8')).token).toBe('t');
  });
});

describe('FileKeystore crash at each step of a durable write', () => {
  class Crash extends Error {}
  const steps: WriteStep[] = ['temp-written', 'temp-synced', 'renamed', 'dir-synced'];

  /** Runs `op` with a crash injected at the n-th write step; returns whether it crashed. */
  async function crashAt(
    n: number,
    op: (k: FileKeystore) => Promise<unknown>,
  ): Promise<{ crashed: boolean; step?: WriteStep; file?: string }> {
    let seen = 0;
    let at: { step: WriteStep; file: string } | undefined;
    const keystore = await FileKeystore.open({
      dir,
      faults: (step, file) => {
        if (++seen === n) {
          at = { step, file: relative(dir, file) };
          throw new Crash(`${step} ${file}`);
        }
      },
    });
    try {
      await op(keystore);
      return { crashed: false };
    } catch (error) {
      if (!(error instanceof Crash)) throw error;
      return { crashed: true, ...at };
    }
  }

  it('a rotation leaves the old or the new state, and the next rotation succeeds', async () => {
    const setup = await FileKeystore.open({ dir });
    const clock = new ManualClock();
    const keyring = await Keyring.open({ keystore: setup, kek: kekA(), clock });
    await keyring.createNamespace('orders');
    await keyring.close();
    const seenSteps = new Set<string>();
    for (let n = 1; ; n++) {
      const before = await snapshot(dir);
      const result = await crashAt(n, async (keystore) => {
        const k = await Keyring.open({ keystore, kek: kekA(), clock });
        try {
          await k.rotate('orders');
        } finally {
          await k.close();
        }
      });
      const fresh = await FileKeystore.open({ dir });
      await fresh.check();
      const versions = await fresh.getVersions('orders');
      const latest = versions.length;
      if (!result.crashed) {
        expect(n).toBeGreaterThan(8); // material and metadata: four steps each
        break;
      }
      seenSteps.add(`${result.file?.endsWith('versions.json') ? 'metadata' : 'material'}:${result.step}`);
      // Before the metadata rename the rotation is invisible; after it, complete.
      const committed =
        result.file?.endsWith('versions.json') && (result.step === 'renamed' || result.step === 'dir-synced');
      const previous = Object.keys(before).filter((p) => p.endsWith('versions.json')).length;
      expect(previous).toBe(1);
      expect(versions.filter((v) => v.state === 'active')).toHaveLength(1);
      expect(latest - (await snapshotVersions(before))).toBe(committed ? 1 : 0);
      // Whatever happened, the store keeps working, and the next rotation succeeds on top.
      const k = await Keyring.open({ keystore: fresh, kek: kekA(), clock });
      for (const v of versions)
        expect((await k.decryptionKey('orders', v.version)).exportMaterial()).toHaveLength(32);
      await k.rotate('orders');
      expect((await fresh.getVersions('orders')).length).toBe(latest + 1);
      await k.close();
      await fresh.check();
    }
    expect([...seenSteps].sort()).toEqual(steps.flatMap((s) => [`material:${s}`, `metadata:${s}`]).sort());
  });

  async function snapshotVersions(snap: Record<string, string>): Promise<number> {
    const entry = Object.entries(snap).find(([p]) => p === 'namespaces/orders/versions.json')!;
    const text = Buffer.from(entry[1].split(' ')[1]!, 'base64').toString('utf8');
    return (JSON.parse(text) as { versions: unknown[] }).versions.length;
  }

  it('a destroy committed before its material was erased is finished by the next open', async () => {
    const setup = await FileKeystore.open({ dir });
    await populate(setup);
    const k = await Keyring.open({ keystore: setup, kek: kekA() });
    await k.setState('orders', 2, 'deprecated');
    await k.close();
    // Steps 1-4 write versions.json (the commit point); the crash comes before the unlink.
    const result = await crashAt(4, (keystore) =>
      keystore.commit({
        namespace: 'orders',
        at: 1,
        transitions: [{ version: 2, from: 'deprecated', to: 'destroyed' }],
      }),
    );
    expect(result).toMatchObject({
      crashed: true,
      step: 'dir-synced',
      file: 'namespaces/orders/versions.json',
    });
    const material = join(dir, 'namespaces/orders/material/v2.json');
    expect((await stat(material)).isFile()).toBe(true);
    const reopened = await FileKeystore.open({ dir });
    await expect(stat(material)).rejects.toMatchObject({ code: 'ENOENT' });
    expect(await reopened.getMaterial('orders', 2)).toBeUndefined();
    expect((await reopened.getVersions('orders'))[1]!.state).toBe('destroyed');
    await reopened.check();
  });
});
