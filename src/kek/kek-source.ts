import { scrypt as scryptCallback } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { InvalidKekError, InvalidOptionError, KekMismatchError, KeystoreConflictError } from '../errors.ts';
import type { KekInfo, Keystore } from '../keystore/keystore.ts';
import { generateKeystoreId } from '../keystore/keystore-id.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import { KEK_CHECK_AAD, KEK_CHECK_PLAINTEXT, KEK_LENGTH, LocalKek } from './kek.ts';

/**
 * Where a local KEK comes from, before a {@link Keyring} wraps anything with it:
 * - `base64`: the key itself, as `temporal-keyring keygen` prints it (typically an env var value);
 * - `file`: a file holding that base64 text on one line, readable by its owner only;
 * - `passphrase`: derived with scrypt from a passphrase and the keystore's salt
 *   (`KekInfo.passphraseSalt`; see {@link kekFromPassphrase} for the flow that creates it).
 *
 * A KMS-backed KEK implements `KeyEncryptionKey` directly and needs no source.
 */
export type KekSource =
  | { type: 'base64'; value: string }
  | { type: 'file'; path: string }
  | { type: 'passphrase'; passphrase: string; salt: Uint8Array };

export interface LoadKekOptions {
  /** Accept a KEK file that group or others may read. Default false. */
  allowInsecurePermissions?: boolean;
  random?: RandomSource;
}

/**
 * scrypt parameters for passphrase KEKs (OWASP's recommendation: N=2^17, r=8, p=1; 128 MiB).
 * They are part of the derivation: changing them changes the KEK (and the keystore would then
 * refuse it with ERR_KEK_MISMATCH), so they are fixed here rather than configurable.
 */
export const PASSPHRASE_SCRYPT = { N: 2 ** 17, r: 8, p: 1 } as const;
/** Length of the random salt created with a passphrase keystore's KEK record. */
export const PASSPHRASE_SALT_LENGTH = 16;
/** Shortest passphrase accepted. */
export const MIN_PASSPHRASE_LENGTH = 12;

/** Loads a local KEK from a source. Errors never include the key or the passphrase. */
export async function loadKek(source: KekSource, options: LoadKekOptions = {}): Promise<LocalKek> {
  if (!source || typeof source !== 'object')
    throw new InvalidOptionError('kek', 'must be a KEK source object');
  switch (source.type) {
    case 'base64': {
      if (typeof source.value !== 'string' || source.value.trim() === '') {
        throw new InvalidKekError('the KEK is empty (generate one with: temporal-keyring keygen)');
      }
      return LocalKek.fromBase64(source.value, options.random);
    }
    case 'file':
      return LocalKek.fromBase64(await readKekFile(source.path, options), options.random);
    case 'passphrase':
      return new LocalKek(await derivePassphraseKey(source.passphrase, source.salt), options.random);
    default:
      throw new InvalidOptionError('kek.type', "must be 'base64', 'file' or 'passphrase'");
  }
}

/** A new random 256-bit KEK, base64: what `temporal-keyring keygen` prints. */
export function generateKekBase64(random: RandomSource = systemRandom): string {
  return Buffer.from(random.bytes(KEK_LENGTH)).toString('base64');
}

/**
 * The passphrase KEK of a keystore, creating its KEK record (with a fresh salt) when the keystore
 * is new. Call it before `Keyring.open`: the record it writes is the one `Keyring.open` verifies.
 * Of two processes initializing one keystore at once, one creates the record (compare-and-set)
 * and the other derives from the salt it wrote.
 */
export async function kekFromPassphrase(
  passphrase: string,
  keystore: Keystore,
  options: { random?: RandomSource } = {},
): Promise<LocalKek> {
  const random = options.random ?? systemRandom;
  for (let attempt = 0; attempt < 3; attempt++) {
    const info = await keystore.getKekInfo();
    if (info) {
      if (!info.passphraseSalt) {
        throw new KekMismatchError(
          "this keystore's KEK is not passphrase-derived (its KEK record has no salt); give its base64 KEK instead",
        );
      }
      return loadKek(
        { type: 'passphrase', passphrase, salt: Buffer.from(info.passphraseSalt, 'base64') },
        { random },
      );
    }
    const salt = random.bytes(PASSPHRASE_SALT_LENGTH);
    const kek = await loadKek({ type: 'passphrase', passphrase, salt }, { random });
    const check = Buffer.from(await kek.wrap(KEK_CHECK_PLAINTEXT, KEK_CHECK_AAD)).toString('base64');
    const created: KekInfo = {
      format: 1,
      currentKekId: kek.id,
      checks: [{ kekId: kek.id, check }],
      passphraseSalt: Buffer.from(salt).toString('base64'),
      keystoreId: generateKeystoreId(random),
    };
    try {
      await keystore.putKekInfo(created, undefined);
      return kek;
    } catch (error) {
      if (!(error instanceof KeystoreConflictError)) throw error;
      // Another process created the record first: derive from its salt.
    }
  }
  throw new KeystoreConflictError('the KEK record kept changing while it was being initialized');
}

async function readKekFile(path: string, options: LoadKekOptions): Promise<string> {
  if (typeof path !== 'string' || path === '')
    throw new InvalidOptionError('kek.path', 'must be a file path');
  let text: string;
  try {
    const handle = await fsp.open(path, 'r');
    try {
      const stat = await handle.stat();
      if (!stat.isFile()) throw new InvalidKekError(`the KEK file ${path} is not a regular file`);
      if ((stat.mode & 0o077) !== 0 && !options.allowInsecurePermissions) {
        throw new InvalidKekError(
          `the KEK file ${path} may be read by group or others (mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}); ` +
            `restrict it with: chmod 600 ${path}`,
        );
      }
      text = await handle.readFile('utf8');
    } finally {
      await handle.close();
    }
  } catch (error) {
    if (error instanceof InvalidKekError) throw error;
    throw new InvalidKekError(
      `cannot read the KEK file ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
    );
  }
  const lines = text.split(/\r?\n/).filter((l) => l.trim() !== '');
  if (lines.length !== 1) {
    throw new InvalidKekError(
      `the KEK file ${path} must hold one line of base64 (found ${lines.length} lines)`,
    );
  }
  return lines[0]!;
}

async function derivePassphraseKey(passphrase: string, salt: Uint8Array): Promise<Buffer> {
  if (typeof passphrase !== 'string' || passphrase.length < MIN_PASSPHRASE_LENGTH) {
    throw new InvalidKekError(`a KEK passphrase must be at least ${MIN_PASSPHRASE_LENGTH} characters`);
  }
  if (!(salt instanceof Uint8Array) || salt.length < PASSPHRASE_SALT_LENGTH) {
    throw new InvalidKekError(`a passphrase salt must be at least ${PASSPHRASE_SALT_LENGTH} bytes`);
  }
  const { N, r, p } = PASSPHRASE_SCRYPT;
  return new Promise((resolve, reject) => {
    // maxmem above the 128 * N * r bytes scrypt needs (Node's default cap is 32 MiB).
    scryptCallback(
      passphrase.normalize('NFC'),
      salt,
      KEK_LENGTH,
      { N, r, p, maxmem: 256 * N * r },
      (error, key) =>
        error ? reject(new InvalidKekError('deriving the KEK from the passphrase failed')) : resolve(key),
    );
  });
}
