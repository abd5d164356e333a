/**
 * The one place the worker and the client get their encryption: `KeyringPlugin` sets the payload
 * codec and a failure converter that encrypts failure messages and stack traces too. Each payload
 * is encrypted with the keys of the namespace the SDK says owns it.
 *
 * Environment (the same as the CLI's and `npm start`'s, see the README):
 *   TEMPORAL_KEYRING_KEYSTORE   the keystore: a directory, file:DIR or postgres:// URL
 *   TEMPORAL_KEYRING_KEK_FILE   the file holding the base64 KEK
 *   TEMPORAL_NAMESPACE          the Temporal namespace (default: "default")
 *
 * Or, for workers that never hold a key (docs/deployments.md, remote codec):
 *   TEMPORAL_KEYRING_CODEC_ENDPOINT  the codec server, e.g. https://codec.internal.example
 *   TEMPORAL_KEYRING_CODEC_TOKEN     a token with encode and decode on the namespace
 */
import type { DataConverter } from '@temporalio/common';
// In your project: import { KeyringPlugin, openKeyring, RemoteCodec } from 'temporal-keyring';
import { KeyringPlugin, openKeyring, RemoteCodec } from '../../src/index.ts';

export const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';

export async function createPlugin() {
  const endpoint = process.env.TEMPORAL_KEYRING_CODEC_ENDPOINT;
  if (endpoint) {
    const codec = new RemoteCodec({ endpoint, namespace, token: process.env.TEMPORAL_KEYRING_CODEC_TOKEN });
    const withCodec = <T extends { dataConverter?: DataConverter }>(options: T) => ({
      ...options,
      dataConverter: { ...options.dataConverter, payloadCodecs: [codec] },
    });
    const plugin = {
      name: 'temporal-keyring-remote',
      configureClient: withCodec,
      configureWorker: withCodec,
    };
    return { plugin, close: async () => codec.close() };
  }
  const { keyring, close } = await openKeyring();
  return { plugin: new KeyringPlugin({ keys: keyring }), close };
}
