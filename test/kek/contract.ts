/**
 * The contract every KEK kind passes (local, Shamir-sealed, PKCS#11). A kind's test file calls
 * `kekContract(name, factory)`; the factory gives a KEK, a second instance of the same KEK (what
 * another process holding it would have), and a different KEK of the same kind.
 */
import { inspect } from 'node:util';
import { describe, expect, it } from 'vitest';
import { DecryptionFailedError } from '../../src/errors.ts';
import { type KeyEncryptionKey, materialAad } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';

export interface KekFixture {
  kek: KeyEncryptionKey;
  /** The same KEK, as another process opens it. */
  again(): Promise<KeyEncryptionKey>;
  /** Another KEK of the same kind. */
  other(): Promise<KeyEncryptionKey>;
  cleanup(): Promise<void>;
}

const AAD = materialAad('default', 1, 'default/v1');

export function kekContract(name: string, makeFixture: () => Promise<KekFixture>): void {
  describe(`KEK contract: ${name}`, () => {
    const withKek = (fn: (f: KekFixture) => Promise<void>) => async () => {
      const f = await makeFixture();
      try {
        await fn(f);
      } finally {
        await f.cleanup();
      }
    };

    it(
      'has a stable 16-hex-char id that differs between keys, and a kind',
      withKek(async (f) => {
        expect(f.kek.id).toMatch(/^[0-9a-f]{16}$/);
        expect((await f.again()).id).toBe(f.kek.id);
        expect((await f.other()).id).not.toBe(f.kek.id);
        expect(['local', 'shamir', 'pkcs11']).toContain(f.kek.kind);
      }),
    );

    it(
      'wraps into iv(12) || ciphertext || tag(16) with a fresh iv, and unwraps in another instance',
      withKek(async (f) => {
        const plain = Buffer.alloc(32, 7);
        const a = await f.kek.wrap(plain, AAD);
        const b = await f.kek.wrap(plain, AAD);
        expect(a.length).toBe(12 + 32 + 16);
        expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
        expect(Buffer.from(await f.kek.unwrap(a, AAD))).toEqual(plain);
        expect(Buffer.from(await (await f.again()).unwrap(b, AAD))).toEqual(plain);
      }),
    );

    it(
      'refuses other associated data, tampering, truncation and another KEK as DecryptionFailedError',
      withKek(async (f) => {
        const wrapped = Buffer.from(await f.kek.wrap(Buffer.alloc(32, 1), AAD));
        const fails = async (p: Promise<unknown>) => {
          const error = await p.then(
            () => undefined,
            (e: unknown) => e,
          );
          expect(error).toBeInstanceOf(DecryptionFailedError);
        };
        await fails(f.kek.unwrap(wrapped, materialAad('default', 2, 'default/v2')));
        for (const at of [0, 12, wrapped.length - 1]) {
          const tampered = Buffer.from(wrapped);
          tampered[at]! ^= 1;
          await fails(f.kek.unwrap(tampered, AAD));
        }
        await fails(f.kek.unwrap(wrapped.subarray(0, 20), AAD));
        await fails((await f.other()).unwrap(wrapped, AAD));
      }),
    );

    it(
      'shows only its id when logged',
      withKek(async (f) => {
        const shown = `${inspect(f.kek)} ${JSON.stringify(f.kek)}`;
        expect(shown).toContain(f.kek.id);
        expect(shown.length).toBeLessThan(200);
      }),
    );

    it(
      'serves a keyring: keys it wraps are read back by a keyring holding the same KEK',
      withKek(async (f) => {
        const store = new MemoryKeystore();
        const first = await Keyring.open({ keystore: store, kek: f.kek });
        await first.createNamespace('default');
        const key = await first.encryptionKey('default', 0);
        const copy = Buffer.from(key.exportMaterial());
        await first.close();
        const second = await Keyring.open({ keystore: store.reopen(), kek: await f.again() });
        expect(Buffer.from((await second.decryptionKey('default', 1)).exportMaterial())).toEqual(copy);
        await second.close();
      }),
    );
  });
}
