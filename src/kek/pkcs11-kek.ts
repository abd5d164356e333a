import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { DecryptionFailedError, InvalidOptionError, KekUnavailableError, Pkcs11KekError } from '../errors.ts';
import { type RandomSource, systemRandom } from '../runtime/random.ts';
import type { KeyEncryptionKey } from './kek.ts';

/** Where a PKCS#11 KEK lives: the module (`.so`), the token and key labels, and the user PIN. */
export interface Pkcs11KekOptions {
  /** Path of the PKCS#11 module, e.g. `/usr/lib/softhsm/libsofthsm2.so`. */
  module: string;
  /** Token label. */
  token: string;
  /** Label of the AES-256 key in the token. */
  key: string;
  /** User PIN of the token (read from the environment variable the config names). */
  pin: string;
  /** Accept a key that may leave the token (CKA_EXTRACTABLE or not CKA_SENSITIVE). Default false. */
  allowExtractable?: boolean;
  random?: RandomSource;
}

// The binding's API as used here (pkcs11js); typed loosely so that it is loaded only on demand.
type Handle = Buffer;
interface Pkcs11Api {
  load(path: string): void;
  C_Initialize(): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetTokenInfo(slot: Handle): { label: string };
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Handle, template: { type: number; value?: unknown }[]): void;
  C_FindObjects(session: Handle, max: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(
    session: Handle,
    object: Handle,
    template: { type: number }[],
  ): { type: number; value?: unknown }[];
  C_GenerateKey(
    session: Handle,
    mechanism: { mechanism: number },
    template: { type: number; value?: unknown }[],
  ): Handle;
  C_EncryptInit(session: Handle, mechanism: unknown, key: Handle): void;
  C_Encrypt(session: Handle, input: Buffer, output: Buffer): Buffer;
  C_DecryptInit(session: Handle, mechanism: unknown, key: Handle): void;
  C_Decrypt(session: Handle, input: Buffer, output: Buffer): Buffer;
}
type Pkcs11Module = Record<string, number> & { PKCS11: new () => Pkcs11Api };

const IV_LENGTH = 12;
const TAG_LENGTH = 16;
const ID_BLOCK = Buffer.from('temporal-keyring', 'utf8'); // one AES block: the key's check value input

let binding: Pkcs11Module | undefined;
const modules = new Map<string, Pkcs11Api>();

/**
 * Loads the native binding on first use only, so that a machine where it did not build still runs
 * everything else; asking for PKCS#11 there is a clear error.
 */
function loadBinding(): Pkcs11Module {
  if (binding) return binding;
  try {
    binding = createRequire(import.meta.url)('pkcs11js') as Pkcs11Module;
    return binding;
  } catch (cause) {
    throw new Pkcs11KekError(
      'ERR_PKCS11_MODULE',
      'the PKCS#11 binding (npm package pkcs11js) is not installed or did not build: install it with npm install pkcs11js (needs a C++ toolchain)',
      { cause },
    );
  }
}

/** One initialized module per path and process (C_Initialize may run once). */
function moduleFor(path: string): Pkcs11Api {
  const known = modules.get(path);
  if (known) return known;
  const b = loadBinding();
  const api = new b.PKCS11();
  try {
    api.load(path);
    api.C_Initialize();
  } catch (cause) {
    throw new Pkcs11KekError(
      'ERR_PKCS11_MODULE',
      `the PKCS#11 module ${path} could not be loaded or initialized (${reason(cause)})`,
      { cause },
    );
  }
  modules.set(path, api);
  return api;
}

interface Session {
  session: Handle;
  key: Handle;
}

/**
 * A KEK that never enters the process: an AES-256 key inside a PKCS#11 token (an HSM; tested on
 * SoftHSM2), created non-extractable and sensitive. Wrapping is AES-GCM performed by the token,
 * with a fresh 96-bit IV from the process and the same associated data as every KEK, into the
 * same `iv || ciphertext || tag` layout. The id is a fingerprint of the key's encryption of one
 * constant block (a key check value), so it names the key, not its label.
 *
 * If the token goes away, operations throw `KekUnavailableError` (503 at the server) and the next
 * operation reconnects: it recovers by itself when the token is back.
 *
 * Pipeline position: keyring → KEK (this) → token.
 */
