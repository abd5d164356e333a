import type { ConnectionOptions } from 'node:tls';
import { type Clock, systemClock } from '../runtime/clock.ts';
import { type Logger, silentLogger } from '../runtime/logger.ts';
import { FileKeystore } from './file-keystore.ts';
import type { Keystore } from './keystore.ts';
import { type KeystoreLocation, parseKeystoreLocation } from './keystore-location.ts';
import { ValidatingKeystore } from './validating-keystore.ts';

export interface OpenKeystoreOptions {
  clock?: Clock;
  logger?: Logger;
  /** File keystore: how long to wait for its lock. Default: the file keystore's. */
  lockTimeoutMs?: number;
  /** PostgreSQL keystore: TLS options passed to `pg` (settings in the URL win). */
  ssl?: boolean | ConnectionOptions;
}

/**
 * Opens the keystore a location names (see `parseKeystoreLocation`): the file keystore for paths
 * and `file:` URLs, the PostgreSQL keystore for `postgres://` URLs. Metadata-only tools (such as
 * `keys list`) use it directly; everything else goes through `openKeyring`.
 */
export async function openKeystore(
  location: string | KeystoreLocation,
  options: OpenKeystoreOptions = {},
): Promise<Keystore> {
  const where = typeof location === 'string' ? parseKeystoreLocation(location) : location;
  const clock = options.clock ?? systemClock;
  if (where.kind === 'file') {
    const store = await FileKeystore.open({
      dir: where.dir,
      clock,
      ...(options.lockTimeoutMs === undefined ? {} : { lockTimeoutMs: options.lockTimeoutMs }),
    });
    return ValidatingKeystore.wrap(store);
  }
  // Loaded only when used, so that file-keystore users never load `pg`.
  const { PostgresKeystore } = await import('./postgres-keystore.ts');
  const store = await PostgresKeystore.open({
    connectionString: where.connectionString,
    clock,
    logger: options.logger ?? silentLogger,
    ...(options.ssl === undefined ? {} : { ssl: options.ssl }),
  });
  return ValidatingKeystore.wrap(store);
}
