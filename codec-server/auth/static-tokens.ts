import { hash, timingSafeEqual } from 'node:crypto';
import type { Operation, TokenConfig } from '../../src/config/server-config.ts';
import type { Identity } from './identity.ts';

/**
 * Static API tokens, for the CLI's `--codec-auth` and for scripts. The configuration holds only the
 * SHA-256 of each token (tokens are high-entropy random strings, so a fast hash suffices), and each
 * token is scoped to namespaces (or `*`) and operations.
 */
export class StaticTokens {
  readonly #tokens: { identity: Identity; hash: Buffer }[];

  constructor(tokens: readonly TokenConfig[]) {
    // One identity per token, made once: a request only finds it.
    this.#tokens = tokens.map((config) => ({
      identity: identityOf(config),
      hash: Buffer.from(config.sha256, 'hex'),
    }));
  }

  get size(): number {
    return this.#tokens.length;
  }

  /** The identity of a presented token, or undefined. Compares against every entry in constant time. */
  match(presented: string): Identity | undefined {
    const hash = sha256(presented);
    let found: Identity | undefined;
    for (const t of this.#tokens) {
      // No early exit: the time taken does not depend on which entry (if any) matched.
      if (timingSafeEqual(hash, t.hash) && !found) found = t.identity;
    }
    return found;
  }
}

function identityOf({ name, namespaces, operations }: TokenConfig): Identity {
  const anyNamespace = namespaces.includes('*');
  const admin = operations.includes('admin');
  return Object.freeze({
    kind: 'token' as const,
    subject: name,
    can(namespace: string, operation: Operation): boolean {
      const nsOk = anyNamespace || namespaces.includes(namespace);
      return nsOk && (admin || operations.includes(operation));
    },
  });
}

export function sha256(token: string): Buffer {
  // The one-shot `crypto.hash` (Node >= 20.12): no Hash object per request.
  return hash('sha256', token, 'buffer');
}

/** What to put in `auth.tokens[].sha256` for a token. */
export function tokenSha256Hex(token: string): string {
  return sha256(token).toString('hex');
}
