import { createHash } from 'node:crypto';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDirSync } from '../support/temp-dir.ts';
import { listening, payload, postJson, runCli, spawnCli } from './support.ts';

const ADMIN_TOKEN = 'sealed-test-admin-token-0123456789';
const ORIGIN = 'https://ui.example.com';

describe('a sealed codec server (real processes, file keystore)', () => {
  const dir = tempDirSync('tk-sealed-');
  const dataDir = join(dir, 'data');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('starts sealed, refuses codec traffic, is unsealed by 3 of 5 shares over HTTP and the CLI, and seals again', async () => {
    const init = await runCli([
      '--data-dir',
      dataDir,
      'operator',
      'init',
      '--key-shares',
      '5',
      '--key-threshold',
      '3',
      '--json',
    ]);
    expect(init.code).toBe(0);
    const { unsealKeys: shares, keystoreId } = JSON.parse(init.output) as {
      unsealKeys: string[];
      keystoreId: string;
    };
    expect(shares).toHaveLength(5);
    const other = await runCli([
      '--data-dir',
      join(dir, 'other'),
      'operator',
      'init',
      '--key-shares',
      '3',
      '--key-threshold',
      '2',
      '--json',
    ]);
    const foreign = (JSON.parse(other.output) as { unsealKeys: string[] }).unsealKeys[0]!;

    // The CLI opens the sealed keystore with a threshold of shares from an owner-only file.
    const sharesFile = join(dir, 'three-shares');
    writeFileSync(sharesFile, `${shares.slice(2).join('\n')}\n`);
    chmodSync(sharesFile, 0o600);
    const created = await runCli([
      '--data-dir',
      dataDir,
      '--unseal-keys-file',
      sharesFile,
      'keys',
      'create',
      '--namespace',
      'orders',
    ]);
    expect(created.code, created.output).toBe(0);

    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        keystore: dataDir,
        server: {
          cors: { origins: [ORIGIN] },
          auth: {
            tokens: [
              {
                name: 'ops',
                sha256: createHash('sha256').update(ADMIN_TOKEN).digest('hex'),
                namespaces: ['*'],
                operations: ['admin', 'encode', 'decode'],
              },
            ],
          },
        },
      }),
    );
    const server = spawnCli(['--config', config, 'serve', '--port', '0', '--no-rotator']);
    try {
      const url = await listening(server);
      const auth = { authorization: `Bearer ${ADMIN_TOKEN}`, 'x-namespace': 'orders', origin: ORIGIN };
      expect((await fetch(`${url}/healthz`)).status).toBe(200);
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(503);
      expect(((await ready.json()) as { code: string }).code).toBe('ERR_SEALED');
      const refused = await postJson(`${url}/encode`, { payloads: [payload({ n: 1 })] }, auth);
      expect(refused.status).toBe(503);
      expect(refused.body.code).toBe('ERR_SEALED');
      expect(refused.headers.get('access-control-allow-origin')).toBe(ORIGIN);
      const admin = await fetch(`${url}/admin/namespaces/orders/keys`, { headers: auth });
      expect(admin.status).toBe(503);

      const status = await (await fetch(`${url}/admin/seal-status`)).json();
      expect(status).toMatchObject({ sealed: true, t: 3, n: 5, progress: 0, keystoreId });

      const unseal = (body: unknown) => postJson(`${url}/admin/unseal`, body);
      expect((await unseal({ key: foreign })).body.code).toBe('ERR_UNSEAL_SHARE_FOREIGN');
      expect((await unseal({ key: 'tks1-nonsense' })).body.code).toBe('ERR_UNSEAL_SHARE_MALFORMED');
      expect((await unseal({ key: shares[0] })).body).toMatchObject({
        sealed: true,
        t: 3,
        n: 5,
        progress: 1,
      });
      const duplicate = await unseal({ key: shares[0] });
      expect([duplicate.status, duplicate.body.code]).toEqual([400, 'ERR_UNSEAL_SHARE_DUPLICATE']);
      expect((await unseal({ reset: true })).body).toMatchObject({ sealed: true, progress: 0 });
      expect((await unseal({ key: shares[3] })).body).toMatchObject({ progress: 1 });
      expect((await unseal({ key: shares[1] })).body).toMatchObject({ progress: 2 });

      // The third share through the CLI, on stdin.
      const cliUnseal = await runCli(['operator', 'unseal', '--url', url, '--json'], {}, `${shares[4]}\n`);
      expect(cliUnseal.code, cliUnseal.output).toBe(0);
      expect(JSON.parse(cliUnseal.output)).toMatchObject({ sealed: false, t: 3, n: 5 });
      expect((await fetch(`${url}/readyz`)).status).toBe(200);

      const encoded = await postJson(`${url}/encode`, { payloads: [payload({ n: 1 })] }, auth);
      expect(encoded.status).toBe(200);
      const decoded = await postJson(`${url}/decode`, encoded.body, auth);
      expect(decoded.status).toBe(200);

      const cliStatus = await runCli(['operator', 'seal-status', '--url', url, '--json']);
      expect(JSON.parse(cliStatus.output)).toMatchObject({ sealed: false });

      expect((await postJson(`${url}/admin/seal`, {})).status).toBe(401);
      const sealCli = await runCli(['operator', 'seal', '--url', url, '--json'], {
        TEMPORAL_KEYRING_ADMIN_TOKEN: ADMIN_TOKEN,
      });
      expect(sealCli.code, sealCli.output).toBe(0);
      expect(JSON.parse(sealCli.output)).toMatchObject({ sealed: true, progress: 0 });
      const again = await postJson(`${url}/decode`, encoded.body, auth);
      expect([again.status, again.body.code]).toEqual([503, 'ERR_SEALED']);

      // Every attempt is audited, and no share ever reaches the logs.
      const log = server.lines.join('\n');
      expect(log.match(/"action":"unseal"/g)?.length).toBeGreaterThanOrEqual(6);
      for (const s of [...shares, foreign]) expect(log).not.toContain(s.split('-')[2]);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
