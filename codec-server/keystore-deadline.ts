import { KeystoreUnavailableError } from '../src/errors.ts';

/**
 * A short deadline of its own for keystore reads that answer probes and operators (`/readyz`, the
 * admin API's reads), so that a hung database (stopped, partitioned) yields a prompt 503
 * `ERR_KEYSTORE_UNAVAILABLE` instead of waiting for the keystore's query timeout, which is longer
 * than any probe's. Encode and decode keep the query timeout: that is real work, worth waiting for.
 *
 * The read itself is not cancelled (the driver's own timeout ends it); its late outcome is ignored.
 */
export function withDeadline<T>(work: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new KeystoreUnavailableError(`the keystore did not answer ${what} within ${ms} ms`)),
      ms,
    );
  });
  work.catch(() => {}); // a late failure after the deadline is not unhandled
  return Promise.race([work, expired]).finally(() => clearTimeout(timer));
}
