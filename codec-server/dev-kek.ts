import { readFile, writeFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { generateKekBase64 } from '../src/kek/kek-source.ts';

/**
 * Dev mode's KEK: generated once and kept in a file beside the data directory (never inside it, so
 * that copying the keystore does not copy its KEK), mode 0600. For development only: production
 * KEKs come from a secret store (see docs/codec-server.md).
 */
export function devKekPath(dataDir: string): string {
  return join(dirname(dataDir), `${basename(dataDir)}-dev.kek`);
}

/** The dev KEK file's path and whether it was just created. */
export async function ensureDevKek(dataDir: string): Promise<{ path: string; created: boolean }> {
  const path = devKekPath(dataDir);
  try {
    await writeFile(path, `${generateKekBase64()}\n`, { flag: 'wx', mode: 0o600 });
    return { path, created: true };
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    await readFile(path); // readable: loadKek reports a bad file precisely
    return { path, created: false };
  }
}
