/**
 * `keys status` and `rotator --once` as a user runs them: the real CLI in a child process over a
 * file keystore in a temporary directory.
 */
import { execFile } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';

const MAIN = fileURLToPath(new URL('../../cli/main.ts', import.meta.url));
const run = promisify(execFile);

let dir: string;
let kek: string;

beforeAll(async () => {
  dir = await tempDir('tk-rotation-cli-');
  kek = generateKekBase64();
  const keystore = await FileKeystore.open({ dir: join(dir, 'store') });
  const keyring = await Keyring.open({ keystore, kek: LocalKek.fromBase64(kek) });
  await keyring.createNamespace('orders');
  await keyring.createNamespace('busy');
  // A day and a half of 1000 encryptions/s in blocks of 60k, ending now.
  const now = Date.now();
  for (let t = now - 36 * 3_600_000; t <= now; t += 60_000)
    await keystore.reserveUsage('orders', 1, 60_000, t);
  await keystore.recordUsed('orders', 1, 'worker-a', 1_000_000, now);
  // The busy namespace has spent its budget.
  await keystore.reserveUsage('busy', 1, 3_900_000_000, now);
  await keyring.close();
  await keystore.close();
}, 60_000);

afterAll(async () => {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

function cli(args: string[], withKek = false) {
  const env: NodeJS.ProcessEnv = { ...process.env, TEMPORAL_KEYRING_KEYSTORE: join(dir, 'store') };
  delete env.TEMPORAL_KEYRING_KEK;
  delete env.TEMPORAL_KEYRING_CONFIG;
  if (withKek) env.TEMPORAL_KEYRING_KEK = kek;
  return run(process.execPath, ['--import', 'tsx', MAIN, ...args], { env, timeout: 30_000 });
}

describe('temporal-keyring keys status / rotator', () => {
  it('keys status prints counts, rates, the projected limit and the next rotation (no KEK needed)', async () => {
    const svg = join(dir, 'orders.svg');
    const { stdout } = await cli(['keys', 'status', '--namespace', 'orders', '--svg', svg]);
    expect(stdout).toMatch(
      /^namespace orders: rotation on, budget 3\.87e9 encryptions, max age 30 d, lead time 7 d/,
    );
    expect(stdout).toMatch(
      /VERSION +STATE +ACTIVATED +RESERVED +USED +RATE 1m +RATE 1h +RATE 1d +BUDGET LIMIT/,
    );
    // One block a minute is too coarse for the 1-minute window: shown as "-".
    expect(stdout).toMatch(/\n1 +active +\S+ +129\.7M +1\.0M +- +1000\/s +1000\/s +20\d\d-\S+ \(projected\)/);
    expect(stdout).toMatch(/projection rate: 1000\/s \(1[mhd] window\)/);
    expect(stdout).toMatch(/next rotation: prepublish v1 at 20\d\d-\S+: max age 30 d/);
    const chart = await readFile(svg, 'utf8');
    expect(chart).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg"/);
    expect(chart).toContain('class="limit"');
    expect(chart).toContain('data-version="1"');
    expect(chart).toContain('class="projection"');
  }, 30_000);

  it('keys status --json is stable and machine-readable', async () => {
    const { stdout } = await cli(['keys', 'status', '-n', 'orders', '--json']);
    const status = JSON.parse(stdout);
    expect(status).toMatchObject({
      namespace: 'orders',
      policy: { enabled: true, maxEncryptions: 3_865_470_566, maxAgeMs: 2_592_000_000 },
      nextRotation: { action: 'prepublish', reason: 'max age 30 d' },
      versions: [{ version: 1, state: 'active', reserved: 2161 * 60_000, used: 1_000_000 }],
    });
    expect(status.versions[0].rates['1h']).toBeCloseTo(1000, -1);
    expect(new Date(status.versions[0].limitAt).getTime()).toBeGreaterThan(Date.now());
  }, 30_000);

  it('rotator --once rotates what is due, reports the rest, and agrees with keys status', async () => {
    const first = JSON.parse((await cli(['rotator', '--once', '--json'], true)).stdout);
    expect(first.leader).toBe(true);
    const byNs = Object.fromEntries(first.actions.map((a: { namespace: string }) => [a.namespace, a]));
    // A spent budget does not wait for a prepublish and a propagation delay.
    expect(byNs.busy).toMatchObject({ action: 'emergency-rotated', version: 2 });
    expect(byNs.busy.reason).toMatch(/^encryption budget spent/);
    expect(byNs.orders).toMatchObject({ action: 'none', version: 1 });
    // Right after the rotation, the rotator and keys status give the same next step.
    const again = JSON.parse((await cli(['rotator', '--once', '--json'], true)).stdout);
    const busy = again.actions.find((a: { namespace: string }) => a.namespace === 'busy');
    expect(busy).toMatchObject({ action: 'none', version: 2, next: { action: 'prepublish', version: 2 } });
    const status = JSON.parse((await cli(['keys', 'status', '-n', 'busy', '--json'])).stdout);
    expect(status.nextRotation).toEqual(busy.next);
    expect(status.versions[0]).toMatchObject({ version: 1, limitReached: true, limitAt: null });
    const text = (await cli(['keys', 'status', '-n', 'busy'])).stdout;
    expect(text).toMatch(/\n1 +inactive .* reached\n/);
  }, 60_000);

  it('refuses a bad interval, naming the flag', async () => {
    await expect(cli(['rotator', '--interval', '10'], true)).rejects.toMatchObject({
      stderr: expect.stringMatching(/--interval: must be a non-negative duration/),
    });
  }, 30_000);
});
