/**
 * Reservations survive SIGKILL: real child processes encrypt in a loop over the file keystore and
 * are killed at arbitrary moments. Each child logs a line after each encryption, so the log is a
 * lower bound on what was encrypted; the stored reserved count must never be below it, and must
 * exceed it by at most one unspent block per process (plus the one encryption in flight).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFile, rm } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';

const CHILD = fileURLToPath(new URL('../fixtures/encrypt-loop.ts', import.meta.url));
const BLOCK = 20;

let dir: string;
beforeEach(async () => {
  dir = await tempDir('tk-usage-crash-');
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true, maxRetries: 5 });
});

function start(env: Record<string, string>): {
  child: ChildProcess;
  ready: Promise<void>;
  exited: Promise<string>;
} {
  const child = spawn(process.execPath, ['--import', 'tsx', CHILD], {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const limit = setTimeout(() => child.kill('SIGKILL'), 40_000);
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exited = new Promise<string>((resolve) => child.on('exit', () => resolve(stderr)));
  exited.finally(() => clearTimeout(limit));
  const ready = new Promise<void>((resolve, reject) => {
    createInterface({ input: child.stdout! }).on('line', (line) => line === 'ready' && resolve());
    exited.then((err) => reject(new Error(`child exited before ready: ${err}`)));
  });
  ready.catch(() => {}); // awaited by the test; a later rejection is not unhandled
  return { child, ready, exited };
}

async function setup(): Promise<string> {
  const kek = generateKekBase64();
  const keystore = await FileKeystore.open({ dir: join(dir, 'store') });
  const keyring = await Keyring.open({ keystore, kek: LocalKek.fromBase64(kek) });
  await keyring.createNamespace('default');
  await keyring.close();
  await keystore.close();
  return kek;
}

async function logged(log: string): Promise<number> {
  const text = await readFile(log, 'utf8').catch(() => '');
  return text.split('\n').filter(Boolean).length;
}

describe('usage reservations under SIGKILL (file keystore)', () => {
  it('never count fewer encryptions than were made, and over-count by at most a block per process', async () => {
    const kek = await setup();
    const log = join(dir, 'encrypted.log');
    const CHILDREN = 3;
    const ROUNDS = 2;
    let processes = 0;
    for (let round = 0; round < ROUNDS; round++) {
      const children = Array.from({ length: CHILDREN }, () =>
        start({ DIR: join(dir, 'store'), KEK: kek, LOG: log, BLOCK: String(BLOCK) }),
      );
      processes += CHILDREN;
      await Promise.all(children.map((c) => c.ready));
      // Kill each at a different moment: mid-encryption, mid-reservation, wherever it is.
      for (const [i, c] of children.entries()) {
        await new Promise((resolve) => setTimeout(resolve, 50 + 97 * i + 31 * round));
        c.child.kill('SIGKILL');
      }
      await Promise.all(children.map((c) => c.exited));
    }
    const encrypted = await logged(log);
    const keystore = await FileKeystore.open({ dir: join(dir, 'store') });
    const usage = await keystore.getUsage('default', 1);
    await keystore.close();
    if (process.env.SHOW_NUMBERS) console.log({ encrypted, ...usage, samples: usage.samples.length });
    expect(encrypted).toBeGreaterThan(processes * BLOCK); // enough traffic to cross many blocks
    expect(usage.reserved).toBeGreaterThanOrEqual(encrypted);
    expect(usage.reserved - encrypted).toBeLessThanOrEqual(processes * (BLOCK + 1));
    // Killed processes never flushed their exact counts: `used` lags, never leads.
    expect(usage.used).toBeLessThanOrEqual(encrypted);
  }, 60_000);

  it('a process that stops cleanly leaves the exact used count', async () => {
    const kek = await setup();
    const log = join(dir, 'encrypted.log');
    const c = start({ DIR: join(dir, 'store'), KEK: kek, LOG: log, BLOCK: String(BLOCK), STOP_AFTER: '55' });
    const stderr = await c.exited;
    expect(stderr).toBe('');
    const keystore = await FileKeystore.open({ dir: join(dir, 'store') });
    const usage = await keystore.getUsage('default', 1);
    await keystore.close();
    expect(await logged(log)).toBe(55);
    expect(usage.used).toBe(55);
    expect(usage.reserved).toBe(60); // three blocks of 20
  }, 60_000);
});
