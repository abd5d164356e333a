import { createHash } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { post, startTestServer, TEST_KEK, uiJsonPayload } from './support.ts';

/**
 * Server file-system paths stay in the server's log: error bodies and the unauthenticated `/readyz`
 * carry the code and a path-free message (a corrupt keystore file names itself and its directory).
 */
describe('no server paths in answers', () => {
  const root = tempDirSync('tk-paths-');
  afterAll(() => rmSync(root, { recursive: true, force: true, maxRetries: 5 }));

  async function corruptStore(name: string) {
    const dir = join(root, name);
    const keystore = await FileKeystore.open({ dir });
    const keyring = await Keyring.open({ keystore, kek: TEST_KEK });
    await keyring.createNamespace('orders');
    await keyring.close();
    return { dir, keystore };
  }

  it('a corrupt namespace file: 500 ERR_KEYSTORE_CORRUPT, no path in the body, the path in the log', async () => {
    const { dir, keystore } = await corruptStore('ns');
    writeFileSync(join(dir, 'namespaces', 'orders', 'versions.json'), '{"truncated":');
    const server = await startTestServer({ auth: { tokens: [TOKEN_CONFIG] } }, { keystore, namespaces: [] });
    try {
      const res = await post(`${server.url}/orders/encode`, { payloads: [uiJsonPayload(1)] }, AUTH);
      expect(res.status).toBe(500);
      const text = await res.text();
      const body = JSON.parse(text);
      expect(body.code).toBe('ERR_KEYSTORE_CORRUPT');
      expect(text).not.toContain(root);
      expect(text).not.toContain('versions.json');
      expect(text).not.toContain('namespaces/');
      expect(server.rawLogs()).toContain(join(dir));
      expect(server.rawLogs()).toContain('versions.json');
    } finally {
      await server.close();
    }
  });

  it('a corrupt KEK record: /readyz answers 503 with the code, no path; the log has it', async () => {
    const { dir, keystore } = await corruptStore('kek');
    const server = await startTestServer({ dev: true }, { keystore, namespaces: [] });
    try {
      expect((await fetch(`${server.url}/readyz`)).status).toBe(200);
      writeFileSync(join(dir, 'kek.json'), 'not json');
      const res = await fetch(`${server.url}/readyz`);
      expect(res.status).toBe(503);
      const text = await res.text();
      expect(JSON.parse(text)).toMatchObject({ status: 'not ready', code: 'ERR_KEYSTORE_CORRUPT' });
      expect(text).not.toContain(root);
      expect(text).not.toContain('kek.json');
      expect(server.rawLogs()).toContain(dir);
    } finally {
      await server.close();
    }
  });
});

const TOKEN = 'tkr_paths_test_token';
const AUTH = { authorization: `Bearer ${TOKEN}` };
const TOKEN_CONFIG = {
  name: 'ci',
  sha256: createHash('sha256').update(TOKEN).digest('hex'),
  namespaces: ['*'],
  operations: ['encode' as const, 'decode' as const],
};
