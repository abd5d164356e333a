import { rm } from 'node:fs/promises';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runServe } from '../../codec-server/serve-command.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { tempDir } from '../support/temp-dir.ts';

/** Polls `check` until it returns a value, for at most 20 s (a deadline, not a timed assertion). */
async function eventually<T>(check: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 20_000;
  for (;;) {
    const value = await check();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error('condition not reached within 20 s');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('serve runs the rotator', () => {
  let dir: string;
  afterEach(async () => rm(dir, { recursive: true, force: true, maxRetries: 5 }));

  async function seedOldNamespace(kek: string) {
    dir = await tempDir('tk-serve-rotator-');
    // A namespace whose key was created 40 days ago: past the default 30-day maximum age.
    const clock = new ManualClock(Date.now() - 40 * 86_400_000);
    const seeded = await openKeyring({
      keystore: join(dir, 'data'),
      createIfMissing: true,
      kek: { type: 'base64', value: kek },
      clock,
    });
    await seeded.keyring.createNamespace('payments');
    await seeded.close();
  }

  it('prepublishes a key past its maximum age and reports it in /metrics', async () => {
    const kek = generateKekBase64();
    await seedOldNamespace(kek);
    const running = await runServe(
      { dataDir: join(dir, 'data'), port: '0', logLevel: 'silent' },
      { TEMPORAL_KEYRING_KEK: kek, TEMPORAL_KEYRING_DEV: 'true' },
      dir,
    );
    try {
      const metrics = await eventually(async () => {
        const text = await (await fetch(`${running.url}/metrics`)).text();
        return text.includes('temporal_keyring_rotations_total{') ? text : undefined;
      });
      expect(metrics).toMatch(
        /temporal_keyring_rotations_total\{[^}]*namespace="payments"[^}]*phase="prepublish"[^}]*\} 1/,
      );
      expect(metrics).toMatch(/temporal_keyring_encryptions_reserved\{[^}]*namespace="payments"/);
      const keys = await (await fetch(`${running.url}/admin/namespaces/payments/keys`)).json();
      expect(JSON.stringify(keys)).toContain('"prepublished"');
    } finally {
      await running.close();
    }
  });

  it('does not rotate with --no-rotator', async () => {
    const kek = generateKekBase64();
    await seedOldNamespace(kek);
    const running = await runServe(
      { dataDir: join(dir, 'data'), port: '0', logLevel: 'silent', rotator: false },
      { TEMPORAL_KEYRING_KEK: kek, TEMPORAL_KEYRING_DEV: 'true' },
      dir,
    );
    try {
      const text = await (await fetch(`${running.url}/metrics`)).text();
      expect(text).not.toContain('temporal_keyring_rotations_total{');
      const keys = await (await fetch(`${running.url}/admin/namespaces/payments/keys`)).json();
      expect(JSON.stringify(keys)).not.toContain('"prepublished"');
    } finally {
      await running.close();
    }
  });
});
