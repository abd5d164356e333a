import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { cli, tempDir } from './run-cli.ts';

describe('temporal-keyring keys export', { timeout: 180_000 }, () => {
  it('refuses a namespace that is not exportable; exports once the config marks it, and audits on stderr', async () => {
    const dir = await tempDir();
    const config = join(dir, 'config.json');
    const env = { TEMPORAL_KEYRING_KEK: generateKekBase64(), TEMPORAL_KEYRING_DATA_DIR: join(dir, 'keys') };
    expect((await cli(['keys', 'create', '--namespace', 'orders'], { env })).code).toBe(0);

    const refused = await cli(['keys', 'export', '--namespace', 'orders'], { env });
    expect(refused.code).toBe(5);
    expect(refused.stderr).toContain('[ERR_NOT_EXPORTABLE]');
    expect(refused.stdout).toBe('');

    await writeFile(config, JSON.stringify({ namespaces: { orders: { exportable: true } } }));
    const exported = await cli(['--config', config, 'keys', 'export', '--namespace', 'orders', '--json'], {
      env,
    });
    expect(exported.code).toBe(0);
    const body = JSON.parse(exported.stdout) as {
      versions: { version: number; material: string; esdk: unknown }[];
    };
    expect(body.versions).toHaveLength(1);
    expect(body.versions[0]!.esdk).toMatchObject({
      format1: { providerId: 'temporal-keyring', keyName: 'orders/v1/' },
      format2: { providerId: 'tk', keyName: 'v1/' },
    });
    expect(exported.stderr).toMatch(/marked namespace "orders" exportable \(irreversible\)/);
    expect(exported.stderr).toMatch(
      /audit: \{"action":"keys-export",.*"namespace":"orders","versions":\[1\]\}/,
    );
    expect(exported.stderr).not.toContain(body.versions[0]!.material);

    // Removing the mark from the config does not unmark it: the CLI says so, and still exports.
    await writeFile(config, JSON.stringify({ namespaces: { orders: { exportable: false } } }));
    const again = await cli(['--config', config, 'keys', 'export', '-n', 'orders', '--version', '1'], {
      env,
    });
    expect(again.code).toBe(0);
    expect(again.stderr).toContain('cannot be unmarked');
    expect(again.stdout).toContain(body.versions[0]!.material);
    expect(again.stdout).toContain('temporal-keyring / orders/v1/');
  });
});
