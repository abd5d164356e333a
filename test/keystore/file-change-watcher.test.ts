import { randomBytes } from 'node:crypto';
import { rm } from 'node:fs/promises';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { FileChangeWatcher } from '../../src/keystore/file-change-watcher.ts';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import type { KeystoreEvent } from '../../src/keystore/keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';
import { tempDir } from '../support/temp-dir.ts';

describe('FileChangeWatcher (the file keystore change push)', () => {
  let dir: string;
  afterEach(async () => rm(dir, { recursive: true, force: true, maxRetries: 5 }));

  it('announces a commit made through another handle within one poll', async () => {
    dir = await tempDir('tk-watch-');
    const clock = new ManualClock();
    const writer = await FileKeystore.open({ dir });
    const keyring = await Keyring.open({ keystore: writer, kek: new LocalKek(randomBytes(32)) });
    await keyring.createNamespace('orders');
    const watcher = new FileChangeWatcher(dir, clock, 200);
    const events: KeystoreEvent[] = [];
    const unsubscribe = watcher.subscribe((e) => events.push(e));
    clock.advance(0); // first poll: learns the current state, announces nothing
    await watcher.settled();
    expect(events).toEqual([]);
    await keyring.rotate('orders', { mode: 'prepublish' });
    clock.advance(199);
    await watcher.settled();
    expect(events).toEqual([]);
    clock.advance(1);
    await watcher.settled();
    expect(events).toEqual([{ type: 'namespace-changed', namespace: 'orders' }]);
    // Nothing changed: nothing announced.
    clock.advance(200);
    await watcher.settled();
    expect(events).toHaveLength(1);
    unsubscribe();
    await keyring.close();
    await writer.close();
  });
});
