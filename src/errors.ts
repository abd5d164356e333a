/**
 * Every error this library throws on purpose is a {@link KeyringError} with a stable `code`.
 *
 * Codes are part of the public API: the codec server maps them to HTTP statuses, the CLI to exit
 * codes, and users match on them. Messages are for humans and may change. No message ever holds
 * plaintext, key material or a token; decryption failures are deliberately opaque (no oracle).
 */

/**
 * Every stable code, as a value so that tests and mappings can iterate it. A new code added here
 * must be mapped to an HTTP status (`codec-server/error-mapping.ts`) and a CLI exit code
 * (`cli/exit-codes.ts`); both maps are typed over {@link KeyringErrorCode}, so a missing entry
 * fails the type check.
 *
 * Two families: caller mistakes (a bad option, an unknown namespace, a payload that does not
 * decrypt: 4xx) and faults of this process or its dependencies (a keystore that is down, a closed
 * keyring, a random source or key provider that breaks its contract, a broken invariant: 5xx).
 */
export const KEYRING_ERROR_CODES = [
  // Caller mistakes
  'ERR_INVALID_OPTION',
  'ERR_INVALID_NAMESPACE',
  'ERR_NAMESPACE_NOT_FOUND',
  'ERR_NAMESPACE_EXISTS',
  'ERR_NO_ACTIVE_KEY',
  'ERR_KEY_VERSION_NOT_FOUND',
  'ERR_KEY_VERSION_DEPRECATED',
  'ERR_KEY_VERSION_DESTROYED',
  'ERR_INVALID_STATE_TRANSITION',
  'ERR_NAMESPACE_MISMATCH',
  'ERR_MALFORMED_PAYLOAD',
  'ERR_DECRYPTION_FAILED',
  'ERR_NOT_EXPORTABLE',
  'ERR_UNSEAL_SHARE_MALFORMED',
  'ERR_UNSEAL_SHARE_DUPLICATE',
  'ERR_UNSEAL_SHARE_FOREIGN',
  // Setup, storage and capacity
  'ERR_INVALID_KEK',
  'ERR_KEK_MISMATCH',
  'ERR_KEYSTORE_CORRUPT',
  'ERR_KEYSTORE_CONFLICT',
  'ERR_KEYSTORE_UNAVAILABLE',
  'ERR_LOCK_TIMEOUT',
  'ERR_USAGE_LIMIT_REACHED',
  'ERR_KEY_BUDGET_EXHAUSTED',
  'ERR_USAGE_RESERVATION_FAILED',
  'ERR_REMOTE_CODEC_UNAVAILABLE',
  'ERR_REMOTE_CODEC_TIMEOUT',
  'ERR_REMOTE_CODEC_REJECTED',
  'ERR_SEALED',
  'ERR_UNSEAL_CHECK_FAILED',
  'ERR_KEK_UNAVAILABLE',
  'ERR_PKCS11_MODULE',
  'ERR_PKCS11_TOKEN_NOT_FOUND',
  'ERR_PKCS11_PIN',
  'ERR_PKCS11_KEY_NOT_FOUND',
  'ERR_PKCS11_KEY_EXTRACTABLE',
  // Runtime faults: never the caller's doing
  'ERR_KEYRING_CLOSED',
  'ERR_KEY_REVOKED',
  'ERR_METER_CLOSED',
  'ERR_RANDOM_SOURCE_FAILED',
  'ERR_KEY_PROVIDER_FAULT',
  'ERR_INTERNAL',
] as const;

export type KeyringErrorCode = (typeof KEYRING_ERROR_CODES)[number];

/** Why a PKCS#11 KEK could not be used; each is raised before anything is written. */
export type Pkcs11ErrorCode = Extract<KeyringErrorCode, `ERR_PKCS11_${string}`>;

/** Base class of every error with a stable code. */
export class KeyringError extends Error {
  /** The code every instance of this class carries. */
  static code: KeyringErrorCode = 'ERR_INVALID_OPTION';
  readonly code: KeyringErrorCode;
  /**
   * A hint about the likely cause read from **unauthenticated** bytes (which keystore or namespace
   * a payload claims): for a person finding the right codec. Anyone can forge it, so it is never
   * the `code`, never a metric label and never a reason to act. Kept apart from the message;
   * callers show it labelled (the HTTP body's `hint`, the CLI's "unauthenticated hint").
   */
  hint?: string;

