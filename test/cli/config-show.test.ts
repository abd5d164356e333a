import { describe, expect, it } from 'vitest';
import { describeKeystoreLocation } from '../../src/keystore/keystore-location.ts';
import { cli } from './run-cli.ts';

/** `config show` never prints a database password, wherever the connection string carries it. */
describe('config show masks PostgreSQL passwords', { timeout: 120_000 }, () => {
  const url =
    'postgres://codec:userinfo-secret@db.internal:5432/keys?sslmode=verify-full&password=query-secret&SSLPassword=ssl-secret&PASSWORD=upper-secret';
  const secrets = ['userinfo-secret', 'query-secret', 'ssl-secret', 'upper-secret'];

  it('in the user:password@ form and in the query string, in any case', () => {
    const shown = describeKeystoreLocation({ kind: 'postgres', connectionString: url });
    for (const secret of secrets) expect(shown).not.toContain(secret);
    expect(shown).toContain('sslmode=verify-full');
    expect(shown).toContain('db.internal:5432/keys');
  });

  it('in the text and JSON output of the real command', async () => {
    for (const args of [
      ['config', 'show'],
      ['config', 'show', '--json'],
    ]) {
      const result = await cli(['--keystore', url, ...args]);
      expect(result.code).toBe(0);
      expect(result.stdout).toContain('db.internal');
      for (const secret of secrets) expect(result.stdout + result.stderr).not.toContain(secret);
    }
  });
});
