/**
 * The one place the worker and the client build their payload codec. Both must use the same
 * keystore and KEK; the namespace decides which keys encrypt.
 *
 * Environment:
 *   TEMPORAL_NAMESPACE          the Temporal namespace (default: "default")
 *   TEMPORAL_KEYRING_KEYSTORE   a data directory, file:URL or postgres:// URL (default ./.temporal-keyring)
 *   TEMPORAL_KEYRING_KEK        the base64 KEK from `npx temporal-keyring keygen`
 *
 * Or, for workers that never hold a key (docs/deployments.md, remote codec):
 *   TEMPORAL_KEYRING_CODEC_ENDPOINT  the codec server, e.g. https://codec.internal.example
 *   TEMPORAL_KEYRING_CODEC_TOKEN     a token with encode and decode on the namespace
 */
// In your project: import { EncryptionCodec, openKeyring, RemoteCodec } from 'temporal-keyring';
import { EncryptionCodec, openKeyring, RemoteCodec } from '../../src/index.ts';

export const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';

export async function createCodec() {
  const endpoint = process.env.TEMPORAL_KEYRING_CODEC_ENDPOINT;
  if (endpoint) {
    const codec = new RemoteCodec({ endpoint, namespace, token: process.env.TEMPORAL_KEYRING_CODEC_TOKEN });
    return { codec, close: async () => codec.close() };
  }
  const kek = process.env.TEMPORAL_KEYRING_KEK;
  if (!kek) throw new Error('set TEMPORAL_KEYRING_KEK (generate one with: npx temporal-keyring keygen)');
  const { keyring, close } = await openKeyring({
    keystore: process.env.TEMPORAL_KEYRING_KEYSTORE ?? './.temporal-keyring',
    kek: { type: 'base64', value: kek },
  });
  return { codec: new EncryptionCodec({ namespace, keys: keyring }), close };
}
