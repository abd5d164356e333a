import pg from 'pg';
import { isValidNamespace } from '../model/namespace.ts';
import type { Clock } from '../runtime/clock.ts';
import type { Logger } from '../runtime/logger.ts';
import type { KeystoreEvent } from './keystore.ts';
import { isUnavailable } from './postgres-errors.ts';

/** The NOTIFY channel commits and KEK record writes are announced on. */
export const CHANGES_CHANNEL = 'temporal_keyring_changes';

const FIRST_RETRY_MS = 100;

export interface ChangeListenerOptions {
  clientConfig: pg.ClientConfig;
  clock: Clock;
  logger: Logger;
  /** Longest wait between two attempts to re-establish the connection. */
  maxRetryMs: number;
  /** Namespaces to announce after a reconnection (notifications sent meanwhile were lost). */
  namespaces: () => Promise<string[]>;
  emit: (event: KeystoreEvent) => void;
}

/**
 * The push half of the PostgreSQL keystore's change propagation: one dedicated connection that
 * LISTENs on {@link CHANGES_CHANNEL} and turns notifications into {@link KeystoreEvent}s. When the
 * connection drops it reconnects with exponential backoff (on the injected clock), then announces
 * every namespace as changed, since whatever was notified while it was away is lost. Keyrings also
 * poll, so this only makes propagation faster, never correct.
 */
export class ChangeListener {
  readonly #o: ChangeListenerOptions;
  #client: pg.Client | undefined;
  #retryMs = FIRST_RETRY_MS;
  #cancelRetry: (() => void) | undefined;
  #closed = false;
  #connecting: Promise<void> | undefined;
  #connectedOnce = false;

  constructor(options: ChangeListenerOptions) {
    this.#o = options;
  }

  /** True while the LISTEN connection is up. */
  get listening(): boolean {
    return this.#client !== undefined;
  }

  /** Starts listening; resolves after the first attempt, whether it succeeded or a retry is scheduled. */
  start(): Promise<void> {
    this.#connecting ??= this.#connect().finally(() => {
      this.#connecting = undefined;
    });
    return this.#connecting;
  }

  /** Waits for a connection attempt in progress (if any); true when connected afterwards. */
  async settled(): Promise<boolean> {
    await this.#connecting;
    return this.listening;
  }

  async close(): Promise<void> {
    this.#closed = true;
    this.#cancelRetry?.();
    await this.#connecting?.catch(() => {});
    const client = this.#client;
    this.#client = undefined;
    await client?.end().catch(() => {});
  }

  async #connect(): Promise<void> {
    if (this.#closed || this.#client) return;
    const client = new pg.Client(this.#o.clientConfig);
    let dropped = false;
    const onDrop = (error?: unknown) => {
      if (dropped) return;
      dropped = true;
      if (this.#client === client) this.#client = undefined;
      client.end().catch(() => {});
      if (this.#closed) return;
      this.#o.logger.warn(
        { err: { code: (error as { code?: string } | undefined)?.code } },
        'keystore change listener disconnected; retrying',
      );
      this.#scheduleRetry();
    };
    client.on('error', onDrop);
    client.on('end', () => onDrop());
    client.on('notification', (msg) => {
      if (msg.channel === CHANGES_CHANNEL) this.#deliver(msg.payload);
    });
    try {
      await client.connect();
      await client.query(`LISTEN ${CHANGES_CHANNEL}`);
    } catch (error) {
      if (!isUnavailable(error))
        this.#o.logger.error({ err: { code: (error as { code?: string }).code } }, 'LISTEN failed');
      onDrop(error);
      return;
    }
    if (this.#closed || dropped) {
      await client.end().catch(() => {});
      return;
    }
    this.#client = client;
    this.#retryMs = FIRST_RETRY_MS;
    if (this.#connectedOnce) await this.#catchUp();
    this.#connectedOnce = true;
  }

  #scheduleRetry(): void {
    this.#cancelRetry?.();
    const delay = this.#retryMs;
    this.#retryMs = Math.min(this.#retryMs * 2, this.#o.maxRetryMs);
    this.#cancelRetry = this.#o.clock.setTimer(delay, () => {
      this.#cancelRetry = undefined;
      void this.start();
    });
  }

  async #catchUp(): Promise<void> {
    try {
      for (const namespace of await this.#o.namespaces())
        this.#o.emit({ type: 'namespace-changed', namespace });
      this.#o.emit({ type: 'kek-changed' });
    } catch {
      // The polling refresh covers it.
    }
  }

  #deliver(payload: string | undefined): void {
    let event: KeystoreEvent | undefined;
    try {
      const parsed = JSON.parse(payload ?? '') as { type?: unknown; namespace?: unknown };
      if (parsed.type === 'kek-changed') event = { type: 'kek-changed' };
      else if (parsed.type === 'namespace-changed' && isValidNamespace(parsed.namespace)) {
        event = { type: 'namespace-changed', namespace: parsed.namespace };
      }
    } catch {
      // Not ours: anyone may NOTIFY on the channel.
    }
    if (event) this.#o.emit(event);
  }
}
