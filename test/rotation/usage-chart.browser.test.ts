import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { type Browser, chromium } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { UsageRecord, UsageSample } from '../../src/keystore/keystore.ts';
import type { KeyVersion } from '../../src/model/key-version.ts';
import { type RotationPolicy, resolvePolicy } from '../../src/rotation/rotation-policy.ts';
import { planNamespace } from '../../src/rotation/rotation-projection.ts';
import {
  type ChartSeries,
  chartSeries,
  renderUsageChart,
  type UsageChartInput,
} from '../../src/rotation/usage-chart.ts';

/**
 * The usage chart as a person sees it: rendered by headless Chromium, every text box measured, no
 * two overlapping and none outside the picture, for a fresh namespace, one under load, one after
 * many rotations, and rotations seconds apart. With WRITE_CHART_PNG=1 it also writes the picture
 * the README shows (docs/images/usage-chart.png).
 */

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '../..');
const NOW = Date.UTC(2026, 10, 29, 12, 0, 0);
const MIN = 60_000;
const HOUR = 60 * MIN;
const DAY = 24 * HOUR;

function version(
  n: number,
  state: KeyVersion['state'],
  activatedAt: number,
  deactivatedAt?: number,
): KeyVersion {
  return {
    namespace: 'orders',
    version: n,
    keyId: `orders/v${n}`,
    state,
    createdAt: activatedAt,
    activatedAt,
    ...(deactivatedAt === undefined ? {} : { deactivatedAt }),
  };
}

/** Reservations of `block` every `every` ms from `from` to `to`. */
function usage(from: number, to: number, every: number, block: number): UsageRecord {
  const samples: UsageSample[] = [];
  let reserved = 0;
  for (let t = from; t <= to; t += every) {
    reserved += block;
    samples.push({ at: t, reserved });
  }
  return { reserved, used: reserved, samples };
}

/** What `keys status --svg` draws, from versions and their usage. */
function chartOf(policy: RotationPolicy, history: { v: KeyVersion; u: UsageRecord }[]): UsageChartInput {
  const series: ChartSeries[] = history.map(({ v, u }) => chartSeries(v, u, NOW));
  const active = history.find((h) => h.v.state === 'active')!;
  const plan = planNamespace(
    history.map((h) => h.v),
    active.u,
    policy,
    NOW,
  );
  const last = series.find((s) => s.state === 'active')!.points.at(-1)!;
  const limitAt = plan.projection?.limitAt;
  return {
    namespace: 'orders',
    maxEncryptions: policy.maxEncryptions,
    now: NOW,
    series,
    ...(limitAt !== undefined && limitAt - NOW < 365 * DAY
      ? { projection: { from: last, to: { at: limitAt, count: policy.maxEncryptions } } }
      : {}),
    ...(plan.next ? { nextRotation: plan.next } : {}),
  };
}

const CASES: Record<string, () => UsageChartInput> = {
  'a fresh namespace (default policy)': () =>
    chartOf(resolvePolicy(), [
      { v: version(1, 'active', NOW - 5_000), u: { reserved: 0, used: 0, samples: [] } },
    ]),
  'a namespace under load': () =>
    chartOf(resolvePolicy({ maxEncryptions: 100_000_000, maxAge: null, leadTime: '2h' }), [
      { v: version(1, 'active', NOW - 6 * HOUR), u: usage(NOW - 6 * HOUR, NOW, 10_000, 20_000) },
    ]),
  'after several rotations': () => {
    const policy = resolvePolicy({ maxEncryptions: 1_000_000, maxAge: null, leadTime: '10m' });
    const history: { v: KeyVersion; u: UsageRecord }[] = [];
    for (let i = 0; i < 9; i++) {
      const start = NOW - (9 - i) * 50 * MIN;
      const end = i === 8 ? undefined : start + 50 * MIN;
      history.push({
        v: version(i + 1, i === 8 ? 'active' : 'inactive', start, end),
        u: usage(start, Math.min(end ?? NOW, NOW), MIN, 18_000),
      });
    }
    return chartOf(policy, history);
  },
  'rotations seconds apart': () => {
    const policy = resolvePolicy({
      maxEncryptions: 1_000_000,
      maxAge: null,
      leadTime: '15s',
      propagationDelay: '2s',
    });
    const history: { v: KeyVersion; u: UsageRecord }[] = [];
    for (let i = 0; i < 4; i++) {
      const start = NOW - (4 - i) * 40_000;
      const end = i === 3 ? undefined : start + 40_000;
      history.push({
        v: version(i + 1, i === 3 ? 'active' : 'inactive', start, end),
        u: usage(start, Math.min(end ?? NOW, NOW), 1000, 24_000),
      });
    }
    return chartOf(policy, history);
  },
};

describe('usage chart in a real browser (headless Chromium)', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-gpu'],
    });
  });
  afterAll(async () => {
    await browser?.close();
  });

  for (const [name, make] of Object.entries(CASES)) {
    it(`no two labels overlap: ${name}`, async () => {
      const svg = renderUsageChart(make());
      const page = await browser.newPage({ viewport: { width: 900, height: 420 } });
      try {
        await page.setContent(`<!doctype html><body style="margin:0">${svg}</body>`);
        // A string, so that this file needs no DOM types: runs in the page.
        const boxes = (await page.evaluate(`[...document.querySelectorAll('svg text')].map((t) => {
          const r = t.getBoundingClientRect();
          return { text: t.textContent ?? '', left: r.left, top: r.top, right: r.right, bottom: r.bottom };
        })`)) as { text: string; left: number; top: number; right: number; bottom: number }[];
        expect(boxes.length).toBeGreaterThan(8);
        const overlaps: string[] = [];
        for (let i = 0; i < boxes.length; i++) {
          const a = boxes[i]!;
          expect(a.left, `"${a.text}" inside the picture`).toBeGreaterThanOrEqual(0);
          expect(a.right, `"${a.text}" inside the picture`).toBeLessThanOrEqual(900);
          expect(a.top).toBeGreaterThanOrEqual(0);
          expect(a.bottom).toBeLessThanOrEqual(420);
          for (const b of boxes.slice(i + 1)) {
            const overlap =
              a.left < b.right - 0.5 &&
              b.left < a.right - 0.5 &&
              a.top < b.bottom - 0.5 &&
              b.top < a.bottom - 0.5;
            if (overlap) overlaps.push(`"${a.text}" overlaps "${b.text}"`);
          }
        }
        expect(overlaps).toEqual([]);
        // Time ticks: distinct labels, and the counts named as reservations.
        const labels = boxes.map((b) => b.text);
        expect(labels.some((l) => l.startsWith('encryptions reserved'))).toBe(true);
        expect(labels.some((l) => l.startsWith('limit '))).toBe(true);
        expect(labels.some((l) => l.startsWith('next: '))).toBe(true);
        if (process.env.WRITE_CHART_PNG === '1' && name === 'after several rotations') {
          await mkdir(join(ROOT, 'docs/images'), { recursive: true });
          await writeFile(join(ROOT, 'docs/images/usage-chart.png'), await page.locator('svg').screenshot());
        }
      } finally {
        await page.close();
      }
    });
  }
});
