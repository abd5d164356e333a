import { InvalidNamespaceError } from '../errors.ts';

/** Longest namespace name accepted. Temporal's own limit is higher; ours bounds paths and URLs. */
export const MAX_NAMESPACE_LENGTH = 200;

const NAMESPACE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]*$/;

/**
 * Checks a Temporal namespace name against a strict allow-list: letters, digits, `.`, `-`, `_`,
 * starting with a letter or digit (so `.` and `..` are impossible), at most
 * {@link MAX_NAMESPACE_LENGTH} characters. Every entry point (codec, server, CLI, keystores)
 * validates before a name reaches a path, a URL or a query.
 */
export function validateNamespace(namespace: unknown): string {
  if (typeof namespace !== 'string' || namespace.length === 0) {
    throw new InvalidNamespaceError('namespace must be a non-empty string');
  }
  if (namespace.length > MAX_NAMESPACE_LENGTH) {
    throw new InvalidNamespaceError(`namespace is longer than ${MAX_NAMESPACE_LENGTH} characters`);
  }
  if (!NAMESPACE_PATTERN.test(namespace)) {
    throw new InvalidNamespaceError(
      `namespace ${JSON.stringify(namespace.slice(0, 64))} may hold only letters, digits, ".", "-" and "_", and must start with a letter or digit`,
    );
  }
  return namespace;
}

export function isValidNamespace(namespace: unknown): namespace is string {
  try {
    validateNamespace(namespace);
    return true;
  } catch {
    return false;
  }
}
