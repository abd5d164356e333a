import type { UsageRecord } from '../keystore/keystore.ts';
import type { KeyVersion } from '../model/key-version.ts';
import { formatCount } from './usage-rate.ts';

/**
 * An SVG plot of a namespace's reserved encryptions over time (reservations: the upper bound the
 * rotation decides on), one line per key version, against the budget (`maxEncryptions`): the
 * limit as a horizontal line, rotations as vertical marks, the next rotation dashed, and the
 * active version's projection dashed up to its limit. Hand-written SVG (no charting library): a pure function from
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

const COLORS = ['#1f77b4', '#ff7f0e', '#2ca02c', '#9467bd', '#8c564b', '#e377c2', '#17becf', '#bcbd22'];
const LIMIT_COLOR = '#d62728';
const NEXT_COLOR = '#555';
const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;
/** Steps of the time axis, smallest first: the first that gives at most {@link MAX_TIME_TICKS} ticks wins. */
const TIME_STEPS = [
  SECOND,
  2 * SECOND,
  5 * SECOND,
  10 * SECOND,
  15 * SECOND,
  30 * SECOND,
  MINUTE,
  2 * MINUTE,
  5 * MINUTE,
  10 * MINUTE,
  15 * MINUTE,
  30 * MINUTE,
  HOUR,
  2 * HOUR,
  3 * HOUR,
  6 * HOUR,
  12 * HOUR,
  DAY,
  2 * DAY,
  7 * DAY,
  14 * DAY,
  30 * DAY,
  90 * DAY,
  365 * DAY,
];
const MAX_TIME_TICKS = 6;
/** Below this share of the limit a linear axis would show a flat line at 0: use a log scale. */
const LOG_BELOW_SHARE = 0.02;

