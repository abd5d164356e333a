import { CommanderError } from 'commander';
import { isKeyringError, type KeyringErrorCode } from '../src/errors.ts';

/**
 * Exit codes of `temporal-keyring`, one per kind of failure a script may want to tell apart.
 * Stable: documented in docs/cli.md.
 */
export const EXIT = {
  ok: 0,
  /** Unexpected failure. */
  error: 1,
  /** Bad flag, argument, option, config key or namespace name. */
  usage: 2,
  /** The namespace or key version does not exist. */
  notFound: 3,
  /** Wrong or unreadable KEK, corrupt keystore, or a payload that does not decrypt. */
  kek: 4,
  /** The change is not allowed in the current state (invalid transition, already exists, deprecated, destroyed). */
  state: 5,
  /** The keystore cannot be reached or locked. */
  unavailable: 6,
} as const;

const BY_CODE: Record<KeyringErrorCode, number> = {
  ERR_INVALID_OPTION: EXIT.usage,
  ERR_INVALID_NAMESPACE: EXIT.usage,
  ERR_NAMESPACE_NOT_FOUND: EXIT.notFound,
  ERR_KEY_VERSION_NOT_FOUND: EXIT.notFound,
  ERR_NO_ACTIVE_KEY: EXIT.notFound,
  ERR_INVALID_KEK: EXIT.kek,
  ERR_KEK_MISMATCH: EXIT.kek,
  ERR_KEYSTORE_CORRUPT: EXIT.kek,
  ERR_DECRYPTION_FAILED: EXIT.kek,
  ERR_MALFORMED_PAYLOAD: EXIT.kek,
  ERR_NAMESPACE_MISMATCH: EXIT.kek,
  ERR_INVALID_STATE_TRANSITION: EXIT.state,
  ERR_NAMESPACE_EXISTS: EXIT.state,
  ERR_KEY_VERSION_DEPRECATED: EXIT.state,
  ERR_KEY_VERSION_DESTROYED: EXIT.state,
  ERR_KEYSTORE_CONFLICT: EXIT.state,
  ERR_USAGE_LIMIT_REACHED: EXIT.state,
  ERR_KEY_BUDGET_EXHAUSTED: EXIT.state,
  ERR_KEYSTORE_UNAVAILABLE: EXIT.unavailable,
  ERR_LOCK_TIMEOUT: EXIT.unavailable,
  ERR_USAGE_RESERVATION_FAILED: EXIT.unavailable,
  ERR_REMOTE_CODEC_UNAVAILABLE: EXIT.unavailable,
  ERR_REMOTE_CODEC_TIMEOUT: EXIT.unavailable,
  ERR_REMOTE_CODEC_REJECTED: EXIT.error,
  ERR_NOT_EXPORTABLE: EXIT.state,
  ERR_SEALED: EXIT.unavailable,
  ERR_KEK_UNAVAILABLE: EXIT.unavailable,
  ERR_UNSEAL_SHARE_MALFORMED: EXIT.usage,
  ERR_UNSEAL_SHARE_DUPLICATE: EXIT.usage,
  ERR_UNSEAL_SHARE_FOREIGN: EXIT.kek,
  ERR_UNSEAL_CHECK_FAILED: EXIT.kek,
  ERR_PKCS11_MODULE: EXIT.kek,
  ERR_PKCS11_TOKEN_NOT_FOUND: EXIT.kek,
  ERR_PKCS11_PIN: EXIT.kek,
  ERR_PKCS11_KEY_NOT_FOUND: EXIT.kek,
  ERR_PKCS11_KEY_EXTRACTABLE: EXIT.kek,
  // Faults of this process, not of what the user typed: the generic failure.
  ERR_KEYRING_CLOSED: EXIT.error,
  ERR_METER_CLOSED: EXIT.error,
  ERR_RANDOM_SOURCE_FAILED: EXIT.error,
  ERR_KEY_PROVIDER_FAULT: EXIT.error,
  ERR_INTERNAL: EXIT.error,
  // A key used after it was disposed or revoked: a bug or a shutdown race.
  ERR_KEY_REVOKED: EXIT.error,
};

/** The exit code of an error code (for instance one a server answered with). */
export function exitCodeOf(code: string): number {
  return (BY_CODE as Record<string, number>)[code] ?? EXIT.error;
}

/**
 * The one place errors become output: a one-line message on stderr and an exit code. Expected
 * errors (a {@link KeyringError}, a usage error) never print a stack; unexpected ones do only when
 * `TEMPORAL_KEYRING_DEBUG` is set. Our messages never hold secrets, so they are printed as they are.
 */
export function reportError(
  error: unknown,
  write: (text: string) => void = (t) => process.stderr.write(t),
): number {
  if (error instanceof CommanderError) {
    // Commander has already printed its message (help, version, or a usage error).
    return error.exitCode === 0 ? EXIT.ok : EXIT.usage;
  }
  if (isKeyringError(error)) {
    // A hint is unauthenticated (what the payload claims): labelled as such.
    const hint = error.hint ? ` (unauthenticated hint: ${error.hint})` : '';
    write(`temporal-keyring: ${error.message} [${error.code}]${hint}\n`);
    return BY_CODE[error.code] ?? EXIT.error;
  }
  const e = error as { message?: unknown; stack?: unknown; code?: unknown };
  if (e && e.code === 'EPIPE') return EXIT.ok; // stdout closed early (`| head`): not an error
  write(`temporal-keyring: unexpected error: ${String(e?.message ?? error)}\n`);
  if (process.env.TEMPORAL_KEYRING_DEBUG) write(`${String(e?.stack ?? '')}\n`);
  else write('(set TEMPORAL_KEYRING_DEBUG=1 for details)\n');
  return EXIT.error;
}