  constructor(code: KeyringErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = new.target.name;
  }
}

/**
 * Adds a labelled hint to an error (once: a shared error is not hinted twice) and returns it. The
 * code stays as it was: a hint explains, it does not reclassify.
 */
export function withHint<E extends KeyringError>(error: E, hint: string): E {
  if (error.hint === undefined) error.hint = hint;
  return error;
}

/** An option, config key, flag or argument is invalid. The message names the field. */
export class InvalidOptionError extends KeyringError {
  static override code = 'ERR_INVALID_OPTION' as const;
  constructor(
    readonly field: string,
    message: string,
  ) {
    super('ERR_INVALID_OPTION', `${field}: ${message}`);
  }
}

/** A namespace name fails the allow-list (letters, digits, `.`, `-`, `_`; bounded length). */
export class InvalidNamespaceError extends KeyringError {
  static override code = 'ERR_INVALID_NAMESPACE' as const;
  constructor(message: string) {
    super('ERR_INVALID_NAMESPACE', message);
  }
}

export class NamespaceNotFoundError extends KeyringError {
  static override code = 'ERR_NAMESPACE_NOT_FOUND' as const;
  constructor(readonly namespace: string) {
    super(
      'ERR_NAMESPACE_NOT_FOUND',
      `namespace "${namespace}" has no keys (create them with: temporal-keyring keys create --namespace ${namespace})`,
    );
  }
}

export class NamespaceExistsError extends KeyringError {
  static override code = 'ERR_NAMESPACE_EXISTS' as const;
  constructor(readonly namespace: string) {
    super('ERR_NAMESPACE_EXISTS', `namespace "${namespace}" already has keys`);
  }
}

export class NoActiveKeyError extends KeyringError {
  static override code = 'ERR_NO_ACTIVE_KEY' as const;
  constructor(readonly namespace: string) {
    super('ERR_NO_ACTIVE_KEY', `namespace "${namespace}" has no active key version`);
  }
}

export class KeyVersionNotFoundError extends KeyringError {
  static override code = 'ERR_KEY_VERSION_NOT_FOUND' as const;
  constructor(
    readonly namespace: string,
    readonly version: number,
  ) {
    super('ERR_KEY_VERSION_NOT_FOUND', `namespace "${namespace}" has no key version ${version}`);
  }
}

/** The version is deprecated: decryption is refused unless explicitly allowed. */
export class KeyVersionDeprecatedError extends KeyringError {
  static override code = 'ERR_KEY_VERSION_DEPRECATED' as const;
  constructor(
    readonly namespace: string,
    readonly version: number,
  ) {
    super(
      'ERR_KEY_VERSION_DEPRECATED',
      `key version ${version} of namespace "${namespace}" is deprecated and may not decrypt (allow it with allowDeprecatedDecrypt, or set it back to inactive)`,
    );
  }
}

export class KeyVersionDestroyedError extends KeyringError {
  static override code = 'ERR_KEY_VERSION_DESTROYED' as const;
  constructor(
    readonly namespace: string,
    readonly version: number,
    readonly destroyedAt: number | undefined,
  ) {
    const when = destroyedAt === undefined ? '' : ` on ${new Date(destroyedAt).toISOString()}`;
    super(
      'ERR_KEY_VERSION_DESTROYED',
      `key version ${version} of namespace "${namespace}" was destroyed${when}; payloads encrypted with it cannot be decrypted`,
    );
  }
}

export class InvalidStateTransitionError extends KeyringError {
  static override code = 'ERR_INVALID_STATE_TRANSITION' as const;
  constructor(message: string) {
    super('ERR_INVALID_STATE_TRANSITION', message);
  }
}

/**
 * A prepublished version may not become active yet: its propagation delay (the time every process
 * needs to learn it) has not passed. Same code as any refused transition; `activatableAt` (epoch
 * ms) says when it may, and `force` is the explicit way past it.
 */
export class PropagationPendingError extends InvalidStateTransitionError {
  constructor(
    message: string,
    readonly activatableAt: number,
  ) {
    super(message);
  }
}

/** A payload names (or its encryption context binds) another namespace than the one decoding it. */
export class NamespaceMismatchError extends KeyringError {
  static override code = 'ERR_NAMESPACE_MISMATCH' as const;
  constructor(message: string) {
    super('ERR_NAMESPACE_MISMATCH', message);
  }
}

