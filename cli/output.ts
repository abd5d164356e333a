import type { KeyVersion } from '../src/model/key-version.ts';

/** Output helpers: stdout is for results (tables, JSON), stderr for progress and errors. */

export function out(text = ''): void {
  process.stdout.write(`${text}\n`);
}

export function progress(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** Pretty JSON on stdout, with a trailing newline. */
export function printJson(value: unknown): void {
  out(JSON.stringify(value, null, 2));
}

/** A plain-text table: columns padded to their widest cell, two spaces apart. */
export function table(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]) =>
    cells
      .map((c, i) => (i === cells.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** ISO 8601 to the second in UTC, or `-`. */
export function shortTime(ms: number | undefined): string {
  return ms === undefined ? '-' : new Date(ms).toISOString().replace(/\.\d{3}Z$/, 'Z');
}

/** ISO 8601 with milliseconds, or null: the stable JSON form of a timestamp. */
export function isoOrNull(ms: number | undefined): string | null {
  return ms === undefined ? null : new Date(ms).toISOString();
}

/** The stable JSON form of a key version: every field always present, in this order. */
export function versionJson(v: KeyVersion) {
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
