/** A port already in use is an ordinary mistake (two `npm start`s): a clear error with a code. */
import { createServer } from 'node:net';
import { expect, it } from 'vitest';
import { startServer } from '../../codec-server/main.ts';
import { parseServerConfig } from '../../src/config/server-config.ts';
import { keyringFixture } from '../codec/fixtures.ts';

it('refuses a port in use with ERR_INVALID_OPTION naming the port and the fix', async () => {
  const taken = createServer();
  await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r));
  const { port } = taken.address() as { port: number };
  try {
    const { keyring } = await keyringFixture(['default']);
    const pino = (await import('pino')).default;
    await expect(
      startServer({
        config: parseServerConfig({ dev: true, port }),
        keyring,
        logger: pino({ level: 'silent' }),
      }),
    ).rejects.toMatchObject({
      code: 'ERR_INVALID_OPTION',
      message: expect.stringContaining(`port: 127.0.0.1:${port} is already in use`),
    });
  } finally {
    await new Promise((r) => taken.close(r));
  }
});
