import { createHash } from 'node:crypto';
import { chmodSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { listening, payload, postJson, runCli, spawnCli } from './support.ts';

const TOKEN = 'sealed-pg-admin-token-0123456789';
let pg: TestPostgres | undefined;
beforeAll(async () => {
  pg = await startPostgres();
});
afterAll(async () => {
  await pg?.stop();
});

describe('sealed replicas on one PostgreSQL keystore (real processes)', { timeout: 240_000 }, () => {
  const dir = tempDirSync('tk-sealed-pg-');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('unseals and seals each replica on its own', async () => {
    const url = await pg!.newDatabase('sealed');
    const init = await runCli([
      '--keystore',
      url,
      'operator',
      'init',
      '--key-shares',
      '3',
      '--key-threshold',
      '2',
      '--json',
    ]);
    expect(init.code, init.output).toBe(0);
    const shares = (JSON.parse(init.output) as { unsealKeys: string[] }).unsealKeys;
    const other = await runCli([
      '--data-dir',
      join(dir, 'other'),
      'operator',
      'init',
      '--key-shares',
      '2',
      '--key-threshold',
      '2',
      '--json',
    ]);
    const foreign = (JSON.parse(other.output) as { unsealKeys: string[] }).unsealKeys[1];
    const file = join(dir, 'shares');
    writeFileSync(file, `${shares[0]}\n${shares[1]}\n`);
    chmodSync(file, 0o600);
    const created = await runCli([
      '--keystore',
      url,
      '--unseal-keys-file',
      file,
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
        keystore: url,
        server: {
          auth: {
            tokens: [
              {
                name: 'ops',
                sha256: createHash('sha256').update(TOKEN).digest('hex'),
                namespaces: ['*'],
                operations: ['admin', 'encode', 'decode'],
              },
            ],
          },
        },
      }),
    );
    const replicas = [0, 1].map(() => spawnCli(['--config', config, 'serve', '--port', '0', '--no-rotator']));
    try {
      const [a, b] = await Promise.all(replicas.map(listening));
      const as = { authorization: `Bearer ${TOKEN}`, 'x-namespace': 'orders' };
      const encodeOn = (u: string) => postJson(`${u}/encode`, { payloads: [payload({ n: 1 })] }, as);

      expect((await postJson(`${a}/admin/unseal`, { key: shares[2] })).body).toMatchObject({
        sealed: true,
        progress: 1,
      });
      expect((await postJson(`${a}/admin/unseal`, { key: shares[0] })).body).toMatchObject({ sealed: false });
      const encoded = await encodeOn(a!);
      expect(encoded.status).toBe(200);
      // Replica b is still sealed: unsealing a does not unseal it.
      expect((await encodeOn(b!)).body.code).toBe('ERR_SEALED');
      expect((await postJson(`${b}/admin/unseal`, { key: foreign })).body.code).toBe(
        'ERR_UNSEAL_SHARE_FOREIGN',
      );
      await postJson(`${b}/admin/unseal`, { key: shares[1] });
      expect((await postJson(`${b}/admin/unseal`, { key: shares[2] })).body).toMatchObject({ sealed: false });
      // Sealing a does not seal b.
      expect(
        (await postJson(`${a}/admin/seal`, {}, { authorization: `Bearer ${TOKEN}` })).body,
      ).toMatchObject({
        sealed: true,
      });
      expect((await postJson(`${a}/decode`, encoded.body, as)).body.code).toBe('ERR_SEALED');
      expect((await postJson(`${b}/decode`, encoded.body, as)).status).toBe(200);
    } finally {
      for (const r of replicas) r.child.kill('SIGTERM');
      await Promise.all(replicas.map((r) => r.exited));
    }
  });
});
