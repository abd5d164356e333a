import { isAbsolute, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { InvalidOptionError } from '../errors.ts';
import { redactConnectionString } from './postgres-errors.ts';

/** Where a keystore lives, parsed from the one string users write in flags, env and config. */
export type KeystoreLocation = { kind: 'file'; dir: string } | { kind: 'postgres'; connectionString: string };

/** The data directory used when nothing names a keystore. */
export const DEFAULT_DATA_DIR = '.temporal-keyring';

/**
 * Parses a keystore location:
 * - `postgres://...` or `postgresql://...` → the PostgreSQL keystore;
 * - `file:///abs/dir`, `file:relative/dir` or a plain path → the file keystore in that directory.
 *
 * Relative paths resolve against `baseDir` (the config file's directory for config values, the
 * working directory otherwise). Any other URL scheme is refused rather than taken for a path.
 */
export function parseKeystoreLocation(
  value: string,
  baseDir: string = process.cwd(),
  field = 'keystore',
): KeystoreLocation {
  if (typeof value !== 'string' || value.trim() === '') {
    throw new InvalidOptionError(field, 'must be a directory path, a file: URL or a postgres:// URL');
  }
  const text = value.trim();
  if (/^postgres(ql)?:\/\//i.test(text)) return { kind: 'postgres', connectionString: text };
  if (/^file:\/\//i.test(text)) {
    try {
      return { kind: 'file', dir: fileURLToPath(text) };
    } catch (error) {
      throw new InvalidOptionError(field, `is not a valid file: URL (${(error as Error).message})`);
    }
  }
  if (/^file:/i.test(text)) return { kind: 'file', dir: resolvePath(text.slice('file:'.length), baseDir) };
  // A scheme of two or more letters (one letter is a Windows drive: C:\keys).
  const scheme = /^([a-z][a-z0-9+.-]+):/i.exec(text);
  if (scheme) {
    throw new InvalidOptionError(
      field,
      `unsupported keystore URL scheme "${scheme[1]}:" (use a directory path, file:, postgres:// or postgresql://)`,
    );
  }
  return { kind: 'file', dir: resolvePath(text, baseDir) };
}

function resolvePath(path: string, baseDir: string): string {
  return isAbsolute(path) ? path : resolve(baseDir, path || '.');
}

/**
 * A location for messages and logs: every password of a connection string is masked, in the
 * `user:password@` form and in query parameters (`password=`, `sslpassword=`, any case), which
 * `pg` honours too. The same masking as the PostgreSQL keystore's own messages.
 */
export function describeKeystoreLocation(location: KeystoreLocation): string {
  if (location.kind === 'file') return location.dir;
  return redactConnectionString(location.connectionString);
}
