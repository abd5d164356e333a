import { promises as fsp } from 'node:fs';
import { join } from 'node:path';
import { isValidNamespace } from '../model/namespace.ts';
import type { Clock } from '../runtime/clock.ts';
import type { KeystoreEvent } from './keystore.ts';

/** Default time between two polls: a promotion reaches every process in well under a second. */
export const DEFAULT_FILE_WATCH_INTERVAL_MS = 200;

/**
 * The file keystore's change push (the counterpart of PostgreSQL's LISTEN/NOTIFY): a cheap poll of
 * each namespace's `versions.json` identity (inode, size, modification and change times). Every
 * commit replaces that file by an atomic rename, so its inode changes with every write, and a
 * `readdir` plus one `stat` per namespace tells a keyring within one interval that it must reload.
 * Polling rather than `fs.watch`: it works the same on every file system (network and overlay
 * ones too), and its latency is bounded by the interval.
 *
 * Pipeline position: `FileKeystore.subscribe` (this) → `Keyring` reloads the namespace.
 */
export class FileChangeWatcher {
  readonly #dir: string;
  readonly #clock: Clock;
  readonly #intervalMs: number;
  readonly #listeners = new Set<(event: KeystoreEvent) => void>();
  readonly #seen = new Map<string, string>();
  #cancel: (() => void) | undefined;
  #primed = false;
  #polling: Promise<void> | undefined;

  constructor(dir: string, clock: Clock, intervalMs: number = DEFAULT_FILE_WATCH_INTERVAL_MS) {
    this.#dir = dir;
    this.#clock = clock;
    this.#intervalMs = intervalMs;
  }

  /** Adds a listener (starting the poll with the first); returns the unsubscribe function. */
  subscribe(listener: (event: KeystoreEvent) => void): () => void {
    this.#listeners.add(listener);
    if (this.#listeners.size === 1) this.#schedule(0);
    return () => {
      this.#listeners.delete(listener);
      if (this.#listeners.size === 0) this.stop();
    };
  }

  /** Resolves after the poll in progress, if any (for tests on a manual clock). */
  async settled(): Promise<void> {
    await this.#polling;
  }

  stop(): void {
    this.#cancel?.();
    this.#cancel = undefined;
    this.#listeners.clear();
  }

  #schedule(ms: number): void {
    this.#cancel = this.#clock.setTimer(ms, () => {
      this.#polling = this.#poll().finally(() => {
        this.#polling = undefined;
        if (this.#listeners.size > 0) this.#schedule(this.#intervalMs);
      });
    });
  }

  async #poll(): Promise<void> {
    const changed: KeystoreEvent[] = [];
    const kek = await identity(join(this.#dir, 'kek.json'));
    if (this.#primed && kek !== this.#seen.get('\0kek')) changed.push({ type: 'kek-changed' });
    this.#seen.set('\0kek', kek);
    let names: string[] = [];
    try {
      names = (await fsp.readdir(join(this.#dir, 'namespaces'))).filter(isValidNamespace);
    } catch {
      // No namespace yet.
    }
    for (const namespace of names) {
      const id = await identity(join(this.#dir, 'namespaces', namespace, 'versions.json'));
      if (this.#primed && id !== this.#seen.get(namespace))
        changed.push({ type: 'namespace-changed', namespace });
      this.#seen.set(namespace, id);
    }
    this.#primed = true;
    for (const event of changed) for (const l of this.#listeners) l(event);
  }
}

async function identity(path: string): Promise<string> {
  try {
    const s = await fsp.stat(path, { bigint: true });
    return `${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`;
  } catch {
    return 'absent';
  }
}
