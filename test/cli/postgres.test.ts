import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { cli } from './run-cli.ts';

let pg: TestPostgres | undefined;
beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});

describe('a postgres:// keystore through openKeyring and the CLI', { timeout: 180_000 }, () => {
  it('shares keys between the library and the CLI, and masks the password in config show', async () => {
    const url = await pg!.newDatabase('cli');
    const kek = generateKekBase64();
    const { keyring, keystore, close } = await openKeyring({
      keystore: url,
      kek: { type: 'base64', value: kek },
    });
    expect(keystore.kind).toBe('postgres');
    await keyring.createNamespace('default');
    await close();

    const env = { TEMPORAL_KEYRING_KEYSTORE: url, TEMPORAL_KEYRING_KEK: kek };
    const rotated = await cli(['keys', 'rotate', '-n', 'default'], { env });
    expect(rotated.stderr).toBe('');
    expect(rotated.code).toBe(0);
    const listed = await cli(['--keystore', url, 'keys', 'list', '--json']);
    expect(
      JSON.parse(listed.stdout).keys.map((k: { keyId: string; state: string }) => `${k.keyId}:${k.state}`),
    ).toEqual(['default/v1:inactive', 'default/v2:active']);
    const shown = await cli(['config', 'show', '--json'], { env });
    const { keystore: where } = JSON.parse(shown.stdout);
    expect(where.kind).toBe('postgres');
    const password = new URL(url).password;
    if (password) expect(shown.stdout).not.toContain(password);
  });
});
