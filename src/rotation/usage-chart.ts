import type { UsageRecord } from '../keystore/keystore.ts';
import type { KeyVersion } from '../model/key-version.ts';
import { formatCount } from './usage-rate.ts';

/**
 * An SVG plot of a namespace's encryptions over time, one line per key version, with the budget
 * (`maxEncryptions`) as a horizontal line, rotations as vertical marks, and the active version's
 * projection dashed up to its limit. Hand-written SVG (no charting library): a pure function from
 * data to a standalone document, written by `keys status --svg FILE` and servable as it is.
 *
 * Keystores keep about a day of reservation samples per version, so older stretches are drawn as
 * straight lines between the points that are known (activation, retained samples, deactivation).
 */

export interface ChartPoint {
  at: number;
  count: number;
}

export interface ChartSeries {
  version: number;
  state: KeyVersion['state'];
  points: ChartPoint[];
  /** When it became active: drawn as a rotation mark. */
  activatedAt?: number;
}

export interface UsageChartInput {
  namespace: string;
  maxEncryptions: number;
  now: number;
  series: ChartSeries[];
  /** The active version's projected course, drawn dashed. */
  projection?: { from: ChartPoint; to: ChartPoint };
  /** The rotator's next step, marked on the time axis. */
  nextRotation?: { at: number; action: 'prepublish' | 'promote'; version: number };
  width?: number;
  height?: number;
}

/** The known points of a version's reserved count: start at 0, retained samples, end (now or deactivation). */
export function chartSeries(version: KeyVersion, usage: UsageRecord, now: number): ChartSeries {
  const start = version.activatedAt ?? version.createdAt;
  const end = version.deactivatedAt ?? (version.state === 'active' ? now : undefined);
  const points: ChartPoint[] = [];
  const first = usage.samples[0];
  // A version's first reservation is at or after its activation; before it, nothing was encrypted.
  if (!first || first.at > start) points.push({ at: start, count: 0 });
  for (const s of usage.samples) points.push({ at: s.at, count: s.reserved });
  if (end !== undefined && (points.at(-1)?.at ?? Number.NEGATIVE_INFINITY) < end) {
    points.push({ at: end, count: usage.reserved });
  }
  const series: ChartSeries = { version: version.version, state: version.state, points };
  if (version.activatedAt !== undefined) series.activatedAt = version.activatedAt;
  return series;
}

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd', '#8c564b', '#e377c2', '#17becf'];

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function isoDay(ms: number): string {
  return new Date(ms).toISOString().slice(0, 16).replace('T', ' ');
}

/** Renders the chart as a standalone SVG document. */
export function renderUsageChart(input: UsageChartInput): string {
  const width = input.width ?? 900;
  const height = input.height ?? 420;
  const margin = { left: 80, right: 130, top: 40, bottom: 50 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;

  const allPoints = [
    ...input.series.flatMap((s) => s.points),
    ...(input.projection ? [input.projection.to] : []),
  ];
  const times = [...allPoints.map((p) => p.at), input.now];
  const t0 = Math.min(...times);
  const t1 = Math.max(...times, t0 + 1);
  const yMax = Math.max(input.maxEncryptions * 1.1, ...allPoints.map((p) => p.count), 1);
  const x = (t: number) => margin.left + ((t - t0) / (t1 - t0)) * plotW;
  const y = (c: number) => margin.top + plotH - (c / yMax) * plotH;
  const f = (n: number) => n.toFixed(1);

  const parts: string[] = [];
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(`Encryptions per key version: ${input.namespace}`)}</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
    `<text x="${margin.left}" y="24" font-size="15" font-weight="bold">${escapeXml(`Encryptions per key version, namespace ${input.namespace}`)}</text>`,
  );
  // Axes and ticks.
  parts.push(
    `<line x1="${margin.left}" y1="${margin.top + plotH}" x2="${margin.left + plotW}" y2="${margin.top + plotH}" stroke="#333"/>`,
    `<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${margin.top + plotH}" stroke="#333"/>`,
  );
  for (let i = 0; i <= 4; i++) {
    const c = (yMax * i) / 4;
    parts.push(
      `<line x1="${margin.left - 4}" y1="${f(y(c))}" x2="${margin.left + plotW}" y2="${f(y(c))}" stroke="#eee"/>`,
      `<text x="${margin.left - 8}" y="${f(y(c) + 4)}" text-anchor="end">${escapeXml(formatCount(c))}</text>`,
    );
    const t = t0 + ((t1 - t0) * i) / 4;
    parts.push(
      `<text x="${f(x(t))}" y="${margin.top + plotH + 18}" text-anchor="middle">${escapeXml(isoDay(t))}</text>`,
    );
  }
  parts.push(
    `<text x="${margin.left + plotW / 2}" y="${height - 8}" text-anchor="middle" fill="#555">time (UTC)</text>`,
  );
  // The budget.
  parts.push(
    `<line class="limit" x1="${margin.left}" y1="${f(y(input.maxEncryptions))}" x2="${margin.left + plotW}" y2="${f(y(input.maxEncryptions))}" stroke="#d62728" stroke-width="1.5"/>`,
    `<text x="${margin.left + plotW + 6}" y="${f(y(input.maxEncryptions) + 4)}" fill="#d62728">limit ${escapeXml(formatCount(input.maxEncryptions))}</text>`,
  );
  // Rotations, then one line per version.
  for (const s of input.series) {
    if (s.activatedAt === undefined || s.activatedAt <= t0) continue;
    parts.push(
      `<line class="rotation" x1="${f(x(s.activatedAt))}" y1="${margin.top}" x2="${f(x(s.activatedAt))}" y2="${margin.top + plotH}" stroke="#999" stroke-dasharray="2 3"/>`,
      `<text x="${f(x(s.activatedAt) + 3)}" y="${margin.top + 12}" fill="#666">v${s.version}</text>`,
    );
  }
  input.series.forEach((s, i) => {
    const color = COLORS[i % COLORS.length]!;
    if (s.points.length > 0) {
      const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${f(x(p.at))},${f(y(p.count))}`).join(' ');
      parts.push(
        `<path class="series" data-version="${s.version}" d="${d}" fill="none" stroke="${color}" stroke-width="2"/>`,
      );
    }
    parts.push(
      `<text x="${margin.left + plotW + 6}" y="${margin.top + 30 + i * 16}" fill="${color}">v${s.version} (${s.state})</text>`,
    );
  });
  if (input.projection) {
    const { from, to } = input.projection;
    parts.push(
      `<line class="projection" x1="${f(x(from.at))}" y1="${f(y(from.count))}" x2="${f(x(to.at))}" y2="${f(y(to.count))}" stroke="#555" stroke-dasharray="6 4"/>`,
    );
  }
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
