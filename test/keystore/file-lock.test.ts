import { readFile, rm, unlink, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { FileLock } from '../../src/keystore/file-lock.ts';
import { tempDir } from '../support/temp-dir.ts';

const dirs: string[] = [];
afterEach(async () => {
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function lockPath(): Promise<string> {
  const dir = await tempDir('tk-lock-');
  dirs.push(dir);
  return join(dir, 'lock');
}

const tokenOf = async (path: string) => (JSON.parse(await readFile(path, 'utf8')) as { token: string }).token;

describe('FileLock release', () => {
  it('removes its own lock and leaves no breaker behind', async () => {
    const path = await lockPath();
    const lock = new FileLock(path, { timeoutMs: 5_000, staleMs: 5_000 });
    await lock.withLock(async () => {
      expect(await tokenOf(path)).toMatch(/^[0-9a-f]{24}$/);
    });
    await expect(readFile(path)).rejects.toMatchObject({ code: 'ENOENT' });
    await expect(readFile(`${path}.break`)).rejects.toMatchObject({ code: 'ENOENT' });
  });

  it('waits for a takeover in progress and never removes the lock that replaced its own', async () => {
    const path = await lockPath();
    const breaker = `${path}.break`;
    let releaseWaiting!: () => void;
    const waiting = new Promise<void>((resolve) => {
      releaseWaiting = resolve;
    });
    const lock = new FileLock(path, {
      timeoutMs: 5_000,
      staleMs: 5_000,
      onReleaseWait: () => releaseWaiting(),
    });
    const other = { pid: process.pid, host: hostname(), at: Date.now() };
    let ours = '';
    const held = lock.withLock(async () => {
      ours = await tokenOf(path);
      // A waiter judged this lock stale and is breaking it: it holds the breaker.
      await writeFile(breaker, JSON.stringify({ ...other, token: 'breaker' }));
    });
    // The release finds the breaker held and waits (rather than finishing), without touching the lock.
    expect(await Promise.race([waiting.then(() => 'waiting'), held.then(() => 'released')])).toBe('waiting');
    expect(await tokenOf(path)).toBe(ours);
    // The breaker removes the stale lock, takes the lock itself, and lets go of the breaker.
    await unlink(path);
    await writeFile(path, JSON.stringify({ ...other, token: 'taken-over' }));
    await unlink(breaker);
    await held;
    // Our release saw that the lock is no longer ours and left the new holder's lock alone.
    expect(await tokenOf(path)).toBe('taken-over');
  });
});
