import { isKeyringError, type KeyringErrorCode } from '../src/errors.ts';
import { HttpError } from './http-error.ts';

/**
 * The one place where an error becomes an HTTP answer. Body: `{ "code": "...", "message": "..." }`,
 * plus `"hint"` on a decryption failure whose payload claims something (unauthenticated: see
 * `DecryptionFailedError`). Messages of our errors never hold plaintext, keys or tokens (see
 * src/errors.ts); anything else becomes an opaque 500 so that no stack trace or foreign message
 * leaks. Audit records and metric labels take `body.code` only.
 */
export interface HttpErrorAnswer {
  status: number;
  body: { code: string; message: string; hint?: string };
  headers: Record<string, string>;
}

/**
 * The HTTP status of every library error code. Total on purpose: a code added to
 * `KEYRING_ERROR_CODES` without a status here fails the type check (test/codec-server/error-mapping
 * .test.ts iterates every code as well). Caller mistakes are 4xx; faults of this server or of what
 * it depends on are 5xx, never blamed on the request.
 */
export const KEYRING_STATUS: Readonly<Record<KeyringErrorCode, number>> = {
  // The request's fault: its options, namespace, payloads or the versions they name.
  ERR_INVALID_OPTION: 400,
  ERR_INVALID_NAMESPACE: 400,
  ERR_NAMESPACE_MISMATCH: 400,
  ERR_MALFORMED_PAYLOAD: 400,
  ERR_DECRYPTION_FAILED: 400,
  ERR_KEY_VERSION_NOT_FOUND: 400,
  ERR_KEY_VERSION_DEPRECATED: 400,
  ERR_KEY_VERSION_DESTROYED: 400,
  // An operator's unseal key that is malformed, repeated, of another keystore or that fails the check.
  ERR_UNSEAL_SHARE_MALFORMED: 400,
  ERR_UNSEAL_SHARE_DUPLICATE: 400,
  ERR_UNSEAL_SHARE_FOREIGN: 400,
  ERR_UNSEAL_CHECK_FAILED: 400,
  ERR_NAMESPACE_NOT_FOUND: 404,
  ERR_NAMESPACE_EXISTS: 409,
  ERR_INVALID_STATE_TRANSITION: 409,
  ERR_KEYSTORE_CONFLICT: 409,
  // Waiting helps: the keystore comes back, a lock frees, a rotation makes a fresh key, another
  // instance takes the request while this one shuts down.
  ERR_KEYSTORE_UNAVAILABLE: 503,
  ERR_LOCK_TIMEOUT: 503,
  ERR_USAGE_RESERVATION_FAILED: 503,
  ERR_USAGE_LIMIT_REACHED: 503,
  ERR_KEY_BUDGET_EXHAUSTED: 503,
  ERR_NO_ACTIVE_KEY: 503,
  ERR_KEYRING_CLOSED: 503,
  ERR_METER_CLOSED: 503,
  // A codec server never calls another one; listed so that the map names every code.
  ERR_REMOTE_CODEC_UNAVAILABLE: 502,
  ERR_REMOTE_CODEC_TIMEOUT: 504,
  ERR_REMOTE_CODEC_REJECTED: 502,
  ERR_NOT_EXPORTABLE: 403,
  // An operator unseals the keystore, or the HSM comes back: then the same request succeeds.
  ERR_SEALED: 503,
  ERR_KEK_UNAVAILABLE: 503,
  // The server's own setup or code is broken: not the caller's fault.
  ERR_KEK_MISMATCH: 500,
  ERR_INVALID_KEK: 500,
  ERR_KEYSTORE_CORRUPT: 500,
  ERR_PKCS11_MODULE: 500,
  ERR_PKCS11_TOKEN_NOT_FOUND: 500,
  ERR_PKCS11_PIN: 500,
  ERR_PKCS11_KEY_NOT_FOUND: 500,
  ERR_PKCS11_KEY_EXTRACTABLE: 500,
  ERR_RANDOM_SOURCE_FAILED: 500,
  ERR_KEY_PROVIDER_FAULT: 500,
  ERR_INTERNAL: 500,
  // A key (prepared key, key handle) used after its owner revoked it: a bug or shutdown race.
  ERR_KEY_REVOKED: 500,
};

const INTERNAL: HttpErrorAnswer = {
  status: 500,
  body: { code: 'ERR_INTERNAL', message: 'internal error' },
  headers: {},
};