/** A payload claims to be ours but its metadata or envelope is not well formed. */
export class MalformedPayloadError extends KeyringError {
  static override code = 'ERR_MALFORMED_PAYLOAD' as const;
  constructor(message: string) {
    super('ERR_MALFORMED_PAYLOAD', message);
  }
}

/**
 * Authentication of a ciphertext failed. Deliberately says nothing about why (wrong key, flipped
 * bit, wrong context, truncation all look the same), so that it cannot serve as an oracle.
 *
 * `hint`, when present, is **unauthenticated**: what the payload's own bytes claim (for example
 * the namespace its header names), read after the failure to help a person find the right codec.
 * Anyone can forge it. It is never the `code`, never a metric label, and never a reason to act.
 */
export class DecryptionFailedError extends KeyringError {
  static override code = 'ERR_DECRYPTION_FAILED' as const;
  constructor(options?: { cause?: unknown; hint?: string }) {
    super(
      'ERR_DECRYPTION_FAILED',
      'decryption failed',
      options && 'cause' in options ? { cause: options.cause } : undefined,
    );
    if (options?.hint !== undefined) this.hint = options.hint;
  }
}

/** A KEK could not be read or parsed (bad base64, wrong length, unreadable file). */
export class InvalidKekError extends KeyringError {
  static override code = 'ERR_INVALID_KEK' as const;
  constructor(message: string) {
    super('ERR_INVALID_KEK', message);
  }
}

/** The KEK given is not the one this keystore's keys are wrapped with. Detected before any write. */
export class KekMismatchError extends KeyringError {
  static override code = 'ERR_KEK_MISMATCH' as const;
  constructor(message: string) {
    super('ERR_KEK_MISMATCH', message);
  }
}

/** Stored data failed to parse or authenticate. Never silently repaired or replaced. */
export class KeystoreCorruptError extends KeyringError {
  static override code = 'ERR_KEYSTORE_CORRUPT' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KEYSTORE_CORRUPT', message, options);
  }
}

/** A precondition of an atomic keystore change no longer holds (someone else changed it first). */
export class KeystoreConflictError extends KeyringError {
  static override code = 'ERR_KEYSTORE_CONFLICT' as const;
  constructor(message: string) {
    super('ERR_KEYSTORE_CONFLICT', message);
  }
}

export class KeystoreUnavailableError extends KeyringError {
  static override code = 'ERR_KEYSTORE_UNAVAILABLE' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KEYSTORE_UNAVAILABLE', message, options);
  }
}

export class LockTimeoutError extends KeyringError {
  static override code = 'ERR_LOCK_TIMEOUT' as const;
  constructor(message: string) {
    super('ERR_LOCK_TIMEOUT', message);
  }
}

/**
 * The active key version reached its `maxEncryptions` budget. With the policy
 * `onBudgetExhausted: "refuse"` encryption fails closed with this error (HTTP 503) until the key is
 * rotated; with the default `"rotate"` the meter has just rotated (`rotated`), and the keyring
 * retries with the new version, so callers do not see it.
 */
export class KeyBudgetExhaustedError extends KeyringError {
  static override code = 'ERR_KEY_BUDGET_EXHAUSTED' as const;
  constructor(
    readonly namespace: string,
    readonly version: number,
    readonly maxEncryptions: number,
    /** True when an emergency rotation made another version active: encrypt again with it. */
    readonly rotated = false,
  ) {
    super(
      'ERR_KEY_BUDGET_EXHAUSTED',
      rotated
        ? `key version ${version} of namespace "${namespace}" spent its budget of ${maxEncryptions} encryptions; a new version is active`
        : `key version ${version} of namespace "${namespace}" spent its budget of ${maxEncryptions} encryptions and the policy refuses further encryptions with it; rotate the key (temporal-keyring keys rotate --namespace ${namespace})`,
    );
  }
}

/**
 * The key version reached the hard stop of 2^32 encryptions (the AES-GCM limit for random IVs);
 * it must be rotated before encrypting more.
 */
export class UsageLimitReachedError extends KeyringError {
  static override code = 'ERR_USAGE_LIMIT_REACHED' as const;
  constructor(
    readonly namespace: string,
    readonly version: number,
  ) {
    super(
      'ERR_USAGE_LIMIT_REACHED',
      `key version ${version} of namespace "${namespace}" reached its encryption limit`,
    );
  }
}

