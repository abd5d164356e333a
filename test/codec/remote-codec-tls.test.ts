/** RemoteCodec over HTTPS with a client certificate (mTLS) against the real server on loopback. */
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import pino from 'pino';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../codec-server/main.ts';
import { RemoteCodec } from '../../src/codec/remote-codec.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { RemoteCodecUnavailableError } from '../../src/errors.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { TEST_KEK } from '../codec-server/support.ts';
import { tempDirSync } from '../support/temp-dir.ts';

let dir: string;
let server: RunningServer;
const read = (f: string) => readFileSync(join(dir, f));

beforeAll(async () => {
  dir = tempDirSync('tk-remote-tls-');
  const ssl = (...args: string[]) => execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  ssl('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '2', '-subj', '/CN=ca');
  for (const [name, ext] of [
    ['server', 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'],
    ['client', 'extendedKeyUsage=clientAuth\n'],
  ] as const) {
    ssl('req', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    writeFileSync(join(dir, `${name}.ext`), ext);
    ssl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.pem`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
  await keyring.createNamespace('default');
  const config = parseServerConfig({
    dev: true,
    port: 0,
    tls: { cert: join(dir, 'server.pem'), key: join(dir, 'server.key'), clientCa: join(dir, 'ca.pem') },
  });
  server = await startServer({
    config,
    keyring,
    closeKeyring: () => keyring.close(),
    logger: pino({ level: 'silent' }),
  });
});
afterAll(async () => {
  await server?.close();
  rmSync(dir, { recursive: true, force: true });
});

it('round-trips with a client certificate; without one the handshake fails and is not retried forever', async () => {
  const codec = new RemoteCodec({
    endpoint: server.url,
    namespace: 'default',
    tls: { ca: read('ca.pem'), cert: read('client.pem'), key: read('client.key') },
  });
  const payload = { metadata: { encoding: Buffer.from('json/plain') }, data: Buffer.from('"over mTLS"') };
  const decoded = await codec.decode(await codec.encode([payload]));
  expect(Buffer.from(decoded[0]!.data!).toString()).toBe('"over mTLS"');
  codec.close();

  const sleeps: number[] = [];
  const anonymous = new RemoteCodec({
    endpoint: server.url,
    namespace: 'default',
    tls: { ca: read('ca.pem') },
    retries: 2,
    sleep: async (ms) => {
      sleeps.push(ms);
    },
  });
  await expect(anonymous.encode([payload])).rejects.toBeInstanceOf(RemoteCodecUnavailableError);
  expect(sleeps.length).toBeLessThanOrEqual(2);
  anonymous.close();
});
