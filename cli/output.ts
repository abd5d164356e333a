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

/** The stable JSON forms, shared with the admin API (src/model/key-version-json.ts). */
export { isoOrNull, keyVersionJson as versionJson } from '../src/model/key-version-json.ts';
