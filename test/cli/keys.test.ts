import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { cli, tempDir } from './run-cli.ts';

describe('temporal-keyring keygen', { timeout: 180_000 }, () => {
  it('prints a base64 256-bit KEK, or writes a new 0600 file and never overwrites it', async () => {
    const printed = await cli(['keygen']);
    expect(printed.code).toBe(0);
    expect(printed.stdout).toMatch(/^[A-Za-z0-9+/]{43}=\n$/);
    expect(Buffer.from(printed.stdout.trim(), 'base64')).toHaveLength(32);

    const file = join(await tempDir(), 'kek');
    const written = await cli(['keygen', '--out', file]);
    expect(written.code).toBe(0);
    expect(written.stdout).toMatch(/^wrote a new KEK to .* \(KEK id [0-9a-f]{16}\)\n$/);
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    const kek = await readFile(file, 'utf8');
    expect(Buffer.from(kek.trim(), 'base64')).toHaveLength(32);
    expect(written.stdout).not.toContain(kek.trim());

    const again = await cli(['keygen', '--out', file]);
    expect(again.code).toBe(2);
    expect(again.stderr).toMatch(/--out: .* already exists; refusing to overwrite it \[ERR_INVALID_OPTION\]/);
    expect(await readFile(file, 'utf8')).toBe(kek);
  });
});