/** Encryptions could not be reserved (keystore unreachable) and the reserved block is spent. */
export class UsageReservationError extends KeyringError {
  static override code = 'ERR_USAGE_RESERVATION_FAILED' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_USAGE_RESERVATION_FAILED', message, options);
  }
}

/**
 * The keyring was closed: it hands out no more keys. Seen while a process shuts down (a request
 * that arrived after `close()` began), or when a caller keeps a keyring past its life.
 */
export class KeyringClosedError extends KeyringError {
  static override code = 'ERR_KEYRING_CLOSED' as const;
  constructor(message = 'the keyring is closed') {
    super('ERR_KEYRING_CLOSED', message);
  }
}

/**
 * Key material was used after its holder let go of it (a disposed engine key, a closed keyring's
 * handle). A bug or shutdown race in the caller, not bad input: the codec server answers 500.
 */
export class KeyRevokedError extends KeyringError {
  static override code = 'ERR_KEY_REVOKED' as const;
  constructor(message = 'the key was used after it was disposed') {
    super('ERR_KEY_REVOKED', message);
  }
}

/** The encryption meter was closed while encryptions were still being accounted (shutdown). */
export class MeterClosedError extends KeyringError {
  static override code = 'ERR_METER_CLOSED' as const;
  constructor(message = 'the encryption meter is closed') {
    super('ERR_METER_CLOSED', message);
  }
}

/** The random source broke its contract (returned fewer or more bytes than asked for). */
export class RandomSourceError extends KeyringError {
  static override code = 'ERR_RANDOM_SOURCE_FAILED' as const;
  constructor(message: string) {
    super('ERR_RANDOM_SOURCE_FAILED', message);
  }
}

/** A {@link KeyProvider}-like dependency answered for another key than asked, or with a bad key. */
export class KeyProviderFaultError extends KeyringError {
  static override code = 'ERR_KEY_PROVIDER_FAULT' as const;
  constructor(message: string) {
    super('ERR_KEY_PROVIDER_FAULT', message);
  }
}

/** An internal invariant does not hold: a bug in this library, not something the caller did. */
export class InternalError extends KeyringError {
  static override code = 'ERR_INTERNAL' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_INTERNAL', message, options);
  }
}

/**
 * A remote codec server could not be reached, or answered 503, on every attempt (connection
 * refused or reset, server restarting, keystore unavailable behind it). Waiting helps.
 */
export class RemoteCodecUnavailableError extends KeyringError {
  static override code = 'ERR_REMOTE_CODEC_UNAVAILABLE' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_REMOTE_CODEC_UNAVAILABLE', message, options);
  }
}

/** A remote codec server did not answer within the timeout. */
export class RemoteCodecTimeoutError extends KeyringError {
  static override code = 'ERR_REMOTE_CODEC_TIMEOUT' as const;
  constructor(message: string) {
    super('ERR_REMOTE_CODEC_TIMEOUT', message);
  }
}

/**
 * A remote codec server refused a request with a code that is not one of this library's (its own
 * HTTP-level codes: `ERR_UNAUTHORIZED`, `ERR_FORBIDDEN`, `ERR_PAYLOAD_TOO_LARGE`, ...). Library
 * codes come back as their own classes instead (see {@link keyringErrorFromCode}).
 */
export class RemoteCodecRejectedError extends KeyringError {
  static override code = 'ERR_REMOTE_CODEC_REJECTED' as const;
  constructor(
    /** HTTP status of the answer. */
    readonly status: number,
    /** The server's `code` (e.g. `ERR_FORBIDDEN`), or `undefined` when its body had none. */
    readonly remoteCode: string | undefined,
    message: string,
  ) {
    super('ERR_REMOTE_CODEC_REJECTED', message);
  }
}

/**
 * Key export was asked for a namespace whose policy does not say `exportable: true` (Vault
 * Transit's rule: keys leave the keyring only where that was decided beforehand).
 */
export class NotExportableError extends KeyringError {
  static override code = 'ERR_NOT_EXPORTABLE' as const;
  constructor(readonly namespace: string) {
    super(
      'ERR_NOT_EXPORTABLE',
      `namespace "${namespace}" is not exportable (set "exportable": true under namespaces.${namespace} in the config file, or POST /admin/namespaces/${namespace}/exportable; the mark is irreversible)`,
    );
  }
}

/**
 * The keystore is sealed: its KEK exists only as Shamir shares until a threshold of them is given
 * (`POST /admin/unseal`, `temporal-keyring operator unseal`). Nothing is decrypted or encrypted
 * until then. The server answers 503: an operator has to act, then the same request succeeds.
 */
