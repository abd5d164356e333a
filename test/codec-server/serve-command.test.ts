import { existsSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { runServe, serverConfigInput } from '../../codec-server/serve-command.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { tempDirSync } from '../support/temp-dir.ts';

const KEK = Buffer.alloc(32, 3).toString('base64');
const TOKENS = [{ name: 'ci', sha256: 'a'.repeat(64), namespaces: ['*'], operations: ['decode'] }];

describe('serve: start-up refusals', () => {
  const dir = tempDirSync('tk-serve-cmd-');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('refuses a file keystore directory that does not exist, naming keys create, and creates nothing', async () => {
    const missing = join(dir, 'typo');
    const config = join(dir, 'codec.json');
    writeFileSync(config, JSON.stringify({ server: { port: 0, auth: { tokens: TOKENS } } }));
    const started = runServe({ config, dataDir: missing }, { TEMPORAL_KEYRING_KEK: KEK }, dir);
    await expect(started).rejects.toMatchObject({
      code: 'ERR_KEYSTORE_UNAVAILABLE',
      message: expect.stringMatching(/no keystore in .*keys create/),
    });
    expect(existsSync(missing)).toBe(false);
  });

  it('refuses dev mode beyond loopback unless --dev-allow-remote says so', async () => {
    expect(() => parseServerConfig({ dev: true, host: '0.0.0.0' })).toThrow(
      /server\.host: dev mode listens on loopback only .*--dev-allow-remote/,
    );
    expect(() => parseServerConfig({ dev: true, host: '::' })).toThrow(/--dev-allow-remote/);
    for (const host of ['127.0.0.1', 'localhost', '::1', '127.0.0.2']) {
      expect(parseServerConfig({ dev: true, host }).host).toBe(host);
    }
    expect(parseServerConfig({ dev: true, host: '0.0.0.0', devAllowRemote: true }).devAllowRemote).toBe(true);
    // Dev mode relaxes more than authentication (generated KEK, namespaces on first use): the flag
    // is needed whatever the auth.
    expect(() => parseServerConfig({ dev: true, host: '0.0.0.0', auth: { tokens: TOKENS } })).toThrow(
      /--dev-allow-remote/,
    );
    expect(serverConfigInput({ dev: true, host: '0.0.0.0', devAllowRemote: true }, {}, {})).toMatchObject({
      devAllowRemote: true,
    });
    expect(serverConfigInput({}, { TEMPORAL_KEYRING_DEV_ALLOW_REMOTE: 'true' }, {})).toMatchObject({
      devAllowRemote: true,
    });
    await expect(
      runServe({ dataDir: join(dir, 'dev'), dev: true, host: '0.0.0.0', port: '0' }, {}, dir),
    ).rejects.toThrow(/--dev-allow-remote/);
    expect(existsSync(join(dir, 'dev'))).toBe(false);
  });
});

describe('config files with a production host', () => {
  it('parse (config show, keys commands) without tripping the dev-mode loopback rule', async () => {
    const { parseConfig } = await import('../../src/config/load-config.ts');
    expect(() => parseConfig({ server: { host: '0.0.0.0', auth: { tokens: TOKENS } } })).not.toThrow();
    expect(() => parseConfig({ server: { host: '0.0.0.0' } })).not.toThrow();
  });
});
