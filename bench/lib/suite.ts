/**
 * A benchmark suite: `bench/run.ts` runs every registered suite in order and collects what it
 * returns. To add one (for example the codec server suite: POST /decode with 1 and 20 payloads of
 * 1 KiB under autocannon, against a bare Express + cors + raw AES-GCM server), write
 * `bench/suites/<name>.ts` exporting a `Suite` and add it to the list in `bench/run.ts`.
 */
export interface Suite {
  name: string;
  description: string;
  run(options: SuiteOptions): Promise<SuiteResult>;
}

export interface SuiteOptions {
  /** Fewer rounds and shorter slices: a smoke run, not for reporting. */
  quick: boolean;
  log: (message: string) => void;
}

export interface SuiteResult {
  /** Human-readable table(s), printed as they are. */
  table: string;
  /** Anything JSON-serializable, written to bench/results/latest.json under the suite's name. */
  data: unknown;
}

/** Formats rows as a fixed-width text table (first row is the header). */
export function formatTable(rows: (string | number)[][]): string {
  const cells = rows.map((r) => r.map(String));
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]) =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(cells[0]!), widths.map((w) => '-'.repeat(w)).join('  '), ...cells.slice(1).map(line)].join(
    '\n',
  );
}

export function humanSize(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${bytes / (1024 * 1024)}MiB`;
  if (bytes >= 1024) return `${bytes / 1024}KiB`;
  return `${bytes}B`;
}
