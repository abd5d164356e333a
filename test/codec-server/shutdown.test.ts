import type { PayloadCodec } from '@temporalio/common';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { startServer } from '../../codec-server/main.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { post, TEST_KEK, uiJsonPayload } from './support.ts';

describe('graceful shutdown', () => {
  it('stops accepting, lets the in-flight request finish, then closes the keyring', async () => {
    const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: TEST_KEK });
    await keyring.createNamespace('default');
    let release!: () => void;
    const gate = new Promise<void>((resolve) => {
      release = resolve;
    });
    let entered!: () => void;
    const inCodec = new Promise<void>((resolve) => {
      entered = resolve;
    });
    // A codec that holds the request until the test releases it: an in-flight request, no sleeping.
    const slow: PayloadCodec = {
      encode: async (p) => p,
      decode: async (p) => {
        entered();
        await gate;
        return p;
      },
    };
    const events: string[] = [];
    const server = await startServer({
      config: parseServerConfig({ dev: true, port: 0 }),
      keyring,
      closeKeyring: async () => {
        events.push('keyring closed');
        await keyring.close();
      },
      codecFor: () => slow,
      logger: pino({ level: 'silent' }),
    });

    const inflight = post(`${server.url}/default/decode`, { payloads: [uiJsonPayload('in flight')] });
    await inCodec;
    const closed = server.close().then(() => events.push('server closed'));
    // New connections are refused once closing started.
    await expect(fetch(`${server.url}/healthz`)).rejects.toThrow();
    expect(events).toEqual([]);

    release();
    const res = await inflight;
    expect(res.status).toBe(200);
    expect(await res.json()).toEqual({ payloads: [uiJsonPayload('in flight')] });
    await closed;
    expect(events).toEqual(['keyring closed', 'server closed']);
    await server.close(); // idempotent
  });
});
