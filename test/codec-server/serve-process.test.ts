import { rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { type CliProcess, listening, spawnCli } from '../support/cli-process.ts';
import { tempDirSync } from '../support/temp-dir.ts';
import { post, uiJsonPayload } from './support.ts';

type Proc = CliProcess;

/** Runs `temporal-keyring <args>` as a real process (bounded: killed after 60 s at the latest). */
const runCli = (args: string[], env: NodeJS.ProcessEnv = {}): Proc =>
  spawnCli(args, { env, killAfterMs: 60_000 });

describe('temporal-keyring serve (real process)', () => {
  const dir = tempDirSync('tk-serve-');
  const dataDir = join(dir, 'data');
  afterAll(() => rmSync(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('runs dev mode: generated KEK beside the data dir, loud warnings, namespaces on first use, clean SIGTERM', async () => {
    const first = runCli(['--data-dir', dataDir, 'serve', '--dev', '--port', '0']);
    const url = await listening(first);
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const kekFile = join(dir, 'data-dev.kek');
    expect(statSync(kekFile).mode & 0o777).toBe(0o600);
    expect(first.lines.some((l) => l.includes('NO AUTHENTICATION'))).toBe(true);
    expect(first.lines.some((l) => l.includes('DEV MODE: using a generated KEK'))).toBe(true);
    expect(first.lines.some((l) => l.includes('DEV MODE: creating a new keystore directory'))).toBe(true);

    // As the CLI calls it with --codec-endpoint 'http://127.0.0.1:PORT/{namespace}'.
    const enc = await post(
      `${url}/orders/encode`,
      { payloads: [uiJsonPayload({ id: 7 })] },
      { 'X-Namespace': 'orders' },
    );
    expect(enc.status).toBe(200);
    const encoded = await enc.json();

    first.child.kill('SIGTERM');
    expect(await first.exited).toBe(0);
    expect(first.lines.some((l) => l.includes('codec server stopped'))).toBe(true);

    // A restart reuses the KEK file and the keystore: yesterday's payloads still decode.
    const second = runCli(['--data-dir', dataDir, 'serve', '--dev', '--port', '0']);
    const url2 = await listening(second);
    const dec = await post(`${url2}/decode`, encoded, { 'X-Namespace': 'orders' });
    expect(await dec.json()).toEqual({ payloads: [uiJsonPayload({ id: 7 })] });
    second.child.kill('SIGINT');
    expect(await second.exited).toBe(0);
  });

  it('refuses to start outside dev mode without authentication, naming the field', async () => {
    const proc = runCli(['--data-dir', dataDir, 'serve', '--port', '0'], {
      TEMPORAL_KEYRING_KEK: Buffer.alloc(32, 1).toString('base64'),
    });
    expect(await proc.exited).not.toBe(0);
    expect(proc.lines.join('\n')).toContain('server.auth: at least one method');
  });
});