describe('temporal-keyring keys', { timeout: 180_000 }, () => {
  it('creates, rotates in two phases, changes states and lists (table and stable JSON)', async () => {
    const dir = await tempDir();
    const env = { TEMPORAL_KEYRING_KEK: generateKekBase64(), TEMPORAL_KEYRING_DATA_DIR: dir };

    const created = await cli(['keys', 'create', '--namespace', 'payments', '--json'], { env });
    expect(created.code).toBe(0);
    expect(JSON.parse(created.stdout)).toMatchObject({
      namespace: 'payments',
      version: 1,
      keyId: 'payments/v1',
      state: 'active',
    });

    const dup = await cli(['keys', 'create', '--namespace', 'payments'], { env });
    expect(dup.code).toBe(5);
    expect(dup.stderr).toContain('namespace "payments" already has keys [ERR_NAMESPACE_EXISTS]');

    const pre = await cli(['keys', 'rotate', '--namespace', 'payments', '--prepublish'], { env });
    expect(pre.code).toBe(0);
    expect(pre.stdout).toContain('prepublished payments/v2; payments/v1 stays active');

    const early = await cli(['keys', 'rotate', '-n', 'payments'], { env });
    expect(early.code).toBe(5);
    expect(early.stderr).toMatch(
      /payments\/v2 was prepublished .* ago and its namespace's propagation delay is 2 min: .* Activate it after .*, or force it \(keys rotate --force, .*\) \[ERR_INVALID_STATE_TRANSITION\]/,
    );

    const promoted = await cli(['keys', 'rotate', '-n', 'payments', '--force', '--json'], { env });
    expect(JSON.parse(promoted.stdout)).toMatchObject({
      performed: true,
      previous: { version: 1, state: 'active' },
      current: { version: 2, state: 'active' },
    });

    const deprecated = await cli(
      ['keys', 'set-state', '-n', 'payments', '--version', '1', '--state', 'deprecated'],
      { env },
    );
    expect(deprecated.stdout).toBe('payments/v1: inactive -> deprecated\n');

    const unconfirmed = await cli(
      ['keys', 'set-state', '-n', 'payments', '--version', '1', '--state', 'destroyed'],
      { env },
    );
    expect(unconfirmed.code).toBe(2);
    expect(unconfirmed.stderr).toMatch(/--yes: destroying a key version erases it for good/);

    const destroyed = await cli(
      ['keys', 'set-state', '-n', 'payments', '--version', '1', '--state', 'destroyed', '--yes'],
      { env },
    );
    expect(destroyed.code).toBe(0);
    expect(destroyed.stdout).toMatch(
      /^payments\/v1: deprecated -> destroyed\nnote: running processes .* keep decrypting with it until their next key refresh/,
    );

    const invalid = await cli(
      ['keys', 'set-state', '-n', 'payments', '--version', '1', '--state', 'inactive'],
      { env },
    );
    expect(invalid.code).toBe(5);
    expect(invalid.stderr).toMatch(
      /cannot go from destroyed to inactive \(it is final\) \[ERR_INVALID_STATE_TRANSITION\]/,
    );

    // Listing needs no KEK.
    const listed = await cli(['keys', 'list', '--json'], { env: { TEMPORAL_KEYRING_DATA_DIR: dir } });
    expect(listed.code).toBe(0);
    const json = JSON.parse(listed.stdout);
    expect(json.keys.map((k: { keyId: string; state: string }) => `${k.keyId}:${k.state}`)).toEqual([
      'payments/v1:destroyed',
      'payments/v2:active',
    ]);
    expect(Object.keys(json.keys[0])).toEqual([
      'namespace',
      'version',
      'keyId',
      'state',
      'createdAt',
      'activatedAt',
      'deactivatedAt',
      'deprecatedAt',
      'destroyedAt',
    ]);
    expect(json.keys[0].destroyedAt).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    expect(json.keys[1].deactivatedAt).toBeNull();

    const table = await cli(['--data-dir', dir, 'keys', 'list', '-n', 'payments']);
    const lines = table.stdout.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^NAMESPACE\s+VERSION\s+KEY ID\s+STATE\s+CREATED\s+ACTIVATED\s+DEACTIVATED$/);
    expect(lines[1]).toMatch(/^payments\s+1\s+payments\/v1\s+destroyed\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ/);
    expect(lines).toHaveLength(3);
  });

  it('maps every expected error to a clear message and its exit code, without a stack trace', async () => {
    const dir = await tempDir();
    const kek = generateKekBase64();
    const env = { TEMPORAL_KEYRING_KEK: kek, TEMPORAL_KEYRING_DATA_DIR: dir };
    expect((await cli(['keys', 'create', '-n', 'default'], { env })).code).toBe(0);

    const cases: { args: string[]; env: Record<string, string>; code: number; message: RegExp }[] = [
      {
        args: ['keys', 'rotate', '-n', 'default'],
        env: { TEMPORAL_KEYRING_DATA_DIR: dir },
        code: 2,
        message:
          /kek: no KEK given: set TEMPORAL_KEYRING_KEK .*temporal-keyring keygen\) \[ERR_INVALID_OPTION\]/,
      },
      {
        args: ['keys', 'rotate', '-n', 'default'],
        env: { ...env, TEMPORAL_KEYRING_KEK: generateKekBase64() },
        code: 4,
        message:
          /is not the one this keystore's keys are wrapped with now \(KEK [0-9a-f]{16}\).*\[ERR_KEK_MISMATCH\]/,
      },
      {
        args: ['keys', 'rotate', '-n', 'default'],
        env: { ...env, TEMPORAL_KEYRING_KEK: 'not-a-kek' },
        code: 4,
        message: /the KEK is not valid base64 .*\[ERR_INVALID_KEK\]/,
      },
      {
        args: ['keys', 'rotate', '-n', 'unknown'],
        env,
        code: 3,
        message:
          /namespace "unknown" has no keys \(create them with: temporal-keyring keys create --namespace unknown\)/,
      },
      {
        args: ['keys', 'list', '-n', '../etc'],
        env,
        code: 2,
        message: /may hold only letters, digits.*\[ERR_INVALID_NAMESPACE\]/,
      },
      {
        args: ['keys', 'set-state', '-n', 'default', '--version', 'two', '--state', 'inactive'],
        env,
        code: 2,
        message: /--version: must be a key version number/,
      },
      {
        args: ['keys', 'set-state', '-n', 'default', '--version', '1', '--state', 'gone'],
        env,
        code: 2,
        message: /Allowed choices are prepublished, active/,
      },
      { args: ['keys', 'frobnicate'], env, code: 2, message: /unknown command 'frobnicate'/ },
      {
        args: ['keys', 'list', '--data-dir', join(dir, 'typo')],
        env: {},
        code: 6,
        message:
          /no keystore in .*typo \(from flag --data-dir\); create one with: .*\[ERR_KEYSTORE_UNAVAILABLE\]/,
      },
    ];
    const results = await Promise.all(cases.map((c) => cli(c.args, { env: c.env })));
    results.forEach((result, i) => {
      const c = cases[i]!;
      expect({ args: c.args, code: result.code }).toEqual({ args: c.args, code: c.code });
      expect(result.stderr).toMatch(c.message);
      expect(result.stderr).not.toMatch(/\n\s+at /);
      expect(result.stderr).not.toContain(kek);
    });
  });
});
