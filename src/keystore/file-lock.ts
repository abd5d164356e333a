import { randomBytes } from 'node:crypto';
import { promises as fsp } from 'node:fs';
import { hostname } from 'node:os';
import { basename, dirname, join } from 'node:path';
import { z } from 'zod';
import { KeystoreUnavailableError, LockTimeoutError } from '../errors.ts';
import { FILE_MODE, isNotFound } from './atomic-file.ts';

/**
 * A lock held across processes on one data directory: how the {@link FileKeystore} serializes its
 * read-modify-writes.
 *
 * The lock file is created complete and atomically (written to a temp file, then `link`ed to the
 * lock path, which fails if it exists) and names its holder: pid, host, random token. A waiter
 * takes over a lock whose holder is gone: at once when the holder is a dead pid on this host (a
 * SIGKILLed process), or after `staleMs` without the holder refreshing the file's mtime (a holder
 * on another host sharing the directory). Takeovers are serialized by a second lock file
 * (`<lock>.break`): under it a waiter re-reads the lock and removes it only if it is still the
 * very file it judged stale, so a waiter never removes a lock another has just taken. Release
 * goes under the same breaker: the holder checks that the lock is still its own and removes it
 * there, so a lock taken over between the check and the removal cannot be removed by mistake.
 * Within one process, holders of the same lock path queue in memory first, so they never spin on
 * each other.
 */
export interface FileLockOptions {
  /** Longest wait for the lock before {@link LockTimeoutError}. */
  timeoutMs: number;
  /** A lock not refreshed for this long is stale even if its pid looks alive. */
  staleMs: number;
  /**
   * Called each time a release finds the breaker held (a takeover in progress) and waits.
   * For tests only.
   * @internal
   */
  onReleaseWait?: () => void;
}

const ownerSchema = z.object({ pid: z.number().int(), host: z.string(), token: z.string(), at: z.number() });
type Owner = z.infer<typeof ownerSchema>;

/** In-process queues, per lock path, shared by every handle in this process. */
const queues = new Map<string, Promise<unknown>>();

export class FileLock {
  readonly path: string;
  readonly #options: FileLockOptions;

  constructor(path: string, options: FileLockOptions) {
    this.path = path;
    this.#options = options;
  }

  /** Runs `fn` while holding the lock (in this process and across processes). */
  withLock<T>(fn: () => Promise<T>): Promise<T> {
    return this.#run(Date.now() + this.#options.timeoutMs, fn);
  }

