import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';
import { configJsonSchema } from '../../src/config/config-schema.ts';
import { loadConfigFile, parseConfig } from '../../src/config/load-config.ts';
import { resolveSettings } from '../../src/config/resolve-settings.ts';
import { serverConfigSchema } from '../../src/config/server-config.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { parseKeystoreLocation } from '../../src/keystore/keystore-location.ts';
import { tempDir } from '../support/temp-dir.ts';

function fieldOf(fn: () => unknown): string {
  try {
    fn();
  } catch (error) {
    expect(error).toBeInstanceOf(InvalidOptionError);
    return (error as InvalidOptionError).field;
  }
  throw new Error('expected an InvalidOptionError');
}

describe('parseConfig', () => {
  it('accepts a full config and converts durations', () => {
    const config = parseConfig({
      keystore: 'file:./keys',
      kek: { env: 'MY_KEK' },
      defaults: { rotation: { maxAge: '30d' }, allowDeprecatedDecrypt: false },
      namespaces: { default: { rotation: { maxAge: '7d', enabled: false }, allowDeprecatedDecrypt: true } },
      server: { port: 9000, auth: { tokens: [] } },
    });
    expect(config.namespaces?.default?.rotation).toEqual({ maxAge: 7 * 86_400_000, enabled: false });
    expect(config.defaults?.rotation).toEqual({ maxAge: 30 * 86_400_000 });
  });

  it.each([
    [{ keystore: 5 }, 'keystore'],
    [{ kek: { env: 'A', file: 'b' } }, 'kek'],
    [{ kek: 'base64-in-the-file' }, 'kek'],
    [{ namespaces: { 'bad/ns': {} } }, 'namespaces.bad/ns'],
    [{ namespaces: { default: { rotation: { maxAge: '30' } } } }, 'namespaces.default.rotation.maxAge'],
    [{ namespaces: { default: { rotation: { maxAge: '1m' } } } }, 'namespaces.default.rotation.maxAge'],
    [{ namespaces: { default: { rotaton: {} } } }, 'namespaces.default.rotaton'],
    [{ defaults: { rotation: { maxEncryptions: 10 } } }, 'defaults.rotation.maxEncryptions'],
    [{ server: { port: 'eighty' } }, 'server.port'],
    [{ server: { cors: { origins: ['https://x.example/'] } } }, 'server.cors.origins.0'],
    [{ keystores: 'typo' }, 'keystores'],
    [[], 'config'],
  ])('names the field of %j', (input, field) => {
    expect(fieldOf(() => parseConfig(input))).toBe(field);
  });

  it('reports unreadable and unparsable files as field "config"', async () => {
    const dir = await tempDir('tk-config-');
    await writeFile(join(dir, 'bad.json'), '{ not json');
    await expect(loadConfigFile(join(dir, 'bad.json'))).rejects.toThrow(/^config: .*not valid JSON/);
    await expect(loadConfigFile(join(dir, 'missing.json'))).rejects.toThrow(/^config: cannot read .*ENOENT/);
  });
});

describe('the documented config', () => {
  it('the example in docs/configuration.md is valid', async () => {
    const doc = await readFile(resolve(import.meta.dirname, '../../docs/configuration.md'), 'utf8');
    const example = /```json\n([\s\S]*?)\n```/.exec(doc)?.[1];
    expect(example).toBeDefined();
    const config = parseConfig(JSON.parse(example!));
    expect(Object.keys(config.namespaces ?? {})).toEqual(['payments', 'analytics']);
  });

  it('has a JSON Schema for editors, with the server section inlined', () => {
    const schema = configJsonSchema(serverConfigSchema) as {
      properties: Record<string, { properties?: Record<string, unknown> }>;
      additionalProperties: unknown;
    };
    expect(Object.keys(schema.properties)).toEqual([
      '$schema',
      'keystore',
      'kek',
      'previousKeks',
      'defaults',
      'rotator',
      'namespaces',
      'server',
    ]);
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties.server?.properties).toHaveProperty('port');
  });
});

describe('parseKeystoreLocation', () => {
  it.each([
    ['postgres://u:p@127.0.0.1/db', { kind: 'postgres', connectionString: 'postgres://u:p@127.0.0.1/db' }],
    ['postgresql://127.0.0.1/db', { kind: 'postgres', connectionString: 'postgresql://127.0.0.1/db' }],
    ['file:///var/lib/keys', { kind: 'file', dir: '/var/lib/keys' }],
    ['file:./keys', { kind: 'file', dir: '/base/keys' }],
    ['keys', { kind: 'file', dir: '/base/keys' }],
    ['/abs/keys', { kind: 'file', dir: '/abs/keys' }],
  ])('%s', (text, expected) => {
    expect(parseKeystoreLocation(text, '/base')).toEqual(expected);
  });

  it('refuses unknown schemes instead of taking them for paths', () => {
    expect(() => parseKeystoreLocation('mysql://host/db', '/base')).toThrow(
      /keystore: unsupported keystore URL scheme "mysql:"/,
    );
  });
});

