import { mkdtempSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/**
 * Temporary directories of a test file, removed once its tests are done (test/setup.ts registers
 * {@link removeTempDirs} as the outermost `afterAll`, so it runs after the file's own hooks have
 * stopped its servers and keyrings). Many hold KEK files and keystores: none is left in the
 * system's temporary directory, whether the tests passed or failed.
 */
const created = new Set<string>();

/** A fresh directory `<tmpdir>/<prefix>XXXXXX`, removed after the test file. */
export async function tempDir(prefix: string): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}

/** {@link tempDir}, for `describe` bodies and other synchronous setup. */
export function tempDirSync(prefix: string): string {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  created.add(dir);
  return dir;
}

/** Removes every directory made here so far (a child process may still be writing: retried). */
export async function removeTempDirs(): Promise<void> {
  const dirs = [...created];
  created.clear();
  await Promise.all(dirs.map((dir) => rm(dir, { recursive: true, force: true, maxRetries: 5 })));
}
