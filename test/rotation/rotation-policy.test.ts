import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.ts';
import {
  DEFAULT_ROTATION_POLICY,
  formatDuration,
  parseDuration,
  parsePolicy,
  resolvePolicy,
} from '../../src/rotation/rotation-policy.ts';

const DAY = 86_400_000;

describe('rotation policy', () => {
  it('has the documented defaults', () => {
    expect(DEFAULT_ROTATION_POLICY).toEqual({
      enabled: true,
      maxEncryptions: 3_865_470_566,
      maxAge: 30 * DAY,
      leadTime: 7 * DAY,
      propagationDelay: 120_000,
      onBudgetExhausted: 'rotate',
    });
    expect(DEFAULT_ROTATION_POLICY.maxEncryptions).toBe(Math.floor(0.9 * 2 ** 32));
  });

  it('parses human durations and numbers of milliseconds', () => {
    expect(parseDuration('90s', 'x')).toBe(90_000);
    expect(parseDuration('12h', 'x')).toBe(12 * 3_600_000);
    expect(parseDuration('30d', 'x')).toBe(30 * DAY);
    expect(parseDuration('1.5h', 'x')).toBe(5_400_000);
    expect(parseDuration('2 w', 'x')).toBe(14 * DAY);
    expect(parseDuration('5m', 'x')).toBe(300_000);
    expect(parseDuration(1234, 'x')).toBe(1234);
    for (const bad of ['30', '', 'abc', '-5s', '5 years', null, {}, -1, Number.NaN]) {
      expect(() => parseDuration(bad, 'leadTime')).toThrow(/^leadTime: must be a non-negative duration/);
    }
  });

  it('merges built-in defaults, config defaults and the namespace section', () => {
    const policy = resolvePolicy(
      { maxAge: '90d', leadTime: '3d' },
      { maxEncryptions: 2_000_000, maxAge: null },
    );
    expect(policy).toEqual({
      enabled: true,
      maxEncryptions: 2_000_000,
      maxAge: null,
      leadTime: 3 * DAY,
      propagationDelay: 120_000,
      onBudgetExhausted: 'rotate',
    });
    expect(resolvePolicy(undefined, { maxAge: false }).maxAge).toBeNull();
    expect(resolvePolicy({ enabled: false }).enabled).toBe(false);
    expect(resolvePolicy()).toEqual(DEFAULT_ROTATION_POLICY);
    // Already-parsed policies pass through unchanged.
    expect(resolvePolicy(resolvePolicy({ leadTime: '1d' }))).toEqual(resolvePolicy({ leadTime: '1d' }));
  });

  it('refuses invalid policies with messages that name the field', () => {
    const err = (fn: () => unknown) => {
      try {
        fn();
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidOptionError);
        return (error as Error).message;
      }
      throw new Error('did not throw');
    };
    expect(err(() => parsePolicy({ maxEncryptions: 10 }, 'namespaces.orders.rotation'))).toMatch(
      /^namespaces\.orders\.rotation\.maxEncryptions: must be at least 1000000/,
    );
    expect(err(() => parsePolicy({ maxEncryptions: 2 ** 33 }))).toMatch(
      /^rotation\.maxEncryptions: must be at most 2\^32/,
    );
    expect(err(() => parsePolicy({ leadTime: '7' }))).toMatch(
      /^rotation\.leadTime: must be a non-negative duration/,
    );
    expect(err(() => parsePolicy({ maxage: '7d' }))).toMatch(/^rotation: .*maxage/);
    expect(err(() => parsePolicy({ enabled: 'yes' }))).toMatch(/^rotation\.enabled: /);
    expect(err(() => resolvePolicy({ leadTime: '1m' }))).toMatch(/^rotation\.leadTime: .*propagationDelay/);
    expect(err(() => resolvePolicy({ maxAge: '1m', leadTime: '1h' }))).toMatch(/^rotation\.maxAge: /);
  });

  it('refuses a lead time that cannot cover the check interval plus the propagation delay, naming the numbers', () => {
    const issue = { maxEncryptions: 1_000_000, maxAge: null, leadTime: '15s', propagationDelay: '5s' };
    expect(() => resolvePolicy(undefined, issue, 'namespaces.hot.rotation', 60_000)).toThrow(
      "namespaces.hot.rotation.leadTime: (15 s) cannot cover the rotator's check interval (60 s) plus propagationDelay (5 s) = 65 s; raise leadTime to at least 65 s or shorten the check interval (rotator.checkInterval, --check-interval)",
    );
    expect(resolvePolicy(undefined, issue, 'namespaces.hot.rotation', 10_000).leadTime).toBe(15_000);
    expect(() => resolvePolicy(undefined, { leadTime: '0s', propagationDelay: '0s' }, 'r', 1000)).toThrow(
      /r\.leadTime: \(0 s\) cannot cover/,
    );
    expect(() => resolvePolicy(undefined, { onBudgetExhausted: 'ignore' as 'refuse' })).toThrow(
      /rotation\.onBudgetExhausted: must be "rotate" \(the default\) or "refuse"/,
    );
  });

  it('formats durations for humans', () => {
    expect(formatDuration(30 * DAY)).toBe('30 d');
    expect(formatDuration(1.5 * DAY)).toBe('1.5 d');
    expect(formatDuration(7_200_000)).toBe('2 h');
    expect(formatDuration(90_000)).toBe('1.5 min');
    expect(formatDuration(500)).toBe('500 ms');
  });
});
