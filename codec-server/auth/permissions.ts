import type { Operation } from '../../src/config/server-config.ts';

/**
 * Temporal's permission claim format (the server's default claim mapper, Temporal Cloud):
 * `["<namespace>:<read|write|admin>", ...]`. Roles nest as Temporal's do: `write` includes `read`,
 * `admin` includes both. `decode` needs `read`, `encode` needs `write`, the admin API needs `admin`.
 * There is no wildcard: a namespace must be named exactly.
 */
export type Role = 'read' | 'write' | 'admin';

const RANK: Record<Role, number> = { read: 1, write: 2, admin: 3 };
// `rewrap` re-encrypts archives and spends encryptions on a key-management task: admins only.
const NEEDED: Record<Operation, Role> = { decode: 'read', encode: 'write', admin: 'admin', rewrap: 'admin' };

/** Reads the claim (an array of strings, or one space/comma-separated string) into namespace → best role. */
export function parsePermissions(claim: unknown): Map<string, Role> {
  const entries = Array.isArray(claim) ? claim : typeof claim === 'string' ? claim.split(/[\s,]+/) : [];
  const roles = new Map<string, Role>();
  for (const entry of entries) {
    if (typeof entry !== 'string') continue;
    const at = entry.lastIndexOf(':');
    if (at <= 0) continue;
    const namespace = entry.slice(0, at);
    const role = entry.slice(at + 1).toLowerCase();
    if (role !== 'read' && role !== 'write' && role !== 'admin') continue;
    const current = roles.get(namespace);
    if (!current || RANK[role] > RANK[current]) roles.set(namespace, role);
  }
  return roles;
}

export function roleAllows(role: Role | undefined, operation: Operation): boolean {
  return role !== undefined && RANK[role] >= RANK[NEEDED[operation]];
}
