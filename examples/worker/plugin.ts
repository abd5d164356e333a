/**
 * The one place the worker and the client get their encryption: `KeyringPlugin` sets the payload
 * codec and a failure converter that encrypts failure messages and stack traces too. Each payload
 * is encrypted with the keys of the namespace the SDK says owns it.
 *
 * Environment (the same as the CLI's and `npm start`'s, see the README):
 *   TEMPORAL_KEYRING_KEYSTORE   the keystore: a directory, file:DIR or postgres:// URL
 *   TEMPORAL_KEYRING_KEK_FILE   the file holding the base64 KEK
 *   TEMPORAL_NAMESPACE          the Temporal namespace (default: "default")
 */
// In your project: import { KeyringPlugin, openKeyring } from 'temporal-keyring';
import { KeyringPlugin, openKeyring } from '../../src/index.ts';

export const namespace = process.env.TEMPORAL_NAMESPACE ?? 'default';

export async function createPlugin() {
  const { keyring, close } = await openKeyring();
  return { plugin: new KeyringPlugin({ keys: keyring }), close };
}