describe('resolveSettings precedence: flags > env > config file > defaults', () => {
  async function withConfig(config: unknown) {
    const dir = await tempDir('tk-settings-');
    const path = join(dir, 'keyring.json');
    await writeFile(path, JSON.stringify(config));
    return { dir, path };
  }

  it('uses defaults when nothing is given', async () => {
    const s = await resolveSettings({}, {}, '/work');
    expect(s.keystore).toEqual({ kind: 'file', dir: '/work/.temporal-keyring' });
    expect(s.keystoreOrigin).toBe('default');
    expect(s.kek()).toBeUndefined();
    expect(s.allowDeprecatedDecrypt('default')).toBe(false);
  });

  it('config file values resolve relative to the file and apply when nothing overrides them', async () => {
    const { dir, path } = await withConfig({
      keystore: './keys',
      kek: { file: 'kek.txt' },
      defaults: { allowDeprecatedDecrypt: true },
      namespaces: { strict: { allowDeprecatedDecrypt: false } },
    });
    const s = await resolveSettings({}, { TEMPORAL_KEYRING_CONFIG: path }, '/elsewhere');
    expect(s.keystore).toEqual({ kind: 'file', dir: join(dir, 'keys') });
    expect(s.keystoreOrigin).toBe('config keystore');
    expect(s.kek()).toEqual({ type: 'file', path: join(dir, 'kek.txt') });
    expect(s.allowDeprecatedDecrypt('default')).toBe(true);
    expect(s.allowDeprecatedDecrypt('strict')).toBe(false);
    expect(s.rotationPolicy('default').maxAge).toBe(30 * 86_400_000);
  });

  it('env overrides the config file, flags override env', async () => {
    const { path } = await withConfig({ keystore: './keys', kek: { env: 'CONFIG_KEK' } });
    const env = {
      TEMPORAL_KEYRING_CONFIG: path,
      TEMPORAL_KEYRING_KEYSTORE: '/env/dir',
      TEMPORAL_KEYRING_KEK: 'ZW52',
      CONFIG_KEK: 'Y29uZmln',
      PASS: 'correct horse battery staple',
    };
    const fromEnv = await resolveSettings({}, env, '/cwd');
    expect(fromEnv.keystore).toEqual({ kind: 'file', dir: '/env/dir' });
    expect(fromEnv.kek()).toEqual({ type: 'base64', value: 'ZW52' });
    expect(fromEnv.kekOrigin).toBe('env TEMPORAL_KEYRING_KEK');

    const fromFlags = await resolveSettings(
      { keystore: 'postgres://db/x', kekPassphraseEnv: 'PASS' },
      env,
      '/cwd',
    );
    expect(fromFlags.keystore).toEqual({ kind: 'postgres', connectionString: 'postgres://db/x' });
    expect(fromFlags.kek()).toEqual({ type: 'passphrase', passphrase: 'correct horse battery staple' });

    const keystoreEnv = await resolveSettings({}, { ...env, TEMPORAL_KEYRING_KEYSTORE: 'file:rel' }, '/cwd');
    expect(keystoreEnv.keystore).toEqual({ kind: 'file', dir: '/cwd/rel' });
  });

  it('resolves previous KEKs from the config file, replaced by --previous-kek-file', async () => {
    const { dir, path } = await withConfig({ previousKeks: [{ file: 'old.b64' }, { env: 'OLD_KEK' }] });
    const fromConfig = await resolveSettings({ config: path }, { OLD_KEK: 'b2xk' });
    expect(fromConfig.previousKeks()).toEqual([
      { type: 'file', path: join(dir, 'old.b64') },
      { type: 'base64', value: 'b2xk' },
    ]);
    const fromFlags = await resolveSettings({ config: path, previousKekFile: ['a', 'b'] }, {}, '/cwd');
    expect(fromFlags.previousKeks()).toEqual([
      { type: 'file', path: '/cwd/a' },
      { type: 'file', path: '/cwd/b' },
    ]);
    const missing = await resolveSettings({ config: path }, {});
    expect(() => missing.previousKeks()).toThrow(
      /^previousKeks.1.env: environment variable OLD_KEK is not set/,
    );
  });

  it('refuses two flags that name the same thing, and a missing env var named by config', async () => {
    await expect(resolveSettings({ keystore: '/a', dataDir: '/b' }, {})).rejects.toThrow(/^--keystore: /);
    await expect(resolveSettings({ kekFile: '/k', kekPassphraseEnv: 'P' }, {})).rejects.toThrow(
      /^--kek-file: /,
    );
    await expect(
      resolveSettings({}, { TEMPORAL_KEYRING_KEK: 'a', TEMPORAL_KEYRING_KEK_FILE: '/b' }),
    ).rejects.toThrow(/not both/);
    const { path } = await withConfig({ kek: { env: 'NOT_SET_ANYWHERE' } });
    const s = await resolveSettings({ config: path }, {});
    // Read lazily: only commands that need the KEK fail.
    expect(() => s.kek()).toThrow(/^kek.env: environment variable NOT_SET_ANYWHERE is not set/);
  });
});
