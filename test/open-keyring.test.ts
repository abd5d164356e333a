import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { afterEach, describe, expect, it } from 'vitest';
import { EncryptionCodec } from '../src/codec/encryption-codec.ts';
import { LocalKek } from '../src/kek/kek.ts';
import { generateKekBase64 } from '../src/kek/kek-source.ts';
import { MemoryKeystore } from '../src/keystore/memory-keystore.ts';
import { type OpenedKeyring, openKeyring } from '../src/open-keyring.ts';
import { DEFAULT_ROTATION_POLICY, type RotationPolicy } from '../src/rotation/rotation-policy.ts';
import type { RotatorRun } from '../src/rotation/rotator.ts';
import { ManualClock } from '../src/runtime/clock.ts';
import { tempDir as removedAfterFile } from './support/temp-dir.ts';

const opened: OpenedKeyring[] = [];
afterEach(async () => {
  await Promise.all(opened.splice(0).map((o) => o.close()));
});

async function open(options?: Parameters<typeof openKeyring>[0]): Promise<OpenedKeyring> {
  const o = await openKeyring(options);
  opened.push(o);
  return o;
}

const tempDir = () => removedAfterFile('tk-open-');

describe('openKeyring', () => {
  it('opens a file keystore from a path and round-trips payloads through the codec', async () => {
    const dir = await tempDir();
    const kek = generateKekBase64();
    const { keyring, keystore } = await open({ keystore: dir, kek: { type: 'base64', value: kek } });
    expect(keystore.kind).toBe('file');
    await keyring.createNamespace('default');
    const codec = new EncryptionCodec({ namespace: 'default', keys: keyring });
    const [encoded] = await codec.encode([
      { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('"hi"') },
    ]);
    const [decoded] = await codec.decode([encoded!]);
    expect(Buffer.from(decoded!.data!).toString()).toBe('"hi"');
    expect(await readdir(dir)).not.toHaveLength(0);
  });

  it('accepts file: URLs and KEK files, and refuses a different KEK before any write', async () => {
    const dir = await tempDir();
    const kekFile = join(await tempDir(), 'kek.txt');
    await writeFile(kekFile, `${generateKekBase64()}\n`, { mode: 0o600 });
    const first = await openKeyring({ keystore: `file://${dir}`, kek: { type: 'file', path: kekFile } });
    await first.keyring.createNamespace('default');
    await first.close();
    await expect(
      openKeyring({ keystore: `file:${dir}`, kek: { type: 'base64', value: generateKekBase64() } }),
    ).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
    });
    const again = await open({ keystore: dir, kek: { type: 'file', path: kekFile } });
    expect((await again.keyring.versions('default')).map((v) => v.state)).toEqual(['active']);
  });

  it('derives a passphrase KEK with the salt the keystore stores, creating it on first use', async () => {
    const dir = await tempDir();
    const passphrase = 'correct horse battery staple';
    const first = await openKeyring({ keystore: dir, kek: { type: 'passphrase', passphrase } });
    await first.keyring.createNamespace('default');
    const salt = (await first.keystore.getKekInfo())?.passphraseSalt;
    expect(salt).toMatch(/^[A-Za-z0-9+/]+=*$/);
    await first.close();
    const second = await open({ keystore: dir, kek: { type: 'passphrase', passphrase } });
    expect(await second.keyring.versions('default')).toHaveLength(1);
    await expect(
      openKeyring({ keystore: dir, kek: { type: 'passphrase', passphrase: 'another long passphrase' } }),
    ).rejects.toMatchObject({ code: 'ERR_KEK_MISMATCH' });
  });

  it('wires a usage meter by default: encryptions are reserved in the keystore', async () => {
    const keystore = new MemoryKeystore();
    const kek = new LocalKek(Buffer.alloc(32, 7));
    const { keyring, close } = await openKeyring({ keystore, kek, clock: new ManualClock() });
    await keyring.createNamespace('default');
    await keyring.encryptionKey('default', 5);
    await close();
    const usage = await keystore.getUsage('default', 1);
    expect(usage.reserved).toBeGreaterThanOrEqual(5);
    // A keystore passed in is the caller's: still usable after close().
    await expect(keystore.ping()).resolves.toBeUndefined();

    const unmetered = new MemoryKeystore();
    const off = await open({ keystore: unmetered, kek, meter: false });
    await off.keyring.createNamespace('default');
    await off.keyring.encryptionKey('default', 5);
    expect((await unmetered.getUsage('default', 1)).reserved).toBe(0);
  });

  it('accepts previous KEKs for unwrapping, and never lets a previous passphrase create a keystore', async () => {
    const keystore = new MemoryKeystore();
    const oldKek = new LocalKek(Buffer.alloc(32, 1));
    const first = await openKeyring({ keystore, kek: oldKek, meter: false });
    await first.keyring.createNamespace('default');
    await first.close();
    const newKek = { type: 'base64', value: generateKekBase64() } as const;
    const both = await open({ keystore, kek: newKek, previousKeks: [oldKek], meter: false });
    expect((await both.keyring.decryptionKey('default', 1)).exportMaterial()).toHaveLength(32);
    await expect(openKeyring({ keystore, kek: newKek, meter: false })).rejects.toMatchObject({
      code: 'ERR_KEK_MISMATCH',
    });

    const fresh = new MemoryKeystore();
    await expect(
      openKeyring({
        keystore: fresh,
        kek: newKek,
        previousKeks: [{ type: 'passphrase', passphrase: 'an old long passphrase' }],
      }),
    ).rejects.toThrow(/^previousKeks\.0: a passphrase is accepted only by a keystore created with one/);
    expect(await fresh.getKekInfo()).toBeUndefined();
  });

  it('validates options up front, naming the field', async () => {
    await expect(openKeyring({ keystore: '/tmp/x' } as never)).rejects.toThrow(/^kek: is required/);
    await expect(
      openKeyring({ keystore: 'mysql://db', kek: { type: 'base64', value: generateKekBase64() } }),
    ).rejects.toThrow(/^keystore: unsupported keystore URL scheme/);
    await expect(
      openKeyring({
        keystore: new MemoryKeystore(),
        kek: { type: 'base64', value: generateKekBase64() },
        meter: 'yes' as never,
      }),
    ).rejects.toThrow(/^meter: /);
    await expect(
      openKeyring({ keystore: new MemoryKeystore(), kek: { type: 'base64', value: 'not base64!' } }),
    ).rejects.toMatchObject({ code: 'ERR_INVALID_KEK' });
  });

  it('uses TEMPORAL_KEYRING_KEYSTORE when no keystore is given', async () => {
    const dir = await tempDir();
    const previous = process.env.TEMPORAL_KEYRING_KEYSTORE;
    process.env.TEMPORAL_KEYRING_KEYSTORE = dir;
    try {
      const { keystore } = await open({ kek: { type: 'base64', value: generateKekBase64() } });
      expect(keystore.kind).toBe('file');
      expect(await readdir(dir)).not.toHaveLength(0);
    } finally {
      if (previous === undefined) delete process.env.TEMPORAL_KEYRING_KEYSTORE;
      else process.env.TEMPORAL_KEYRING_KEYSTORE = previous;
    }
  });

  it('reads the KEK from TEMPORAL_KEYRING_KEK_FILE too, like the CLI: openKeyring() alone', async () => {
    const dir = await tempDir();
    const kekFile = join(dir, 'kek.b64');
    await writeFile(kekFile, generateKekBase64(), { mode: 0o600 });
    const keys = join(dir, 'keys');
    const saved = { ...process.env };
    process.env.TEMPORAL_KEYRING_KEYSTORE = keys;
    process.env.TEMPORAL_KEYRING_KEK_FILE = kekFile;
    delete process.env.TEMPORAL_KEYRING_KEK;
    delete process.env.TEMPORAL_KEYRING_CONFIG;
    try {
      // A missing directory is refused (a mistyped path never starts an empty keystore)...
      await expect(openKeyring()).rejects.toMatchObject({
        code: 'ERR_KEYSTORE_UNAVAILABLE',
        message: expect.stringContaining(`no keystore in ${keys}: the directory does not exist`),
      });
      // ...unless creation is asked for.
      const first = await open({ createIfMissing: true });
      await first.keyring.createNamespace('default');
      await first.close();
      const again = await open();
      expect((await again.keyring.encryptionKey('default', 1)).version).toBe(1);
    } finally {
      process.env = saved;
    }
  });

  it('refuses retired environment variable names, naming the one to use', async () => {
    const saved = { ...process.env };
    process.env.TEMPORAL_KEYRING_DATA_DIR = '/somewhere';
    try {
      await expect(openKeyring({ kek: { type: 'base64', value: generateKekBase64() } })).rejects.toThrow(
        /^TEMPORAL_KEYRING_DATA_DIR: is not read by temporal-keyring: set TEMPORAL_KEYRING_KEYSTORE/,
      );
    } finally {
      process.env = saved;
    }
  });

  it('says which variables give the KEK when none is given', async () => {
    const saved = { ...process.env };
    for (const k of Object.keys(process.env)) if (k.startsWith('TEMPORAL_KEYRING_')) delete process.env[k];
    try {
      await expect(openKeyring({ keystore: await tempDir() })).rejects.toThrow(
        /^kek: is required: pass one, or set TEMPORAL_KEYRING_KEK_FILE .* or TEMPORAL_KEYRING_KEK/,
      );
    } finally {
      process.env = saved;
    }
  });

  it('loads pg only for a postgres:// keystore (checked in a fresh process)', async () => {
    const src = resolve(import.meta.dirname, '../src');
    const script = `
      import { createRequire } from 'node:module';
      const { openKeyring } = await import(${JSON.stringify(`${src}/open-keyring.ts`)});
      const { generateKekBase64 } = await import(${JSON.stringify(`${src}/kek/kek-source.ts`)});
      const pgLoaded = () => Object.keys(createRequire(import.meta.url).cache).some((p) => p.includes('/node_modules/pg/'));
      const o = await openKeyring({ keystore: ${JSON.stringify(await tempDir())}, kek: { type: 'base64', value: generateKekBase64() } });
      await o.close();
      const afterFile = pgLoaded();
      await openKeyring({ keystore: 'postgres://127.0.0.1:1/none', kek: { type: 'base64', value: generateKekBase64() } }).catch(() => {});
      console.log(JSON.stringify({ afterFile, afterPostgres: pgLoaded() }));
    `;
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ['--import', 'tsx', '--input-type=module', '-e', script],
      {
        timeout: 60_000,
      },
    );
    expect(JSON.parse(stdout)).toEqual({ afterFile: false, afterPostgres: true });
  });
});

