import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tokenSha256Hex } from '../../codec-server/auth/static-tokens.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { cli, tempDir } from './run-cli.ts';

describe('temporal-keyring keys rekey', { timeout: 180_000 }, () => {
  it('finishes a KEK rotation that was interrupted, then only the new KEK opens the keystore', async () => {
    const dir = await tempDir();
    const oldKek = generateKekBase64();
    const newKek = generateKekBase64();
    const kekDir = await tempDir();
    const newKekFile = join(kekDir, 'new-kek');
    await writeFile(newKekFile, `${newKek}\n`, { mode: 0o600 });

    // Four key versions in two namespaces.
    const setup = await openKeyring({ keystore: dir, kek: { type: 'base64', value: oldKek }, meter: false });
    for (const ns of ['default', 'payments']) {
      await setup.keyring.createNamespace(ns);
      await setup.keyring.rotate(ns);
    }
    // A rekey that dies after re-wrapping one key (as a crash would stop it).
    let rewraps = 0;
    const crashing = new Proxy(setup.keystore, {
      get(target, property) {
        if (property === 'rewrapMaterial') {
          return async (...args: Parameters<Keystore['rewrapMaterial']>) => {
            if (rewraps++ === 1) throw new Error('simulated crash');
            return target.rewrapMaterial(...args);
          };
        }
        const value = Reflect.get(target, property, target);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
    const interrupted = await openKeyring({
      keystore: crashing,
      kek: { type: 'base64', value: oldKek },
      meter: false,
    });
    await expect(interrupted.keyring.rekey(LocalKek.fromBase64(newKek))).rejects.toThrow('simulated crash');
    await interrupted.close();
    await setup.close();

    const resumed = await cli(['keys', 'rekey', '--new-kek-file', newKekFile, '--json'], {
      env: { TEMPORAL_KEYRING_KEK: oldKek, TEMPORAL_KEYRING_KEYSTORE: dir },
    });
    expect(resumed.stderr).toContain('re-wrapping 3 key version(s) under KEK');
    expect(resumed.stderr).toContain('3/3');
    expect(resumed.code).toBe(0);
    expect(JSON.parse(resumed.stdout)).toEqual({
      fromKekId: LocalKek.fromBase64(oldKek).id,
      toKekId: LocalKek.fromBase64(newKek).id,
      rewrapped: 3,
    });

    // Within the propagation delay, a process holding only the old KEK still works (upgrade key).
    const meanwhile = await cli(['keys', 'rotate', '-n', 'payments'], {
      env: { TEMPORAL_KEYRING_KEK: oldKek, TEMPORAL_KEYRING_KEYSTORE: dir },
    });
    expect(meanwhile.code, meanwhile.stderr).toBe(0);
    // Once the delay has passed (here: its end moved into the past), only the new KEK opens it.
    const store = await FileKeystore.open({ dir });
    const info = (await store.getKekInfo())!;
    await store.putKekInfo({ ...info, upgrades: info.upgrades?.map((u) => ({ ...u, until: 1 })) }, info);
    await store.close();
    const withOld = await cli(['keys', 'rotate', '-n', 'default'], {
      env: { TEMPORAL_KEYRING_KEK: oldKek, TEMPORAL_KEYRING_KEYSTORE: dir },
    });
    expect(withOld.code).toBe(4);
    expect(withOld.stderr).toContain('[ERR_KEK_MISMATCH]');
    const withNew = await cli([
      '--kek-file',
      newKekFile,
      '--data-dir',
      dir,
      'keys',
      'rotate',
      '-n',
      'default',
    ]);
    expect(withNew.code).toBe(0);

    // Every version's material unwraps under the new KEK.
    const check = await openKeyring({ keystore: dir, kek: { type: 'file', path: newKekFile }, meter: false });
    for (const ns of ['default', 'payments']) {
      for (const v of await check.keyring.versions(ns)) {
        expect((await check.keyring.decryptionKey(ns, v.version)).exportMaterial()).toHaveLength(32);
      }
    }
    await check.close();
  });
});

describe('KEK rotation without downtime', { timeout: 180_000 }, () => {
  it('accepts the old KEK as a previous KEK, so processes can switch to the new one before the rekey', async () => {
    const dir = await tempDir();
    const kekDir = await tempDir();
    const oldFile = join(kekDir, 'old');
    const newFile = join(kekDir, 'new');
    await writeFile(oldFile, `${generateKekBase64()}\n`, { mode: 0o600 });
    await writeFile(newFile, `${generateKekBase64()}\n`, { mode: 0o600 });
    expect(
      (await cli(['--data-dir', dir, '--kek-file', oldFile, 'keys', 'create', '-n', 'default'])).code,
    ).toBe(0);
    // Already on the new KEK, with the old one as previous: works before, during and after the rekey.
    const both = ['--data-dir', dir, '--kek-file', newFile, '--previous-kek-file', oldFile];
    const rekey = await cli([...both, 'keys', 'rekey', '--new-kek-file', newFile]);
    expect(rekey.code).toBe(0);
    expect(rekey.stdout).toContain('KEK rotation complete: 1 key version(s) re-wrapped');
    const newOnly = await cli(['--data-dir', dir, '--kek-file', newFile, 'keys', 'rotate', '-n', 'default']);
    expect(newOnly.code).toBe(0);
  });
});

describe('a passphrase KEK', { timeout: 180_000 }, () => {
  it('derives the same KEK from the salt stored at creation, and refuses another passphrase', async () => {
    const dir = await tempDir();
    const args = ['--data-dir', dir, '--kek-passphrase-env', 'KEYRING_PASSPHRASE'];
    const env = { KEYRING_PASSPHRASE: 'correct horse battery staple' };
    expect((await cli([...args, 'keys', 'create', '-n', 'default'], { env })).code).toBe(0);
    const [again, wrong, unset] = await Promise.all([
      cli([...args, 'keys', 'rotate', '-n', 'default'], { env }),
      cli([...args, 'keys', 'rotate', '-n', 'default'], {
        env: { KEYRING_PASSPHRASE: 'another long passphrase' },
      }),
      cli([...args, 'keys', 'rotate', '-n', 'default']),
    ]);
    expect(again.code).toBe(0);
    expect(wrong.code).toBe(4);
    expect(wrong.stderr).toContain('[ERR_KEK_MISMATCH]');
    expect(wrong.stderr).not.toContain('another long passphrase');
    expect(unset.code).toBe(2);
    expect(unset.stderr).toContain(
      '--kek-passphrase-env: environment variable KEYRING_PASSPHRASE is not set',
    );
  });
});

describe('temporal-keyring token create', { timeout: 180_000 }, () => {
  it('prints a token once with a config entry the codec server accepts', async () => {
    const result = await cli([
      'token',
      'create',
      '--name',
      'web-ui',
      '--namespaces',
      'default,payments',
      '--operations',
      'decode,encode',
      '--json',
    ]);
    expect(result.code).toBe(0);
    const { token, entry } = JSON.parse(result.stdout);
    expect(token).toMatch(/^tkr_[A-Za-z0-9_-]{43}$/);
    expect(entry).toEqual({
      name: 'web-ui',
      sha256: tokenSha256Hex(token),
      namespaces: ['default', 'payments'],
      operations: ['decode', 'encode'],
    });
    expect(parseServerConfig({ auth: { tokens: [entry] } }).auth.tokens).toHaveLength(1);

    const bad = await cli([
      'token',
      'create',
      '--name',
      'x',
      '--namespaces',
      'default',
      '--operations',
      'delete',
    ]);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /--operations: unknown operation "delete" \(use encode, decode, admin, rewrap\)/,
    );
  });
});

describe('configuration through the CLI', { timeout: 180_000 }, () => {
  it('applies flags > env > config file > defaults, and names the bad field of a config file', async () => {
    const root = await tempDir();
    await mkdir(join(root, 'conf'));
    const configFile = join(root, 'conf', 'keyring.json');
    const kek = generateKekBase64();
    await writeFile(join(root, 'conf', 'kek'), `${kek}\n`, { mode: 0o600 });
    await writeFile(configFile, JSON.stringify({ keystore: './keys', kek: { file: 'kek' } }));

    // The config file alone drives a real command (paths relative to the file).
    const created = await cli(['--config', configFile, 'keys', 'create', '-n', 'default']);
    expect(created.code).toBe(0);

    const show = async (args: string[], env: Record<string, string>) => {
      const r = await cli([...args, 'config', 'show', '--json'], { env, cwd: root });
      expect(r.code).toBe(0);
      expect(r.stdout).not.toContain(kek);
      return JSON.parse(r.stdout);
    };
    const fromConfig = await show([], { TEMPORAL_KEYRING_CONFIG: configFile });
    expect(fromConfig).toEqual({
      configFile,
      keystore: { kind: 'file', location: join(root, 'conf', 'keys'), from: 'config keystore' },
      kek: { type: 'file', path: join(root, 'conf', 'kek'), from: 'config kek.file' },
      namespaces: [],
    });
    const fromEnv = await show([], {
      TEMPORAL_KEYRING_CONFIG: configFile,
      TEMPORAL_KEYRING_KEYSTORE: 'env-keys',
      TEMPORAL_KEYRING_KEK: kek,
    });
    expect(fromEnv.keystore).toEqual({
      kind: 'file',
      location: join(root, 'env-keys'),
      from: 'env TEMPORAL_KEYRING_KEYSTORE',
    });
    expect(fromEnv.kek).toEqual({ type: 'base64', from: 'env TEMPORAL_KEYRING_KEK' });
    const fromFlags = await show(['--keystore', 'postgres://app:secret@127.0.0.1:5432/keys'], {
      TEMPORAL_KEYRING_CONFIG: configFile,
      TEMPORAL_KEYRING_KEYSTORE: 'env-keys',
    });
    expect(fromFlags.keystore).toEqual({
      kind: 'postgres',
      location: 'postgres://app:***@127.0.0.1:5432/keys',
      from: 'flag --keystore',
    });

    await writeFile(
      configFile,
      JSON.stringify({ namespaces: { default: { rotation: { maxAge: 'soon' } } } }),
    );
    const bad = await cli(['--config', configFile, 'keys', 'list']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(
      /^temporal-keyring: namespaces\.default\.rotation\.maxAge: must be a .*duration/,
    );
  });
});
