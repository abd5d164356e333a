import cluster, { type Worker } from 'node:cluster';
import { availableParallelism } from 'node:os';
import { InvalidOptionError } from '../src/errors.ts';
import type { Logger } from '../src/runtime/logger.ts';
import { answerClusterMetrics } from './cluster-metrics.ts';

/**
 * `serve --workers N`: the primary process forks N workers (Node's `node:cluster`), each running
 * the whole codec server (its own keyring on the shared keystore, its own rotator) on the port the
 * cluster shares. The primary serves nothing: it starts the workers, replaces one that crashes
 * (bounded), and drains them all on SIGTERM/SIGINT.
 *
 * Pipeline position: above `serve` (serve-command.ts); below it every worker is a plain server.
 * What keeps workers consistent lives in the keystore, not here: usage reservations, the rotator's
 * lease and change notifications (file poll, PostgreSQL NOTIFY) already span processes.
 */

/** Upper bound of `--workers`: beyond it a host is better served by more replicas. */
export const MAX_WORKERS = 64;

/** The message a worker sends the primary once its server listens. */
export const WORKER_READY = 'temporal-keyring:worker-ready';

/** `--workers` / `server.workers` as given: a whole number 1..64, or `auto`. */
export type WorkersSetting = number | 'auto';

/** Parses `--workers` or its env variable, naming `field` in the error. */
export function parseWorkers(text: string, field: string): WorkersSetting {
  const value = text.trim();
  if (value === 'auto') return 'auto';
  const n = /^[0-9]{1,3}$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isInteger(n) || n < 1 || n > MAX_WORKERS)
    throw new InvalidOptionError(
      field,
      `must be a whole number from 1 to ${MAX_WORKERS}, or auto (one per available core), got ${JSON.stringify(text.slice(0, 32))}`,
    );
  return n;
}

/** The number of processes to run: `auto` is the host's available parallelism, capped at the maximum. */
export function workerCount(
  setting: WorkersSetting,
  parallelism: () => number = availableParallelism,
): number {
  return setting === 'auto' ? Math.max(1, Math.min(MAX_WORKERS, parallelism())) : setting;
}

export interface ClusterOptions {
  workers: number;
  logger: Logger;
  /** Crashes tolerated within `restartWindowMs` before the command gives up. Default 5. */
  maxRestarts?: number;
  /** Default 60 s. */
  restartWindowMs?: number;
}

/**
 * Runs the primary until every worker has exited. Resolves with the exit code of the command:
 * 0 after a drain on SIGTERM/SIGINT; a worker's own non-zero code if it failed before it served
 * (bad configuration, KEK mismatch: the worker printed the error, no restart loop); 1 when
 * crashes exceed the restart bound.
 */
export async function runCluster(options: ClusterOptions): Promise<number> {
  const { logger, workers } = options;
  answerClusterMetrics();
  const maxRestarts = options.maxRestarts ?? 5;
  const windowMs = options.restartWindowMs ?? 60_000;
  const ready = new Set<Worker>();
  const live = new Set<Worker>();
  const crashes: number[] = [];
  let stopping = false;
  let exitCode = 0;
  let finish!: (code: number) => void;
  const finished = new Promise<number>((resolve) => {
    finish = resolve;
  });

  const stopAll = (code: number) => {
    if (!stopping) exitCode = code;
    stopping = true;
    for (const worker of live) worker.process.kill('SIGTERM');
    if (live.size === 0) finish(exitCode);
  };

  const onSignal = (signal: NodeJS.Signals) => {
    logger.info({ signal, workers: live.size }, 'codec server primary: draining workers');
    process.once(signal, () => {
      // A second signal: stop now.
      for (const worker of live) worker.process.kill('SIGKILL');
      process.exit(1);
    });
    stopAll(0);
  };
  process.once('SIGTERM', () => onSignal('SIGTERM'));
  process.once('SIGINT', () => onSignal('SIGINT'));

  /** Forks one worker; resolves true once it serves, false if it exited first. */
  const fork = (): Promise<boolean> =>
    new Promise((resolve) => {
      const worker = cluster.fork();
      live.add(worker);
      worker.on('message', (message: unknown) => {
        if ((message as { type?: unknown } | null)?.type !== WORKER_READY) return;
        ready.add(worker);
        resolve(true);
      });
      worker.on('exit', (code: number | null, signal: string | null) => {
        live.delete(worker);
        const wasReady = ready.delete(worker);
        resolve(false);
        const pid = worker.process.pid;
        if (stopping) {
          // A worker killed by our SIGTERM before it installed its own handler is a clean stop too.
          const clean = code === 0 || (!wasReady && signal === 'SIGTERM');
          if (!clean) {
            logger.error({ pid, code, signal }, 'codec server worker did not stop cleanly');
            exitCode = 1;
          }
          if (live.size === 0) finish(exitCode);
          return;
        }
        if (!started) {
          // Failing at startup: the worker printed its error; the whole command fails with its code.
          stopAll(code || 1);
          return;
        }
        const now = Date.now();
        crashes.push(now);
        while (crashes.length > 0 && crashes[0]! <= now - windowMs) crashes.shift();
        if (crashes.length > maxRestarts) {
          logger.error(
            { pid, code, signal, crashes: crashes.length, windowMs },
            'codec server worker crashed too often; stopping all workers',
          );
          stopAll(1);
          return;
        }
        logger.error(
          { pid, code, signal },
          'codec server worker exited unexpectedly; starting a replacement',
        );
        void fork().then((ok) => {
          if (ok) logger.info({ workers: live.size }, 'codec server worker replaced');
        });
      });
    });

  let started = false;
  // The first worker alone: a bad configuration is reported once, and first-open work (such as
  // adding a missing keystore id) is done by one process.
  if (await fork()) {
    const rest = await Promise.all(Array.from({ length: workers - 1 }, () => fork()));
    if (rest.every(Boolean) && !stopping) {
      started = true;
      logger.info(
        { workers: live.size, pids: [...live].map((w) => w.process.pid) },
        'codec server workers ready',
      );
    }
  }
  if (!started && !stopping) stopAll(1);
  return finished;
}
