/**
 * A payload of another keystore is told apart from a tampered one: the codec writes its keystore's
 * id into the payload metadata (a hint, unauthenticated), and names both keystores when such a
 * payload fails, keeping the error's code. A KEK mismatch names the keystore and the fix.
 */
import { describe, expect, it } from 'vitest';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { openKeyring } from '../../src/open-keyring.ts';
import { tempDir } from '../support/temp-dir.ts';
import { jsonPayload, keyringFixture, text } from './fixtures.ts';

describe('keystore id hint', () => {
  it('writes the keystore id into the metadata, and names both keystores when a payload is not ours', async () => {
    const a = await keyringFixture(['default']);
    const b = await keyringFixture(['default']);
    expect(a.keyring.keystoreId).toMatch(/^[0-9a-f]{16}$/);
    expect(a.keyring.keystoreId).not.toBe(b.keyring.keystoreId);
    const [sealed] = await a.codec().encode([jsonPayload({ card: '4111' })]);
    expect(text(sealed!.metadata!['encryption-keystore-id'])).toBe(a.keyring.keystoreId);

    const error = await b
      .codec()
      .decode([sealed!])
      .catch((e) => e);
    expect(error.code).toBe('ERR_DECRYPTION_FAILED');
    expect(error.hint).toContain(`this payload's key belongs to keystore ${a.keyring.keystoreId}`);
    expect(error.hint).toContain(`keystore ${b.keyring.keystoreId}`);
    // The hint is unauthenticated: kept apart from the message, which stays opaque.
    expect(error.message).toBe('decryption failed');
  });

  it('gives no hint for a tampered payload of our own keystore (opaque as before)', async () => {
    const a = await keyringFixture(['default']);
    const [sealed] = await a.codec().encode([jsonPayload({ card: '4111' })]);
    const data = Uint8Array.from(sealed!.data!);
    data[data.length - 1]! ^= 1;
    const error = await a
      .codec()
      .decode([{ ...sealed!, data }])
      .catch((e) => e);
    expect(error.code).toBe('ERR_DECRYPTION_FAILED');
    expect(error.hint).toBeUndefined();
    expect(error.message).toBe('decryption failed');
  });

  it('does not let a destroyed local version of the same number pass for the cause', async () => {
    const a = await keyringFixture(['default']);
    const b = await keyringFixture(['default']);
    const [sealed] = await a.codec().encode([jsonPayload({ n: 1 })]);
    await b.keyring.rotate('default');
    await b.keyring.setState('default', 1, 'deprecated');
    await b.keyring.setState('default', 1, 'destroyed');
    const error = await b
      .codec()
      .decode([sealed!])
      .catch((e) => e);
    expect(error.code).toBe('ERR_KEY_VERSION_DESTROYED');
    expect(error.hint).toContain(`belongs to keystore ${a.keyring.keystoreId}`);
  });

  it('a KEK mismatch names the keystore, where it is, and the fix', async () => {
    const dir = await tempDir('tk-hint-');
    const first = await openKeyring({ keystore: dir, kek: { type: 'base64', value: generateKekBase64() } });
    const id = first.keyring.keystoreId;
    await first.close();
    const error = await openKeyring({
      keystore: dir,
      kek: { type: 'base64', value: generateKekBase64() },
    }).catch((e) => e);
    expect(error.code).toBe('ERR_KEK_MISMATCH');
    expect(error.message).toContain(`keystore ${id} at ${dir} opens only with its own KEK`);
    expect(error.message).toContain('TEMPORAL_KEYRING_KEK_FILE');
  });
});
