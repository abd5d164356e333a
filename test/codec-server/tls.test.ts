import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../codec-server/main.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { b64, TEST_KEK, uiJsonPayload } from './support.ts';

/** A CA, a server certificate for 127.0.0.1/localhost, a client certificate, and a rogue client one. */
function makePki(dir: string) {
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ca = (name: string) => {
    ssl(
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-subj',
      `/CN=${name}`,
    );
  };
  const leaf = (name: string, caName: string, ext: string) => {
    ssl(
      'req',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      `${name}.key`,
      '-out',
      `${name}.csr`,
      '-subj',
      `/CN=${name}`,
    );
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      `${caName}.pem`,
      '-CAkey',
      `${caName}.key`,
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  };
  ca('ca');
  ca('rogue-ca');
  leaf('server', 'ca', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n');
  leaf('client', 'ca', 'extendedKeyUsage=clientAuth\n');
  leaf('rogue', 'rogue-ca', 'extendedKeyUsage=clientAuth\n');
  const read = (f: string) => readFileSync(join(dir, f));
  return {
    dir,
    ca: read('ca.pem'),
    client: { cert: read('client.pem'), key: read('client.key') },
    rogue: { cert: read('rogue.pem'), key: read('rogue.key') },
  };
}

function request(
  url: string,
  options: https.RequestOptions & { body?: string },
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { agent: false, ...options }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => {
        body += c;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end(options.body);
  });
}

async function serve(tls: { cert: string; key: string; clientCa?: string }): Promise<RunningServer> {
  const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
  await keyring.createNamespace('default');
  const config = parseServerConfig({ dev: true, port: 0, tls });
  return startServer({
    config,
    keyring,
    closeKeyring: () => keyring.close(),
    logger: pino({ level: 'silent' }),
  });
}

describe('TLS and mutual TLS on real sockets', () => {
  let pki: ReturnType<typeof makePki>;
  beforeAll(() => {
    pki = makePki(tempDirSync('tk-tls-'));
  });
  afterAll(() => rmSync(pki.dir, { recursive: true, force: true, maxRetries: 5 }));

  it('serves HTTPS with the configured certificate, TLS 1.2 minimum', async () => {
    const server = await serve({ cert: join(pki.dir, 'server.pem'), key: join(pki.dir, 'server.key') });
    try {
      expect(server.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
      const ok = await request(`${server.url}/healthz`, { ca: pki.ca });
      expect(ok).toEqual({ status: 200, body: '{"status":"ok"}' });
      const enc = await request(`${server.url}/default/encode`, {
        ca: pki.ca,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ payloads: [uiJsonPayload('over tls')] }),
      });
      expect(enc.status).toBe(200);
      // An untrusted server certificate is refused by the client; TLS 1.1 is refused by the server.
      await expect(request(`${server.url}/healthz`, {})).rejects.toThrow();
      await expect(
        request(`${server.url}/healthz`, { ca: pki.ca, maxVersion: 'TLSv1.1', minVersion: 'TLSv1' }),
      ).rejects.toThrow();
    } finally {
      await server.close();
    }
  });

  it('requires a client certificate signed by the client CA with mTLS', async () => {
    const server = await serve({
      cert: join(pki.dir, 'server.pem'),
      key: join(pki.dir, 'server.key'),
      clientCa: join(pki.dir, 'ca.pem'),
    });
    try {
      const ok = await request(`${server.url}/default/decode`, {
        ca: pki.ca,
        ...pki.client,
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ payloads: [{ metadata: { encoding: b64('binary/null') } }] }),
      });
      expect(ok.status).toBe(200);
      await expect(request(`${server.url}/healthz`, { ca: pki.ca })).rejects.toThrow();
      await expect(request(`${server.url}/healthz`, { ca: pki.ca, ...pki.rogue })).rejects.toThrow();
    } finally {
      await server.close();
    }
  });

  it('names the field when a certificate file cannot be read', async () => {
    await expect(
      serve({ cert: join(pki.dir, 'missing.pem'), key: join(pki.dir, 'server.key') }),
    ).rejects.toThrow(/server\.tls\.cert: cannot read/);
  });
});
