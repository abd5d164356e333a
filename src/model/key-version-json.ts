import type { KeyVersion } from './key-version.ts';

/** ISO 8601 with milliseconds in UTC, or null: the stable JSON form of a timestamp. */
export function isoOrNull(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/**
 * The stable JSON form of a key version, the same in the CLI's `--json` output and the codec
 * server's admin API: every field always present, in this order, times in ISO 8601.
 */
export function keyVersionJson(v: KeyVersion) {
  return {
    namespace: v.namespace,
    version: v.version,
    keyId: v.keyId,
    state: v.state,
    createdAt: isoOrNull(v.createdAt),
    activatedAt: isoOrNull(v.activatedAt),
    deactivatedAt: isoOrNull(v.deactivatedAt),
    deprecatedAt: isoOrNull(v.deprecatedAt),
    destroyedAt: isoOrNull(v.destroyedAt),
  };
}
