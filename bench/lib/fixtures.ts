import { randomBytes } from 'node:crypto';
import type { Payload } from '@temporalio/common';
import { LocalKek } from '../../src/kek/kek.ts';
import { Keyring } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';

/** A real Keyring (memory keystore, local KEK) with namespace `default` created: what users run. */
export async function benchKeyring(): Promise<Keyring> {
  const keyring = await Keyring.open({ keystore: new MemoryKeystore(), kek: new LocalKek(randomBytes(32)) });
  await keyring.createNamespace('default');
  return keyring;
}

/** `count` JSON-like payloads whose data is `size` random bytes. */
export function payloads(size: number, count: number): Payload[] {
  return Array.from({ length: count }, () => ({
    metadata: { encoding: new TextEncoder().encode('json/plain') },
    data: randomBytes(size),
  }));
}
