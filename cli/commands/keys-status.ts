import { writeFile } from 'node:fs/promises';
import type { Command } from 'commander';
import { formatDuration } from '../../src/rotation/rotation-policy.ts';
import { formatCount, formatRate, RATE_WINDOWS, type RateWindow } from '../../src/rotation/usage-rate.ts';
import { type NamespaceStatus, namespaceStatus, statusChart } from '../../src/rotation/usage-status.ts';
import { withKeystore } from '../context.ts';
import { isoOrNull, out, printJson, progress, shortTime, table } from '../output.ts';
import { namespaceArg } from './parse.ts';

/**
 * `keys status --namespace NS [--json] [--svg FILE]`: per version its state, reserved and used
 * encryptions, rates per window, the projected date the budget runs out, and the next rotation
 * with its reason. Reads metadata and counts only, so it needs no KEK.
 *
 * JSON form (stable): `{namespace, now, policy: {enabled, maxEncryptions, maxAgeMs, leadTimeMs,
 * propagationDelayMs}, rate: {perSecond, basis} | null, nextRotation: {at, action, reason} | null,
 * versions: [{version, keyId, state, createdAt, activatedAt, deactivatedAt, reserved, used,
 * rates: {"1m", "1h", "1d"} (per second or null), limitReached, limitAt (projected, future, or
 * null)}]}`, timestamps ISO 8601 or null. `nextRotation` is `{at, action, version, reason}`: the
 * rotator's own plan (`planNamespace`), so this and `rotator --once` agree.
 */
export function registerKeysStatusCommand(keys: Command): void {
  keys
    .command('status')
    .description('encryption counts, rates, projected limit and next rotation of a namespace (needs no KEK)')
    .requiredOption('-n, --namespace <namespace>', 'the namespace')
    .option('--json', 'print JSON instead of text')
    .option('--svg <file>', 'also write an SVG chart of encryptions over time to this file')
    .action(async (options: { namespace: string; json?: boolean; svg?: string }, command: Command) => {
      const namespace = namespaceArg(options.namespace);
      const status = await withKeystore(command, (keystore, settings) =>
        namespaceStatus(keystore, namespace, settings.rotationPolicy(namespace), Date.now()),
      );
      if (options.svg) {
        await writeFile(options.svg, statusChart(status));
        progress(`chart written to ${options.svg}`);
      }
      if (options.json) printJson(statusJson(status));
      else out(statusText(status));
    });
}

export function statusJson(s: NamespaceStatus) {
  return {
    namespace: s.namespace,
    now: isoOrNull(s.now),
    policy: {
      enabled: s.policy.enabled,
      maxEncryptions: s.policy.maxEncryptions,
      maxAgeMs: s.policy.maxAge,
      leadTimeMs: s.policy.leadTime,
      propagationDelayMs: s.policy.propagationDelay,
    },
    rate: s.rate ?? null,
    nextRotation: s.nextRotation
      ? {
          at: isoOrNull(s.nextRotation.at),
          action: s.nextRotation.action,
          version: s.nextRotation.version,
          reason: s.nextRotation.reason,
        }
      : null,
    versions: s.versions.map((v) => ({
      version: v.version,
      keyId: v.keyId,
      state: v.state,
      createdAt: isoOrNull(v.createdAt),
      activatedAt: isoOrNull(v.activatedAt),
      deactivatedAt: isoOrNull(v.deactivatedAt),
      reserved: v.reserved,
      used: v.used,
      rates: v.rates,
      limitReached: v.limitReached,
      limitAt: isoOrNull(v.limitAt),
    })),
  };
}

/** The BUDGET LIMIT column: "reached", a projected (future) time, or why there is none. */
function budgetLimit(v: NamespaceStatus['versions'][number]): string {
  if (v.limitReached) return 'reached';
  if (v.state !== 'active') return '';
  return v.limitAt === undefined ? 'no rate yet' : `${shortTime(v.limitAt)} (projected)`;
}

export function statusText(s: NamespaceStatus): string {
  const p = s.policy;
  const windows = Object.keys(RATE_WINDOWS) as RateWindow[];
  const lines = [
    `namespace ${s.namespace}: rotation ${p.enabled ? 'on' : 'off'}, budget ${formatCount(p.maxEncryptions)} encryptions, ` +
      `max age ${p.maxAge === null ? 'off' : formatDuration(p.maxAge)}, lead time ${formatDuration(p.leadTime)}, ` +
      `propagation delay ${formatDuration(p.propagationDelay)}`,
    '',
    table(
      [
        'VERSION',
        'STATE',
        'ACTIVATED',
        'RESERVED',
        'USED',
        ...windows.map((w) => `RATE ${w}`),
        'BUDGET LIMIT',
      ],
      s.versions.map((v) => [
        String(v.version),
        v.state,
        shortTime(v.activatedAt),
        formatCount(v.reserved),
        formatCount(v.used),
        ...windows.map((w) => (v.rates[w] === null ? '-' : formatRate(v.rates[w]))),
        budgetLimit(v),
      ]),
    ),
    '',
    s.rate
      ? `projection rate: ${formatRate(s.rate.perSecond)} (${s.rate.basis} window)`
      : 'projection rate: not enough reservations yet',
    s.nextRotation
      ? `next rotation: ${s.nextRotation.action} v${s.nextRotation.version} ${s.nextRotation.at <= s.now ? 'due now' : `at ${shortTime(s.nextRotation.at)}`}: ${s.nextRotation.reason}`
      : 'next rotation: none scheduled (no max age and no measured rate)',
  ];
  return lines.join('\n');
}
