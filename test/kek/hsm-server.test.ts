import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { rename } from 'node:fs/promises';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDirSync } from '../support/temp-dir.ts';
import { SOFTHSM_MODULE, type SoftHsm, startSoftHsm } from './softhsm.ts';
import { listening, payload, postJson, runCli, spawnCli } from './support.ts';

const TOKEN = 'hsm-server-test-token-0123456789';

describe('a codec server with its KEK in an HSM (real processes, SoftHSM2)', () => {
  const dir = tempDirSync('tk-hsm-server-');
  let hsm: SoftHsm;
  beforeAll(async () => {
    hsm = await startSoftHsm();
  });
  afterAll(async () => {
    rmSync(dir, { recursive: true, force: true, maxRetries: 5 });
    await hsm?.cleanup();
  });

  it('starts unsealed, encodes and decodes, survives the token going away and recovers by itself', async () => {
    const env = { SOFTHSM2_CONF: hsm.conf, HSM_PIN: hsm.pin };
    const flags = [
      '--pkcs11-module',
      SOFTHSM_MODULE,
      '--pkcs11-token',
      hsm.token,
      '--pkcs11-key',
      'kek-1',
      '--pkcs11-pin-env',
      'HSM_PIN',
    ];
    const dataDir = join(dir, 'data');
    const created = await runCli([...flags, 'kek', 'create'], env);
    expect(created.code, created.output).toBe(0);
    expect(created.output).toMatch(
      /created KEK [0-9a-f]{16}: AES-256 key "kek-1" .* non-extractable and sensitive/,
    );
    for (const ns of ['a', 'b']) {
      const made = await runCli(['--data-dir', dataDir, ...flags, 'keys', 'create', '--namespace', ns], env);
      expect(made.code, made.output).toBe(0);
    }
    const wrongPin = await runCli(['--data-dir', dataDir, ...flags, 'keys', 'rotate', '--namespace', 'a'], {
      ...env,
      HSM_PIN: 'not-the-pin',
    });
    expect(wrongPin.code).toBe(4);
    expect(wrongPin.output).toMatch(/^temporal-keyring: the PIN for PKCS#11 token .* \[ERR_PKCS11_PIN\]$/);

    const config = join(dir, 'config.json');
    writeFileSync(
      config,
      JSON.stringify({
        keystore: dataDir,
        kek: { pkcs11: { module: SOFTHSM_MODULE, token: hsm.token, key: 'kek-1', pinEnv: 'HSM_PIN' } },
        server: {
          auth: {
            tokens: [
              {
                name: 'app',
                sha256: createHash('sha256').update(TOKEN).digest('hex'),
                namespaces: ['*'],
                operations: ['encode', 'decode'],
              },
            ],
          },
        },
      }),
    );
    const server = spawnCli(['--config', config, 'serve', '--port', '0', '--no-rotator'], env);
    try {
      const url = await listening(server);
      const as = (ns: string) => ({ authorization: `Bearer ${TOKEN}`, 'x-namespace': ns });
      const ready = await fetch(`${url}/readyz`);
      expect(ready.status).toBe(200);
      expect(await ready.json()).toMatchObject({ status: 'ready', kek: 'pkcs11' });
      const encodedA = await postJson(`${url}/encode`, { payloads: [payload({ a: 1 })] }, as('a'));
      expect(encodedA.status).toBe(200);

      await rename(hsm.tokenDir, `${hsm.tokenDir}.away`);
      try {
        const notReady = await fetch(`${url}/readyz`);
        expect(notReady.status).toBe(503);
        expect(((await notReady.json()) as { code: string }).code).toBe('ERR_KEK_UNAVAILABLE');
        // The key of namespace a is unwrapped already: it keeps serving.
        expect((await postJson(`${url}/decode`, encodedA.body, as('a'))).status).toBe(200);
        // Namespace b's key needs the token: 503 with a stable code, and the server stays up.
        const b = await postJson(`${url}/encode`, { payloads: [payload({ b: 1 })] }, as('b'));
        expect([b.status, b.body.code]).toEqual([503, 'ERR_KEK_UNAVAILABLE']);
      } finally {
        await rename(`${hsm.tokenDir}.away`, hsm.tokenDir);
      }
      expect((await fetch(`${url}/readyz`)).status).toBe(200);
      const encodedB = await postJson(`${url}/encode`, { payloads: [payload({ b: 2 })] }, as('b'));
      expect(encodedB.status).toBe(200);
      expect((await postJson(`${url}/decode`, encodedB.body, as('b'))).status).toBe(200);
      expect(server.lines.join('\n')).not.toContain(hsm.pin);
    } finally {
      server.child.kill('SIGTERM');
      await server.exited;
    }
  });
});