/**
 * What callers read for errors of the server's own side, whose library messages name server
 * file-system paths, database hosts or internals (`keystore file namespaces/x/versions.json in
 * /srv/... is corrupt`): a fixed, path-free message per code. The full message goes to the server
 * log (the app's error handler and `/readyz` log it), where the operator needs it.
 */
export const PUBLIC_MESSAGES: Partial<Record<KeyringErrorCode, string>> = {
  ERR_KEYSTORE_CORRUPT:
    'the keystore is corrupt: the server log names what is damaged; the operator restores it from a backup',
  ERR_KEYSTORE_UNAVAILABLE: 'the keystore is unavailable: try again later (the server log has the cause)',
  ERR_LOCK_TIMEOUT: 'the keystore is busy (its lock was not free in time): try again',
  ERR_USAGE_RESERVATION_FAILED: 'encryption usage could not be recorded in the keystore: try again later',
  ERR_KEYSTORE_CONFLICT: 'a concurrent change to the same keys won: read the current state and retry',
  ERR_KEK_MISMATCH: "the server's KEK does not match the keystore: the server log has the details",
  ERR_INVALID_KEK: "the server's KEK is invalid: the server log has the details",
};

/** body-parser's error `type`s, as statuses and codes. */
const BODY_PARSER: Record<string, { status: number; code: string; message: string }> = {
  'entity.too.large': {
    status: 413,
    code: 'ERR_PAYLOAD_TOO_LARGE',
    message: 'request body is larger than the limit',
  },
  'entity.parse.failed': {
    status: 400,
    code: 'ERR_MALFORMED_REQUEST',
    message: 'request body is not valid JSON',
  },
  'encoding.unsupported': {
    status: 415,
    code: 'ERR_UNSUPPORTED_MEDIA_TYPE',
    message: 'unsupported content encoding',
  },
  'charset.unsupported': {
    status: 415,
    code: 'ERR_UNSUPPORTED_MEDIA_TYPE',
    message: 'unsupported charset (use utf-8)',
  },
  'request.aborted': { status: 400, code: 'ERR_MALFORMED_REQUEST', message: 'request aborted' },
  'request.size.invalid': {
    status: 400,
    code: 'ERR_MALFORMED_REQUEST',
    message: 'request size did not match content length',
  },
};

export function toHttpError(error: unknown): HttpErrorAnswer {
  if (error instanceof HttpError) {
    return {
      status: error.status,
      body: { code: error.code, message: error.message },
      headers: error.headers,
    };
  }
  if (isKeyringError(error)) {
    // The code and our message; a decryption failure's unauthenticated `hint` goes to the caller
    // who sent the bytes it was read from, in a field of its own, never as the code.
    const status = Object.hasOwn(KEYRING_STATUS, error.code) ? KEYRING_STATUS[error.code] : undefined;
    // A code from outside the map (a foreign subclass, a newer library): ours to fix, never a 400.
    if (status === undefined) return { ...INTERNAL, body: { ...INTERNAL.body } };
    const message = Object.hasOwn(PUBLIC_MESSAGES, error.code) ? PUBLIC_MESSAGES[error.code]! : error.message;
    const body: HttpErrorAnswer['body'] = { code: error.code, message };
    if (error.hint !== undefined) body.hint = error.hint;
    return { status, body, headers: {} };
  }
  const type = (error as { type?: unknown } | null)?.type;
  if (typeof type === 'string' && BODY_PARSER[type]) {
    const { status, code, message } = BODY_PARSER[type];
    return { status, body: { code, message }, headers: {} };
  }
  // body-parser's other read errors (a gzip/deflate body that does not inflate: zlib's
  // "incorrect header check") are http-errors 4xx without a `type`; their messages are not ours.
  const status = (error as { status?: unknown } | null)?.status;
  if (error instanceof URIError && status === 400) {
    // The router's "Failed to decode param": a path segment that is not valid percent-encoding.
    return {
      status: 400,
      body: { code: 'ERR_MALFORMED_REQUEST', message: 'request path is not valid percent-encoded UTF-8' },
      headers: {},
    };
  }
  if (typeof status === 'number' && status >= 400 && status < 500 && (error as { expose?: unknown }).expose) {
    return {
      status: 400,
      body: { code: 'ERR_MALFORMED_REQUEST', message: 'request body could not be read' },
      headers: {},
    };
  }
  return { ...INTERNAL, body: { ...INTERNAL.body } };
}
