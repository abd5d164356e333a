import { hash, timingSafeEqual } from 'node:crypto';
import type { Operation, TokenConfig } from '../../src/config/server-config.ts';
import type { Identity } from './identity.ts';

/**
 * Static API tokens, for the CLI's `--codec-auth` and for scripts. The configuration holds only the
 * SHA-256 of each token (tokens are high-entropy random strings, so a fast hash suffices), and each
 * token is scoped to namespaces (or `*`) and operations.
 */
export class StaticTokens {
  readonly #tokens: { config: TokenConfig; hash: Buffer }[];

  constructor(tokens: readonly TokenConfig[]) {
    this.#tokens = tokens.map((config) => ({ config, hash: Buffer.from(config.sha256, 'hex') }));
  }

  get size(): number {
    return this.#tokens.length;
  }

  /** The identity of a presented token, or undefined. Compares against every entry in constant time. */
  match(presented: string): Identity | undefined {
    const hash = sha256(presented);
    let found: TokenConfig | undefined;
    for (const t of this.#tokens) {
      // No early exit: the time taken does not depend on which entry (if any) matched.
      if (timingSafeEqual(hash, t.hash) && !found) found = t.config;
    }
    if (!found) return undefined;
    const { name, namespaces, operations } = found;
    return {
      kind: 'token',
      subject: name,
      can(namespace: string, operation: Operation): boolean {
        const nsOk = namespaces.includes('*') || namespaces.includes(namespace);
        return nsOk && (operations.includes(operation) || operations.includes('admin'));
      },
    };
  }
}

export function sha256(token: string): Buffer {
  // The one-shot `crypto.hash` (Node >= 20.12): no Hash object per request.
  return hash('sha256', token, 'buffer');
}

/** What to put in `auth.tokens[].sha256` for a token. */
export function tokenSha256Hex(token: string): string {
  return sha256(token).toString('hex');
}