export class Pkcs11Kek implements KeyEncryptionKey {
  readonly kind = 'pkcs11' as const;
  readonly id: string;
  readonly #options: Pkcs11KekOptions;
  readonly #api: Pkcs11Api;
  readonly #b: Pkcs11Module;
  readonly #random: RandomSource;
  #current: Session | undefined;

  private constructor(options: Pkcs11KekOptions, api: Pkcs11Api, session: Session, id: string) {
    this.#options = options;
    this.#api = api;
    this.#b = loadBinding();
    this.#random = options.random ?? systemRandom;
    this.#current = session;
    this.id = id;
  }

  /**
   * Opens the key `options.key` in token `options.token`. Each setup mistake is one error with its
   * own code, before anything is written: module not loadable (`ERR_PKCS11_MODULE`), no such token
   * (`ERR_PKCS11_TOKEN_NOT_FOUND`), wrong PIN (`ERR_PKCS11_PIN`), no such key
   * (`ERR_PKCS11_KEY_NOT_FOUND`), a key that may leave the token (`ERR_PKCS11_KEY_EXTRACTABLE`).
   */
  static async open(options: Pkcs11KekOptions): Promise<Pkcs11Kek> {
    validate(options);
    const api = moduleFor(options.module);
    const session = connect(api, options, 'open');
    try {
      const id = kekIdOf(api, session);
      return new Pkcs11Kek(options, api, session, id);
    } catch (error) {
      closeQuietly(api, session.session);
      throw error;
    }
  }

  /**
   * `kek create --pkcs11`: generates the AES-256 key inside the token, non-extractable and
   * sensitive, labelled `options.key`. Refuses when a key with that label exists.
   */
  static async create(options: Pkcs11KekOptions): Promise<Pkcs11Kek> {
    validate(options);
    const api = moduleFor(options.module);
    const b = loadBinding();
    const session = openSession(api, options);
    try {
      if (findKeys(api, session, options.key).length > 0) {
        throw new InvalidOptionError(
          '--pkcs11-key',
          `token "${options.token}" already holds a key labelled "${options.key}"; choose another label`,
        );
      }
      api.C_GenerateKey(session, { mechanism: b.CKM_AES_KEY_GEN! }, [
        { type: b.CKA_CLASS!, value: b.CKO_SECRET_KEY },
        { type: b.CKA_KEY_TYPE!, value: b.CKK_AES },
        { type: b.CKA_VALUE_LEN!, value: 32 },
        { type: b.CKA_LABEL!, value: options.key },
        { type: b.CKA_TOKEN!, value: true },
        { type: b.CKA_PRIVATE!, value: true },
        { type: b.CKA_SENSITIVE!, value: true },
        { type: b.CKA_EXTRACTABLE!, value: false },
        { type: b.CKA_ENCRYPT!, value: true },
        { type: b.CKA_DECRYPT!, value: true },
      ]);
    } finally {
      closeQuietly(api, session);
    }
    return Pkcs11Kek.open(options);
  }