describe('openKeyring: rotator()', () => {
  const DAY = 86_400_000;
  const actions = (run: RotatorRun) => Object.fromEntries(run.actions.map((a) => [a.namespace, a.action]));

  it('plans with the policies and the clock the keyring was opened with, one function for all', async () => {
    const clock = new ManualClock();
    const policy: RotationPolicy = { ...DEFAULT_ROTATION_POLICY, maxAge: 10 * DAY };
    const asked = new Set<string>();
    const { keyring, rotator } = await open({
      keystore: new MemoryKeystore(),
      kek: new LocalKek(randomBytes(32)),
      clock,
      policies: (namespace) => {
        asked.add(namespace);
        return namespace === 'paused' ? { ...policy, enabled: false } : policy;
      },
    });
    await keyring.createNamespace('default');
    await keyring.createNamespace('paused');
    const made = rotator();
    try {
      expect(actions(await made.runOnce())).toEqual({ default: 'none', paused: 'disabled' });
      // maxAge minus the propagation delay later on the keyring's clock: the next version is published.
      clock.advance(10 * DAY - policy.propagationDelay);
      expect(actions(await made.runOnce())).toEqual({ default: 'prepublished', paused: 'disabled' });
      // ... and the keyring holds it prepublished for the same policy's propagation delay.
      await expect(keyring.promote('default', 2)).rejects.toMatchObject({
        activatableAt: clock.now() + policy.propagationDelay,
      });
    } finally {
      await made.stop();
    }
    expect([...asked].sort()).toEqual(['default', 'paused']);
  });
});