export class SealedError extends KeyringError {
  static override code = 'ERR_SEALED' as const;
  constructor(
    message = 'the keystore is sealed: unseal it with a threshold of unseal keys (temporal-keyring operator unseal)',
  ) {
    super('ERR_SEALED', message);
  }
}

/** An unseal key that is not a well-formed share (typo, truncation, not a share at all). Not counted. */
export class UnsealShareMalformedError extends KeyringError {
  static override code = 'ERR_UNSEAL_SHARE_MALFORMED' as const;
  constructor(message: string) {
    super('ERR_UNSEAL_SHARE_MALFORMED', message);
  }
}

/** An unseal key already given in this unseal attempt. Not counted twice. */
export class UnsealShareDuplicateError extends KeyringError {
  static override code = 'ERR_UNSEAL_SHARE_DUPLICATE' as const;
  constructor(message: string) {
    super('ERR_UNSEAL_SHARE_DUPLICATE', message);
  }
}

/** An unseal key of another keystore, or of a KEK this keystore no longer uses. Not counted. */
export class UnsealShareForeignError extends KeyringError {
  static override code = 'ERR_UNSEAL_SHARE_FOREIGN' as const;
  constructor(message: string) {
    super('ERR_UNSEAL_SHARE_FOREIGN', message);
  }
}

/** A threshold of shares rebuilt a KEK that fails the keystore's check value: progress is reset. */
export class UnsealCheckFailedError extends KeyringError {
  static override code = 'ERR_UNSEAL_CHECK_FAILED' as const;
  constructor(message: string) {
    super('ERR_UNSEAL_CHECK_FAILED', message);
  }
}

/**
 * The KEK cannot be reached now (the HSM or its token went away). Keys already unwrapped keep
 * serving; new unwraps fail with this until the token is back, which needs no restart.
 */
export class KekUnavailableError extends KeyringError {
  static override code = 'ERR_KEK_UNAVAILABLE' as const;
  constructor(message: string, options?: { cause?: unknown }) {
    super('ERR_KEK_UNAVAILABLE', message, options);
  }
}

/** A PKCS#11 KEK is misconfigured: module, token, PIN or key. The code says which. */
export class Pkcs11KekError extends KeyringError {
  constructor(code: Pkcs11ErrorCode, message: string, options?: { cause?: unknown }) {
    super(code, message, options);
  }
}

const ERROR_CLASSES: readonly (typeof KeyringError)[] = [
  InvalidOptionError,
  InvalidNamespaceError,
  NamespaceNotFoundError,
  NamespaceExistsError,
  NoActiveKeyError,
  KeyVersionNotFoundError,
  KeyVersionDeprecatedError,
  KeyVersionDestroyedError,
  InvalidStateTransitionError,
  NamespaceMismatchError,
  MalformedPayloadError,
  DecryptionFailedError,
  InvalidKekError,
  KekMismatchError,
  KeystoreCorruptError,
  KeystoreConflictError,
  KeystoreUnavailableError,
  LockTimeoutError,
  UsageLimitReachedError,
  UsageReservationError,
  RemoteCodecUnavailableError,
  RemoteCodecTimeoutError,
  NotExportableError,
  SealedError,
  UnsealShareMalformedError,
  UnsealShareDuplicateError,
  UnsealShareForeignError,
  UnsealCheckFailedError,
  KekUnavailableError,
  KeyRevokedError,
] as unknown as (typeof KeyringError)[];

const CLASS_BY_CODE = new Map<string, typeof KeyringError>(ERROR_CLASSES.map((c) => [c.code, c]));

/**
 * The error of this library's class for `code`, with `message` as is: how a code that crossed a
 * wire (a codec server's `{code, message}`) becomes the same typed error on the other side.
 * Class-specific fields (`namespace`, `version`, ...) are not carried; `code`, class and message
 * are. `undefined` for a code that is not one of ours.
 */
export function keyringErrorFromCode(code: string, message: string): KeyringError | undefined {
  const cls = CLASS_BY_CODE.get(code);
  if (!cls) return undefined;
  // The base constructor with the subclass as new.target: right prototype and name, any arity.
  return Reflect.construct(KeyringError, [code, message], cls) as KeyringError;
}

export function isKeyringError(error: unknown): error is KeyringError {
  return error instanceof KeyringError;
}