function escapeXml(text: string): string {
  return text.replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Time ticks at round steps (UTC), labelled as precisely as the step needs and no more. */
export function timeTicks(t0: number, t1: number): { at: number; label: string }[] {
  const span = Math.max(1, t1 - t0);
  const step =
    TIME_STEPS.find((s) => span / s <= MAX_TIME_TICKS) ?? Math.ceil(span / MAX_TIME_TICKS / DAY) * DAY;
  const first = Math.ceil(t0 / step) * step;
  const iso = (t: number) => new Date(t).toISOString();
  const sameDay = iso(t0).slice(0, 10) === iso(t1).slice(0, 10);
  const label = (t: number) => {
    const s = iso(t);
    if (step < MINUTE) return s.slice(11, 19); // 12:00:05
    if (step < DAY) return sameDay ? s.slice(11, 16) : `${s.slice(5, 10)} ${s.slice(11, 16)}`; // 11-29 12:00
    return s.slice(0, 10); // 2026-11-29
  };
  const ticks: { at: number; label: string }[] = [];
  for (let t = first; t <= t1; t += step) ticks.push({ at: t, label: label(t) });
  return ticks;
}

/** A share of the limit: "50%", "0.1%". */
function percent(share: number): string {
  const p = share * 100;
  return `${p >= 10 || p === 0 ? Math.round(p) : Number(p.toPrecision(2))}%`;
}

/**
 * Renders the chart as a standalone SVG document. The y axis is the reserved count as a share of
 * the limit (`maxEncryptions` = 100%), or a log scale of counts up to the limit when every count
 * is below 2% of it (a fresh or quiet namespace would otherwise be a flat line at 0). The limit,
 * the rotations, the projection and the next rotation are marked; every label sits in the legend
 * column or on the axes, and rotation labels too close to the previous one are left out, so that
 * no two texts overlap (test/rotation/usage-chart.browser.test.ts measures it in Chromium).
 */
export function renderUsageChart(input: UsageChartInput): string {
  const width = input.width ?? 900;
  const height = input.height ?? 420;
  const margin = { left: 78, right: 230, top: 44, bottom: 56 };
  const plotW = width - margin.left - margin.right;
  const plotH = height - margin.top - margin.bottom;
  const limit = Math.max(1, input.maxEncryptions);

  const points = [
    ...input.series.flatMap((s) => s.points),
    ...(input.projection ? [input.projection.to] : []),
  ];
  const times = [...points.map((p) => p.at), input.now];
  if (input.nextRotation) times.push(input.nextRotation.at);
  let t0 = Math.min(...times);
  let t1 = Math.max(...times);
  if (t1 - t0 < MINUTE) {
    t0 -= MINUTE / 2;
    t1 = t0 + MINUTE;
  }
  const maxCount = Math.max(0, ...points.map((p) => p.count));
  const log = maxCount < LOG_BELOW_SHARE * limit;
  const x = (t: number) => margin.left + ((t - t0) / (t1 - t0)) * plotW;
  // Linear: 0 to max(110% of the limit, the highest count). Log: 1 to the limit.
  const topShare = Math.max(1.1, maxCount / limit);
  const logTop = Math.max(1, Math.log10(limit));
  const y = (c: number) =>
    log
      ? margin.top + plotH - (Math.log10(Math.max(1, c)) / logTop) * plotH
      : margin.top + plotH - (c / limit / topShare) * plotH;
  const f = (n: number) => n.toFixed(1);

  const parts: string[] = [];
  const text = (px: number, py: number, body: string, attrs = '') =>
    parts.push(`<text x="${f(px)}" y="${f(py)}"${attrs ? ` ${attrs}` : ''}>${escapeXml(body)}</text>`);
  parts.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="12">`,
    `<title>${escapeXml(`Encryptions reserved per key version: ${input.namespace}`)}</title>`,
    `<rect width="${width}" height="${height}" fill="#fff"/>`,
  );
  text(
    margin.left,
    24,
    `Encryptions reserved per key version, namespace ${input.namespace}`,
    'font-size="15" font-weight="bold"',
  );

  // Y axis: shares of the limit, or powers of ten up to it.
  const yTicks: { count: number; label: string }[] = [];
  if (log) {
    const top = Math.floor(logTop);
    const every = Math.max(1, Math.ceil(top / 6));
    for (let e = 0; e <= top; e += every) yTicks.push({ count: 10 ** e, label: formatCount(10 ** e) });
  } else {
    const step = topShare > 2.5 ? 0.5 : 0.25;
    for (let share = 0; share <= topShare + 1e-9; share += step)
      yTicks.push({ count: share * limit, label: percent(share) });
  }
  for (const tick of yTicks) {
    const py = y(tick.count);
    parts.push(
      `<line x1="${margin.left - 4}" y1="${f(py)}" x2="${margin.left + plotW}" y2="${f(py)}" stroke="#eee"/>`,
    );
    text(margin.left - 8, py + 4, tick.label, 'text-anchor="end"');
  }
  const yTitle = log
    ? 'encryptions reserved (log scale)'
    : `encryptions reserved, % of limit ${formatCount(limit)}`;
  const midY = margin.top + plotH / 2;
  text(16, midY, yTitle, `text-anchor="middle" transform="rotate(-90 16 ${f(midY)})" fill="#555"`);

  // X axis.
  parts.push(
    `<line x1="${margin.left}" y1="${margin.top + plotH}" x2="${margin.left + plotW}" y2="${margin.top + plotH}" stroke="#333"/>`,
    `<line x1="${margin.left}" y1="${margin.top}" x2="${margin.left}" y2="${margin.top + plotH}" stroke="#333"/>`,
  );
  for (const tick of timeTicks(t0, t1)) {
    const px = x(tick.at);
    parts.push(
      `<line x1="${f(px)}" y1="${margin.top + plotH}" x2="${f(px)}" y2="${margin.top + plotH + 4}" stroke="#333"/>`,
    );
    text(px, margin.top + plotH + 18, tick.label, 'text-anchor="middle"');
  }
  text(margin.left + plotW / 2, height - 10, 'time (UTC)', 'text-anchor="middle" fill="#555"');

  // The limit (on the log scale, the top of the axis).
  parts.push(
    `<line class="limit" x1="${margin.left}" y1="${f(y(limit))}" x2="${margin.left + plotW}" y2="${f(y(limit))}" stroke="${LIMIT_COLOR}" stroke-width="1.5"/>`,
  );
  // Rotations: a mark at each activation; a label only where it does not crowd the previous one.
  let lastLabelX = Number.NEGATIVE_INFINITY;
  for (const s of [...input.series].sort((a, b) => (a.activatedAt ?? 0) - (b.activatedAt ?? 0))) {
    if (s.activatedAt === undefined || s.activatedAt <= t0) continue;
    const px = x(s.activatedAt);
    parts.push(
      `<line class="rotation" x1="${f(px)}" y1="${margin.top}" x2="${f(px)}" y2="${margin.top + plotH}" stroke="#999" stroke-dasharray="2 3"/>`,
    );
    const label = `v${s.version}`;
    const labelW = 8 * label.length;
    if (px - lastLabelX >= labelW + 6 && px + 3 + labelW <= margin.left + plotW) {
      text(px + 3, margin.top + 12, label, 'fill="#666"');
      lastLabelX = px;
    }
  }
  if (input.nextRotation && input.nextRotation.at >= t0 && input.nextRotation.at <= t1) {
    const px = x(input.nextRotation.at);
    parts.push(
      `<line class="next-rotation" x1="${f(px)}" y1="${margin.top}" x2="${f(px)}" y2="${margin.top + plotH}" stroke="${NEXT_COLOR}" stroke-width="1.5" stroke-dasharray="8 3"/>`,
    );
  }
  input.series.forEach((s, i) => {
    if (s.points.length === 0) return;
    const d = s.points.map((p, j) => `${j === 0 ? 'M' : 'L'}${f(x(p.at))},${f(y(p.count))}`).join(' ');
    parts.push(
      `<path class="series" data-version="${s.version}" d="${d}" fill="none" stroke="${COLORS[i % COLORS.length]}" stroke-width="2"/>`,
    );
  });
  if (input.projection) {
    const { from, to } = input.projection;
    parts.push(
      `<line class="projection" x1="${f(x(from.at))}" y1="${f(y(from.count))}" x2="${f(x(to.at))}" y2="${f(y(to.count))}" stroke="#555" stroke-dasharray="6 4"/>`,
    );
  }

  // Legend: one row per entry in the right-hand column (the newest versions when there are many).
  const legendX = margin.left + plotW + 16;
  const rows: { swatch: string; label: string }[] = [
    {
      swatch: `stroke="${LIMIT_COLOR}" stroke-width="1.5"`,
      label: log ? `limit ${formatCount(limit)}` : `limit ${formatCount(limit)} = 100%`,
    },
  ];
  if (input.nextRotation) {
    const at = new Date(input.nextRotation.at).toISOString().slice(0, 19).replace('T', ' ');
    rows.push(
      {
        swatch: `stroke="${NEXT_COLOR}" stroke-width="1.5" stroke-dasharray="8 3"`,
        label: `next: ${input.nextRotation.action} v${input.nextRotation.version}`,
      },
      { swatch: '', label: `at ${at}` },
    );
  }
  if (input.projection) rows.push({ swatch: 'stroke="#555" stroke-dasharray="6 4"', label: 'projection' });
  const maxRows = Math.floor((plotH - 10) / 18);
  const versionRows = input.series.map((s, i) => ({
    swatch: `stroke="${COLORS[i % COLORS.length]}" stroke-width="2"`,
    label: `v${s.version} ${s.state}`,
  }));
  const room = Math.max(0, maxRows - rows.length);
  if (versionRows.length > room) {
    const shown = versionRows.slice(versionRows.length - Math.max(0, room - 1));
    rows.push({ swatch: '', label: `(${versionRows.length - shown.length} older versions)` }, ...shown);
  } else {
    rows.push(...versionRows);
  }
  rows.forEach((row, i) => {
    const py = margin.top + 8 + i * 18;
    if (row.swatch)
      parts.push(`<line x1="${legendX}" y1="${py}" x2="${legendX + 18}" y2="${py}" ${row.swatch}/>`);
    text(legendX + 24, py + 4, row.label, 'class="legend"');
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}
