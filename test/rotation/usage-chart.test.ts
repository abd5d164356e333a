import { describe, expect, it } from 'vitest';
import type { KeyVersion } from '../../src/model/key-version.ts';
import { chartSeries, renderUsageChart } from '../../src/rotation/usage-chart.ts';

const T0 = Date.UTC(2026, 0, 1);
const DAY = 86_400_000;

const version = (
  n: number,
  state: KeyVersion['state'],
  activatedAt: number,
  deactivatedAt?: number,
): KeyVersion => ({
  namespace: 'ns',
  version: n,
  keyId: `ns/v${n}`,
  state,
  createdAt: activatedAt,
  activatedAt,
  ...(deactivatedAt === undefined ? {} : { deactivatedAt }),
});

describe('usage chart', () => {
  it('builds each series from activation, retained samples and deactivation', () => {
    const old = chartSeries(
      version(1, 'inactive', T0, T0 + 30 * DAY),
      {
        reserved: 900,
        used: 880,
        samples: [
          { at: T0 + 29 * DAY, reserved: 800 },
          { at: T0 + 29.5 * DAY, reserved: 900 },
        ],
      },
      T0 + 40 * DAY,
    );
    expect(old.points).toEqual([
      { at: T0, count: 0 },
      { at: T0 + 29 * DAY, count: 800 },
      { at: T0 + 29.5 * DAY, count: 900 },
      { at: T0 + 30 * DAY, count: 900 },
    ]);
    const current = chartSeries(
      version(2, 'active', T0 + 30 * DAY),
      { reserved: 0, used: 0, samples: [] },
      T0 + 40 * DAY,
    );
    expect(current.points).toEqual([
      { at: T0 + 30 * DAY, count: 0 },
      { at: T0 + 40 * DAY, count: 0 },
    ]);
  });

  it('renders a standalone SVG with the limit, rotations, one path per version and the projection', () => {
    const svg = renderUsageChart({
      namespace: 'a<b>&"c"',
      maxEncryptions: 1000,
      now: T0 + 40 * DAY,
      series: [
        {
          version: 1,
          state: 'inactive',
          activatedAt: T0,
          points: [
            { at: T0, count: 0 },
            { at: T0 + 30 * DAY, count: 900 },
          ],
        },
        {
          version: 2,
          state: 'active',
          activatedAt: T0 + 30 * DAY,
          points: [
            { at: T0 + 30 * DAY, count: 0 },
            { at: T0 + 40 * DAY, count: 300 },
          ],
        },
      ],
      projection: { from: { at: T0 + 40 * DAY, count: 300 }, to: { at: T0 + 63 * DAY, count: 1000 } },
    });
    expect(svg).toMatch(/^<svg xmlns="http:\/\/www\.w3\.org\/2000\/svg" width="900" height="420"/);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).not.toContain('a<b>');
    expect(svg).toContain('a&#60;b&#62;&#38;&#34;c&#34;');
    expect(svg.match(/class="series"/g)).toHaveLength(2);
    expect(svg.match(/class="rotation"/g)).toHaveLength(1); // v2's activation; v1 starts the chart
    expect(svg).toContain('class="limit"');
    expect(svg).toContain('limit 1000');
    expect(svg).toContain('class="projection"');
    expect(svg).toContain('v2 active');
    // Every coordinate is a finite number.
    expect(svg).not.toMatch(/NaN|Infinity/);
  });
});
