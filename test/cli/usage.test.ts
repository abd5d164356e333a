/**
 * Ordinary mistakes get a message that names the cause and the fix, with a stable code: a
 * misspelled flag ("did you mean"), a config file's unknown key (file, line, nearest key) or bad
 * JSON (line and column), an output file in a missing directory, a retired environment variable.
 * Subcommand help shows the global options and marks required ones.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { tempDir } from '../support/temp-dir.ts';
import { cli } from './run-cli.ts';

describe('usage errors name the cause', () => {
  it('suggests the flag a misspelled required option meant', async () => {
    const r = await cli(['keys', 'create', '--namesapce', 'default']);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("unknown option '--namesapce'");
    expect(r.stderr).toContain('(Did you mean --namespace?)');
    expect(r.stderr).not.toContain('required option');
  }, 60_000);

  it('shows the global options in a subcommand’s help and marks required options', async () => {
    const r = await cli(['keys', 'create', '--help']);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/-n, --namespace <namespace>\s+Temporal namespace \(required\)/);
    expect(r.stdout).toContain('Global Options:');
    expect(r.stdout).toContain('--kek-file <file>');
  }, 60_000);

  it('names the config file, the line and the nearest valid key', async () => {
    const dir = await tempDir('tk-usage-');
    const file = join(dir, 'keyring.json');
    await writeFile(
      file,
      '{\n  "keystore": "./keys",\n  "namespaces": {\n    "payments": { "rotaton": {} }\n  }\n}\n',
    );
    const r = await cli(['--config', file, 'config', 'show']);
    expect(r.code).toBe(2);
    expect(r.stderr).toBe(
      `temporal-keyring: namespaces.payments.rotaton: is not a known key (did you mean "rotation"?) (in ${file}, line 4) [ERR_INVALID_OPTION]\n`,
    );
    await writeFile(file, '{\n  "keystore": "./keys",\n  "namespaces": {,\n}\n');
    const bad = await cli(['--config', file, 'config', 'show']);
    expect(bad.stderr).toContain(`config: ${file} is not valid JSON (line 3, column 18)`);
  }, 60_000);

  it('refuses an --svg path in a missing directory before doing anything', async () => {
    const dir = await tempDir('tk-usage-');
    await mkdir(join(dir, 'keys'));
    const r = await cli(['keys', 'status', '-n', 'default', '--svg', join(dir, 'nope', 'chart.svg')], {
      env: { TEMPORAL_KEYRING_KEYSTORE: join(dir, 'keys') },
    });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      `--svg: cannot write ${join(dir, 'nope', 'chart.svg')}: the directory ${join(dir, 'nope')} does not exist`,
    );
  }, 60_000);

  it('refuses a retired environment variable, naming the one to use', async () => {
    const r = await cli(['config', 'show'], { env: { TEMPORAL_KEYRING_DATA_DIR: '/somewhere' } });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(
      'TEMPORAL_KEYRING_DATA_DIR: is not read by temporal-keyring: set TEMPORAL_KEYRING_KEYSTORE',
    );
  }, 60_000);
});
