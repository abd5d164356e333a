import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import pino from 'pino';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type RunningServer, startServer } from '../../codec-server/main.ts';
import { parseServerConfig, type ServerConfigInput } from '../../src/config/server-config.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { TEST_KEK } from './support.ts';

/**
 * Slow and idle clients on real loopback sockets, with small configured timeouts: each connection
 * must be closed by the server. Every wait is bounded by `BOUND_MS`; the only waiting is for the
 * server's own (small) deadlines.
 */
const BOUND_MS = 8_000;
const SMALL = { headersMs: 300, requestMs: 600, keepAliveMs: 200, handshakeMs: 300, checkIntervalMs: 50 };

async function serve(input: ServerConfigInput): Promise<RunningServer> {
  const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
  await keyring.createNamespace('default');
  return startServer({
    config: parseServerConfig({ dev: true, port: 0, ...input }),
    keyring,
    closeKeyring: () => keyring.close(),
    logger: pino({ level: 'silent' }),
  });
}

/** Resolves with what the server sent once it closes the connection; rejects after BOUND_MS. */
function closedByServer(socket: net.Socket | tls.TLSSocket): Promise<string> {
  return new Promise((resolve, reject) => {
    let received = '';
    const bound = setTimeout(() => {
      socket.destroy();
      reject(new Error(`the server kept the connection open for ${BOUND_MS} ms`));
    }, BOUND_MS);
    socket.on('data', (chunk: Buffer) => {
      received += chunk.toString('latin1');
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(bound);
      resolve(received);
    });
  });
}

function portOf(server: RunningServer): number {
  return Number(new URL(server.url).port);
}

function connect(server: RunningServer): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(portOf(server), '127.0.0.1', () => resolve(socket));
    socket.once('error', reject);
  });
}

describe('timeouts on plain HTTP', () => {
  let server: RunningServer;
  beforeAll(async () => {
    server = await serve({ timeouts: SMALL });
  });
  afterAll(() => server?.close());

  it('closes a connection that never sends anything (headers timeout, 408)', async () => {
    const socket = await connect(server);
    expect(await closedByServer(socket)).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection whose headers never finish', async () => {
    const socket = await connect(server);
    socket.write('POST /default/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n');
    expect(await closedByServer(socket)).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes a connection whose body never finishes (request timeout)', async () => {
    const socket = await connect(server);
    socket.write(
      'POST /default/decode HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"payl',
    );
    expect(await closedByServer(socket)).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes an idle keep-alive connection after an answer', async () => {
    const socket = await connect(server);
    socket.write('GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    expect(await closedByServer(socket)).toMatch(/^HTTP\/1\.1 200/);
  });
});

describe('TLS: timeouts and cipher suites', () => {
  let dir: string;
  let cert: string;
  let key: string;
  beforeAll(() => {
    dir = tempDirSync('tk-tls-hard-');
    cert = join(dir, 'server.pem');
    key = join(dir, 'server.key');
    // RSA, so that RSA key exchange suites (AES128-SHA) would be possible at all.
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-keyout',
        key,
        '-out',
        cert,
        '-days',
        '2',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
      ],
      { stdio: 'pipe' },
    );
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  function handshake(server: RunningServer, options: tls.ConnectionOptions): Promise<tls.TLSSocket> {
    return new Promise((resolve, reject) => {
      const socket = tls.connect({
        port: portOf(server),
        host: '127.0.0.1',
        ca: readFileSync(cert),
        ...options,
      });
      socket.once('secureConnect', () => resolve(socket));
      socket.once('error', reject);
    });
  }

  it('refuses AES128-SHA (RSA key exchange, CBC, SHA-1) by default, accepts ECDHE + GCM and TLS 1.3', async () => {
    const server = await serve({ tls: { cert, key } });
    try {
      await expect(handshake(server, { ciphers: 'AES128-SHA', maxVersion: 'TLSv1.2' })).rejects.toThrow();
      await expect(
        handshake(server, { ciphers: 'AES256-GCM-SHA384', maxVersion: 'TLSv1.2' }),
      ).rejects.toThrow();
      const tls12 = await handshake(server, { maxVersion: 'TLSv1.2' });
      expect(tls12.getCipher().name).toMatch(/^ECDHE-RSA-(AES(128|256)-GCM|CHACHA20-POLY1305)/);
      tls12.destroy();
      const tls13 = await handshake(server, {});
      expect(tls13.getProtocol()).toBe('TLSv1.3');
      tls13.destroy();
    } finally {
      await server.close();
    }
  });

  it('takes tls.ciphers and tls.minVersion from the config', async () => {
    const server = await serve({ tls: { cert, key, ciphers: 'AES128-SHA', minVersion: 'TLSv1.2' } });
    try {
      const legacy = await handshake(server, { ciphers: 'AES128-SHA', maxVersion: 'TLSv1.2' });
      expect(legacy.getCipher().name).toBe('AES128-SHA');
      legacy.destroy();
    } finally {
      await server.close();
    }
    const only13 = await serve({ tls: { cert, key, minVersion: 'TLSv1.3' } });
    try {
      await expect(handshake(only13, { maxVersion: 'TLSv1.2' })).rejects.toThrow();
    } finally {
      await only13.close();
    }
  });

  it('closes a TCP connection that never starts the handshake (handshake timeout)', async () => {
    const server = await serve({ tls: { cert, key }, timeouts: SMALL });
    try {
      const socket = await connect(server);
      await closedByServer(socket);
    } finally {
      await server.close();
    }
  });

  it('closes a TLS connection left idle after the handshake', async () => {
    const server = await serve({ tls: { cert, key }, timeouts: SMALL });
    try {
      const socket = await handshake(server, {});
      expect(await closedByServer(socket)).toMatch(/^HTTP\/1\.1 408/);
    } finally {
      await server.close();
    }
  });
});
