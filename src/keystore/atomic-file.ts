import { randomBytes } from 'node:crypto';
import { constants, promises as fsp } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/**
 * Durable, atomic file primitives under the {@link FileKeystore}: a write is temp file → fsync →
 * rename → fsync of the directory, so a crash at any point leaves the old file or the new one,
 * never a torn one. Files are created 0600 and directories 0700, set explicitly (umask-proof).
 */

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** The points of a durable write, in order. A fault hook sees each one as it is passed. */
export type WriteStep = 'temp-written' | 'temp-synced' | 'renamed' | 'dir-synced' | 'unlinked';

/**
 * Test hook called after each step of every write (`file` is the destination). Throwing from it
 * stops the write right there, as a crash would (the process keeps running, the file system
 * state is what a crash at that point leaves behind).
 * @internal
 */
export type FaultHook = (step: WriteStep, file: string) => void | Promise<void>;

/** Prefix of temp files: readers ignore them; the keystore sweeps leftovers under its lock. */
export const TEMP_PREFIX = '.tmp-';

/** Writes `data` to `file` atomically and durably, mode 0600. */
export async function writeFileAtomic(
  file: string,
  data: string | Uint8Array,
  faults?: FaultHook,
): Promise<void> {
  const dir = dirname(file);
  const temp = join(dir, `${TEMP_PREFIX}${basename(file)}-${randomBytes(6).toString('hex')}`);
  const handle = await fsp.open(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    await handle.chmod(FILE_MODE);
    await handle.writeFile(data);
    await faults?.('temp-written', file);
    await handle.sync();
    await faults?.('temp-synced', file);
  } finally {
    await handle.close();
  }
  await fsp.rename(temp, file);
  await faults?.('renamed', file);
  await fsyncDir(dir);
  await faults?.('dir-synced', file);
}

/** Removes a file (if present) and makes the removal durable. Returns whether it existed. */
export async function removeFileDurable(file: string, faults?: FaultHook): Promise<boolean> {
  try {
    await fsp.unlink(file);
  } catch (error) {
    if (isNotFound(error)) return false;
    throw error;
  }
  await faults?.('unlinked', file);
  await fsyncDir(dirname(file));
  return true;
}

/** Creates a directory and its missing parents, each 0700, making each new entry durable. */
export async function ensureDir(dir: string): Promise<void> {
  try {
    const stat = await fsp.stat(dir);
    if (stat.isDirectory()) return;
  } catch (error) {
    if (!isNotFound(error)) throw error;
  }
  const parent = dirname(dir);
  if (parent !== dir) await ensureDir(parent);
  try {
    await fsp.mkdir(dir, { mode: DIR_MODE });
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
    return;
  }
  await fsp.chmod(dir, DIR_MODE);
  await fsyncDir(parent);
}

export async function fsyncDir(dir: string): Promise<void> {
  const handle = await fsp.open(dir, constants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Reads a file, or `undefined` if it does not exist. */
export async function readFileIfExists(file: string): Promise<Buffer | undefined> {
  try {
    return await fsp.readFile(file);
  } catch (error) {
    if (isNotFound(error)) return undefined;
    throw error;
  }
}

export function isNotFound(error: unknown): boolean {
  return (error as NodeJS.ErrnoException | undefined)?.code === 'ENOENT';
}