  /** Runs `fn` only if the lock is free (or stale) right now; `undefined` if it is held. */
  async tryWithLock<T>(fn: () => Promise<T>): Promise<{ value: T } | undefined> {
    if (queues.has(this.path)) return undefined;
    let acquired = false;
    try {
      return {
        value: await this.#run(Date.now(), () => {
          acquired = true;
          return fn();
        }),
      };
    } catch (error) {
      if (!acquired && error instanceof LockTimeoutError) return undefined;
      throw error;
    }
  }

  #run<T>(deadline: number, fn: () => Promise<T>): Promise<T> {
    const previous = queues.get(this.path) ?? Promise.resolve();
    const run = previous
      .catch(() => {})
      .then(async () => {
        const release = await this.#acquire(deadline);
        try {
          return await fn();
        } finally {
          await release();
        }
      });
    const tail = run.catch(() => {});
    queues.set(this.path, tail);
    void tail.then(() => {
      if (queues.get(this.path) === tail) queues.delete(this.path);
    });
    return run;
  }

  async #acquire(deadline: number): Promise<() => Promise<void>> {
    const owner: Owner = {
      pid: process.pid,
      host: hostname(),
      token: randomBytes(12).toString('hex'),
      at: Date.now(),
    };
    let delay = 2;
    let holder: Owner | undefined;
    for (;;) {
      if (await createExclusive(this.path, owner)) return this.#held(owner);
      holder = await this.#takeOverIfStale(owner);
      if (!holder) continue; // it was stale (or vanished): try again at once
      if (Date.now() >= deadline) {
        throw new LockTimeoutError(
          `timed out after ${this.#options.timeoutMs} ms waiting for the keystore lock ${this.path} (held by pid ${holder.pid} on ${holder.host})`,
        );
      }
      await new Promise((resolve) =>
        setTimeout(resolve, Math.min(delay, Math.max(0, deadline - Date.now()))),
      );
      delay = Math.min(delay * 2, 50) * (0.75 + Math.random() / 2);
    }
  }

  /** Returns the live holder, or `undefined` after removing a stale lock (or finding none). */
  async #takeOverIfStale(owner: Owner): Promise<Owner | undefined> {
    const seen = await this.#inspect(this.path);
    if (!seen) return undefined;
    if (!seen.stale) return seen.owner;
    // Breaking is serialized by a second lock file. Without it, two waiters that both judged the
    // same file stale could interleave so that the second removes the lock the first has just
    // taken, and two processes would write at once (a lost update, seen under load in CI).
    const breaker = `${this.path}.break`;
    if (!(await createExclusive(breaker, owner))) {
      await this.#clearStaleBreaker(breaker);
      return seen.owner; // someone else is breaking it: wait, then look again
    }
    try {
      // Under the breaker nobody else removes the lock file, and nobody can create one while it
      // exists: if it is still the very file judged stale, removing it removes only that.
      const again = await this.#inspect(this.path);
      if (again?.stale && again.owner.token === seen.owner.token && again.raw === seen.raw) {
        await fsp.unlink(this.path).catch((error) => {
          if (!isNotFound(error)) throw error;
        });
      }
    } finally {
      await fsp.unlink(breaker).catch(() => {});
    }
    return undefined;
  }

  /**
   * A breaker whose holder died mid-break (it holds the breaker for a few file operations) is
   * removed, after checking that the file moved aside is the one judged stale.
   */
  async #clearStaleBreaker(breaker: string): Promise<void> {
    const seen = await this.#inspect(breaker);
    if (!seen?.stale) return;
    const aside = `${breaker}.stale-${randomBytes(6).toString('hex')}`;
    try {
      await fsp.rename(breaker, aside);
    } catch (error) {
      if (isNotFound(error)) return;
      throw error;
    }
    const taken = await fsp.readFile(aside, 'utf8').catch(() => '');
    if (taken !== seen.raw) await fsp.link(aside, breaker).catch(() => {});
    await fsp.unlink(aside).catch(() => {});
  }

  /** Who holds a lock file, and whether it is stale; `undefined` when there is none. */
  async #inspect(path: string): Promise<{ owner: Owner; raw: string; stale: boolean } | undefined> {
    let raw: string;
    let mtimeMs: number;
    try {
      raw = await fsp.readFile(path, 'utf8');
      mtimeMs = (await fsp.stat(path)).mtimeMs;
    } catch (error) {
      if (isNotFound(error)) return undefined;
      throw error;
    }
    const parsed = ownerSchema.safeParse(safeJson(raw));
    // A lock file is always written complete before it appears; garbage means someone else's file.
    const owner: Owner = parsed.success ? parsed.data : { pid: -1, host: '?', token: '?', at: 0 };
    const dead = parsed.success && owner.host === hostname() && !isAlive(owner.pid);
    const expired = Date.now() - mtimeMs > this.#options.staleMs;
    return { owner, raw, stale: dead || expired };
  }

  #held(owner: Owner): () => Promise<void> {
    // Refresh the mtime so that waiters on other hosts do not judge a long hold stale.
    const every = Math.max(250, Math.floor(this.#options.staleMs / 3));
    const timer = setInterval(() => {
      const now = new Date();
      fsp.utimes(this.path, now, now).catch(() => {});
    }, every);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await this.#release(owner);
    };
  }

  /**
   * Removes the lock only if it is still ours (it could have been judged stale and taken over),
   * under the breaker: whoever removes a stale lock does so under the breaker too, so between our
   * check and our unlink nobody can remove our file and put theirs in its place. (Reading and then
   * unlinking without it was the same race the takeover had before the breaker.)
   */
  async #release(owner: Owner): Promise<void> {
    const breaker = `${this.path}.break`;
    const releaser: Owner = { ...owner, token: randomBytes(12).toString('hex'), at: Date.now() };
    let delay = 1;
    for (;;) {
      if (await createExclusive(breaker, releaser)) {
        try {
          const current = safeJson(await fsp.readFile(this.path, 'utf8').catch(() => ''));
          if ((current as Owner | undefined)?.token === owner.token) {
            await fsp.unlink(this.path).catch((error) => {
              if (!isNotFound(error)) throw error;
            });
          }
        } finally {
          await fsp.unlink(breaker).catch(() => {});
        }
        return;
      }
      // A waiter is judging our lock (or breaking it, if it went stale): let it finish.
      this.#options.onReleaseWait?.();
      await this.#clearStaleBreaker(breaker);
      await new Promise((resolve) => setTimeout(resolve, delay));
      delay = Math.min(delay * 2, 20);
    }
  }
}

/** Creates `path` holding `owner`, complete and atomically; false if it exists. */
async function createExclusive(path: string, owner: Owner): Promise<boolean> {
  const temp = join(dirname(path), `.tmp-${basename(path)}-${owner.token}`);
  try {
    await fsp.writeFile(temp, JSON.stringify(owner), { mode: FILE_MODE, flag: 'wx' });
    await fsp.link(temp, path);
    return true;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new KeystoreUnavailableError(
      `cannot take the keystore lock ${path} (${(error as NodeJS.ErrnoException).code ?? 'error'})`,
      {
        cause: error,
      },
    );
  } finally {
    await fsp.unlink(temp).catch(() => {});
  }
}

function isAlive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function safeJson(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    return undefined;
  }
}