  async wrap(plaintext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    const iv = Buffer.from(this.#random.bytes(IV_LENGTH));
    const body = this.#run((s) => {
      this.#api.C_EncryptInit(s.session, this.#gcm(iv, aad), s.key);
      return this.#api.C_Encrypt(
        s.session,
        Buffer.from(plaintext),
        Buffer.alloc(plaintext.length + TAG_LENGTH),
      );
    });
    return Buffer.concat([iv, body]);
  }

  async unwrap(ciphertext: Uint8Array, aad: Uint8Array): Promise<Uint8Array> {
    if (ciphertext.length < IV_LENGTH + TAG_LENGTH) throw new DecryptionFailedError();
    const buf = Buffer.from(ciphertext);
    return this.#run((s) => {
      this.#api.C_DecryptInit(s.session, this.#gcm(buf.subarray(0, IV_LENGTH), aad), s.key);
      try {
        return Buffer.from(
          this.#api.C_Decrypt(s.session, buf.subarray(IV_LENGTH), Buffer.alloc(buf.length - IV_LENGTH)),
        );
      } catch (cause) {
        // SoftHSM (like some HSMs) reports a failed GCM tag as CKR_GENERAL_ERROR: a probe of the
        // token tells a bad ciphertext (token fine) from a token that went away.
        if (isTokenGone(cause, this.#b)) kekIdOf(this.#api, s);
        throw new DecryptionFailedError({ cause });
      }
    });
  }

  /** `undefined` when the token answers with this key; otherwise why not. Reconnects if it can. */
  async health(): Promise<string | undefined> {
    try {
      this.#run((s) => kekIdOf(this.#api, s));
      return undefined;
    } catch (error) {
      return (error as Error).message;
    }
  }

  /** Closes the session (the module stays initialized for the process). */
  close(): void {
    if (this.#current) closeQuietly(this.#api, this.#current.session);
    this.#current = undefined;
  }

  toJSON(): string {
    return `Pkcs11Kek(${this.id})`;
  }
  [Symbol.for('nodejs.util.inspect.custom')](): string {
    return this.toJSON();
  }

  #gcm(iv: Buffer, aad: Uint8Array) {
    return {
      mechanism: this.#b.CKM_AES_GCM!,
      parameter: {
        type: this.#b.CK_PARAMS_AES_GCM!,
        iv: Buffer.from(iv),
        aad: Buffer.from(aad),
        ivBits: IV_LENGTH * 8,
        tagBits: TAG_LENGTH * 8,
      },
    };
  }

  /** Runs one token operation; a lost token becomes KekUnavailableError and a reconnect next time. */
  #run<T>(op: (s: Session) => T): T {
    let session = this.#current;
    try {
      if (!session) {
        session = reconnect(this.#api, this.#options);
        if (kekIdOf(this.#api, session) !== this.id) {
          closeQuietly(this.#api, session.session);
          throw new KekUnavailableError(
            `the key labelled "${this.#options.key}" in token "${this.#options.token}" is no longer KEK ${this.id}`,
          );
        }
        this.#current = session;
      }
      return op(session);
    } catch (error) {
      if (error instanceof DecryptionFailedError) throw error;
      if (session) closeQuietly(this.#api, session.session);
      this.#current = undefined;
      if (error instanceof KekUnavailableError) throw error;
      throw new KekUnavailableError(
        `the PKCS#11 token "${this.#options.token}" is not available (${reason(error)}); keys already unwrapped keep serving, and it reconnects when the token is back`,
        { cause: error },
      );
    }
  }
}

function validate(options: Pkcs11KekOptions): void {
  if (!options || typeof options !== 'object')
    throw new InvalidOptionError('kek.pkcs11', 'must be an object');
  for (const field of ['module', 'token', 'key'] as const) {
    if (typeof options[field] !== 'string' || options[field] === '') {
      throw new InvalidOptionError(`kek.pkcs11.${field}`, 'must be a non-empty string');
    }
  }
  if (typeof options.pin !== 'string' || options.pin === '') {
    throw new InvalidOptionError(
      'kek.pkcs11.pinEnv',
      'must name an environment variable holding the token PIN',
    );
  }
}

function openSession(api: Pkcs11Api, options: Pkcs11KekOptions): Handle {
  const b = loadBinding();
  const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trim() === options.token);
  if (!slot) {
    throw new Pkcs11KekError(
      'ERR_PKCS11_TOKEN_NOT_FOUND',
      `no PKCS#11 token labelled "${options.token}" in module ${options.module}`,
    );
  }
  const session = api.C_OpenSession(slot, b.CKF_SERIAL_SESSION! | b.CKF_RW_SESSION!);
  try {
    api.C_Login(session, b.CKU_USER!, options.pin);
  } catch (cause) {
    if ((cause as { code?: number }).code !== b.CKR_USER_ALREADY_LOGGED_IN) {
      closeQuietly(api, session);
      const code = (cause as { code?: number }).code;
      if (code === b.CKR_PIN_INCORRECT || code === b.CKR_PIN_LEN_RANGE || code === b.CKR_PIN_LOCKED) {
        throw new Pkcs11KekError(
          'ERR_PKCS11_PIN',
          `the PIN for PKCS#11 token "${options.token}" was refused (${reason(cause)})`,
        );
      }
      throw cause;
    }
  }
  return session;
}

function findKeys(api: Pkcs11Api, session: Handle, label: string): Handle[] {
  const b = loadBinding();
  api.C_FindObjectsInit(session, [
    { type: b.CKA_CLASS!, value: b.CKO_SECRET_KEY },
    { type: b.CKA_LABEL!, value: label },
  ]);
  try {
    return api.C_FindObjects(session, 2);
  } finally {
    api.C_FindObjectsFinal(session);
  }
}

/**
 * After the token went away the module may keep a stale slot list (SoftHSM does): when connecting
 * fails, the module is finalized and initialized again (it is this process's alone) and retried.
 */
function reconnect(api: Pkcs11Api, options: Pkcs11KekOptions): Session {
  try {
    return connect(api, options, 'reconnect');
  } catch {
    try {
      api.C_Finalize();
    } catch {
      // not initialized, or already finalized
    }
    api.C_Initialize();
    return connect(api, options, 'reconnect');
  }
}

function connect(api: Pkcs11Api, options: Pkcs11KekOptions, _why: 'open' | 'reconnect'): Session {
  const b = loadBinding();
  const session = openSession(api, options);
  try {
    const keys = findKeys(api, session, options.key);
    if (keys.length !== 1) {
      throw new Pkcs11KekError(
        'ERR_PKCS11_KEY_NOT_FOUND',
        keys.length === 0
          ? `no key labelled "${options.key}" in PKCS#11 token "${options.token}" (create one with: temporal-keyring kek create --pkcs11-...)`
          : `more than one key is labelled "${options.key}" in PKCS#11 token "${options.token}"`,
      );
    }
    const key = keys[0]!;
    const attrs = api.C_GetAttributeValue(session, key, [
      { type: b.CKA_KEY_TYPE! },
      { type: b.CKA_EXTRACTABLE! },
      { type: b.CKA_SENSITIVE! },
    ]);
    const keyType = asNumber(attrs[0]?.value);
    const extractable = asBool(attrs[1]?.value);
    const sensitive = asBool(attrs[2]?.value);
    if (keyType !== b.CKK_AES) {
      throw new Pkcs11KekError(
        'ERR_PKCS11_KEY_NOT_FOUND',
        `the key labelled "${options.key}" in PKCS#11 token "${options.token}" is not an AES key`,
      );
    }
    if ((extractable || !sensitive) && !options.allowExtractable) {
      throw new Pkcs11KekError(
        'ERR_PKCS11_KEY_EXTRACTABLE',
        `the key labelled "${options.key}" in PKCS#11 token "${options.token}" can leave the token (extractable or not sensitive); use a non-extractable key (temporal-keyring kek create --pkcs11-...) or allow it explicitly (allowExtractable)`,
      );
    }
    return { session, key };
  } catch (error) {
    closeQuietly(api, session);
    throw error;
  }
}

/** The key's fingerprint: SHA-256 over its AES encryption of one constant block (a key check value). */
function kekIdOf(api: Pkcs11Api, s: Session): string {
  const b = loadBinding();
  api.C_EncryptInit(s.session, { mechanism: b.CKM_AES_ECB! }, s.key);
  const kcv = api.C_Encrypt(s.session, ID_BLOCK, Buffer.alloc(16));
  return createHash('sha256')
    .update('temporal-keyring kek id pkcs11\0')
    .update(kcv)
    .digest()
    .subarray(0, 8)
    .toString('hex');
}

function isTokenGone(error: unknown, b: Pkcs11Module): boolean {
  const code = (error as { code?: number }).code;
  return (
    code === b.CKR_DEVICE_REMOVED ||
    code === b.CKR_TOKEN_NOT_PRESENT ||
    code === b.CKR_SESSION_HANDLE_INVALID ||
    code === b.CKR_SESSION_CLOSED ||
    code === b.CKR_DEVICE_ERROR ||
    code === b.CKR_KEY_HANDLE_INVALID ||
    code === b.CKR_OBJECT_HANDLE_INVALID ||
    code === b.CKR_GENERAL_ERROR
  );
}

function closeQuietly(api: Pkcs11Api, session: Handle): void {
  try {
    api.C_CloseSession(session);
  } catch {
    // already gone with its token
  }
}

function asBool(value: unknown): boolean {
  if (Buffer.isBuffer(value)) return value.length > 0 && value[0] !== 0;
  return Boolean(value);
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === 'number') return value;
  if (Buffer.isBuffer(value) && value.length > 0) return value.readUIntLE(0, Math.min(value.length, 6));
  return undefined;
}

/** A PKCS#11 return code's name, never anything secret. */
function reason(error: unknown): string {
  const message = (error as { message?: unknown })?.message;
  return typeof message === 'string' ? message.split('\n')[0]!.slice(0, 120) : 'error';
}
