import { readFile } from 'node:fs/promises';
import type { ServerOptions } from 'node:https';
import type { ServerConfig } from '../src/config/server-config.ts';
import { InvalidOptionError } from '../src/errors.ts';

/**
 * HTTPS options from the `tls` section: certificate and key, and with `clientCa` mutual TLS
 * (clients must present a certificate that CA signed; others fail the handshake). TLS 1.2 minimum
 * by default, with forward-secret AEAD suites only (`DEFAULT_TLS_CIPHERS`), the server's order.
 */
export async function tlsOptions(tls: NonNullable<ServerConfig['tls']>): Promise<ServerOptions> {
  const read = async (path: string, field: string) => {
    try {
      return await readFile(path);
    } catch (error) {
      throw new InvalidOptionError(
        field,
        `cannot read ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      );
    }
  };
  const options: ServerOptions = {
    cert: await read(tls.cert, 'server.tls.cert'),
    key: await read(tls.key, 'server.tls.key'),
    minVersion: tls.minVersion,
    ciphers: tls.ciphers,
    honorCipherOrder: true,
  };
  if (tls.clientCa) {
    options.ca = await read(tls.clientCa, 'server.tls.clientCa');
    options.requestCert = true;
    options.rejectUnauthorized = true;
  }
  return options;
}
