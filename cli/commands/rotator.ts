import type { Command } from 'commander';
import pino from 'pino';
import { formatDuration, parseCheckInterval } from '../../src/rotation/rotation-policy.ts';
import type { RotatorRun } from '../../src/rotation/rotator.ts';
import { openFromSettings, settingsOf } from '../context.ts';
import { out, printJson } from '../output.ts';

interface RotatorFlags {
  once?: boolean;
  interval?: string;
  checkInterval?: string;
  json?: boolean;
  logLevel?: string;
}

/**
 * `rotator [--once] [--check-interval 1m]`: rotates keys from measured usage (see rotator.ts).
 * Runs until SIGTERM or SIGINT, logging JSON lines (pino) on stdout, one line per namespace and
 * check with its decision; with `--once`, checks once and prints what it did and the next step
 * (the same plan `keys status` shows). Only one rotator acts per keystore at a time (a keystore
 * lease), so running several for availability is safe.
 */
export function registerRotatorCommand(program: Command): void {
  program
    .command('rotator')
    .description('rotate keys from measured usage and age, in two phases (one active rotator per keystore)')
    .option('--once', 'check once, print what was done, and exit')
    .option(
      '--check-interval <duration>',
      'backstop time between checks, e.g. 10s, 1m (config rotator.checkInterval; default 1m); reservations crossing a rotation threshold and promotion timers wake it sooner',
    )
    .option('--interval <duration>', 'the same as --check-interval (older name)')
    .option('--json', 'with --once: print JSON')
    .option('--log-level <level>', 'log level: debug, info, warn, error, silent (default info)')
    .action(async (flags: RotatorFlags, command: Command) => {
      const flag = flags.checkInterval ?? flags.interval;
      let settings = await settingsOf(command);
      if (flag !== undefined) {
        const name = flags.checkInterval !== undefined ? '--check-interval' : '--interval';
        settings = settings.withCheckInterval(parseCheckInterval(flag, name));
      }
      const interval = settings.checkIntervalMs;
      // With --once, stdout is for the result: logs go to stderr.
      const logger = pino(
        { level: flags.logLevel ?? 'info', base: { service: 'temporal-keyring', component: 'rotator' } },
        pino.destination(flags.once ? 2 : 1),
      );
      const opened = await openFromSettings(settings);
      // The keyring's own policies, meter and clock: see OpenedKeyring.rotator.
      const rotator = opened.rotator({ logger, checkIntervalMs: interval });
      if (flags.once) {
        try {
          const run = await rotator.runOnce();
          await rotator.stop();
          if (flags.json) printJson(runJson(run));
          else out(runText(run));
        } finally {
          await opened.close();
        }
        return;
      }
      rotator.start();
      // The rotator's timers do not keep the process alive; this does, until a signal.
      const keepAlive = setInterval(() => {}, 1 << 30);
      const stop = (signal: string) => {
        process.once(signal, () => process.exit(1)); // a second signal: stop now
        clearInterval(keepAlive);
        rotator
          .stop()
          .then(() => opened.close())
          .then(
            () => {
              logger.info({ signal }, 'rotator stopped');
              process.exitCode = 0;
            },
            () => {
              process.exitCode = 1;
            },
          );
      };
      process.once('SIGTERM', () => stop('SIGTERM'));
      process.once('SIGINT', () => stop('SIGINT'));
      // Announced only once the handlers are in place: supervisors may signal as soon as they read it.
      logger.info(
        { checkIntervalMs: interval, holder: rotator.holder },
        `rotator started (backstop check every ${formatDuration(interval)})`,
      );
    });
}

function runJson(run: RotatorRun) {
  return {
    leader: run.leader,
    actions: run.actions.map((a) => ({
      namespace: a.namespace,
      action: a.action,
      version: a.version ?? null,
      reason: a.reason ?? null,
      next: a.next
        ? {
            at: new Date(a.next.at).toISOString(),
            action: a.next.action,
            version: a.next.version,
            reason: a.next.reason,
          }
        : null,
    })),
  };
}

function runText(run: RotatorRun): string {
  if (!run.leader) return 'another rotator holds the lease: nothing done';
  if (run.actions.length === 0) return 'no namespaces';
  return run.actions
    .map((a) => {
      const next = a.next
        ? `; next: ${a.next.action} v${a.next.version} ${a.next.at <= Date.now() ? 'due now' : `at ${new Date(a.next.at).toISOString()}`} (${a.next.reason})`
        : '; next: none scheduled';
      const what = a.version === undefined ? a.action : `${a.action} v${a.version}`;
      return `${a.namespace}: ${what}${a.reason ? ` (${a.reason})` : ''}${next}`;
    })
    .join('\n');
}
