import { randomBytes } from 'node:crypto';
import type { Payload } from '@temporalio/common';
import { EncryptionCodec } from '../../src/codec/encryption-codec.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import {
  createKeyHandle,
  type KeyHandle,
  type KeyProvider,
  type OwnedKeyHandle,
} from '../../src/keyring/key-handle.ts';
import { Keyring, type KeyringOptions } from '../../src/keyring/keyring.ts';
import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { ManualClock } from '../../src/runtime/clock.ts';

export const utf8 = (s: string) => new TextEncoder().encode(s);
export const text = (b: Uint8Array | null | undefined) => (b ? Buffer.from(b).toString('utf8') : undefined);

/** A real Keyring over a MemoryKeystore with a LocalKek and a ManualClock, with namespaces created. */
export async function keyringFixture(
  namespaces: string[] = ['default'],
  options: Partial<KeyringOptions> = {},
) {
  const clock = new ManualClock();
  const store = new MemoryKeystore();
  const kek = new LocalKek(randomBytes(32));
  const keyring = await Keyring.open({ keystore: store, kek, clock, ...options });
  for (const ns of namespaces) await keyring.createNamespace(ns);
  const codec = (namespace = namespaces[0]!) => new EncryptionCodec({ namespace, keys: keyring });
  return { clock, store, kek, keyring, codec };
}

/** Records what a codec asks of its key provider. */
export class RecordingKeys implements KeyProvider {
  readonly calls: string[] = [];
  constructor(readonly inner: KeyProvider) {}
  encryptionKey(namespace: string, count: number): Promise<KeyHandle> {
    this.calls.push(`encrypt ${namespace} ${count}`);
    return this.inner.encryptionKey(namespace, count);
  }
  decryptionKey(namespace: string, version: number): Promise<KeyHandle> {
    this.calls.push(`decrypt ${namespace} ${version}`);
    return this.inner.decryptionKey(namespace, version);
  }
}

/**
 * Fixed keys, as another system (or a test vector) would hold them: one handle per key, made with
 * `createKeyHandle`, returned every time, revoked by `close()`.
 */
export class StaticKeys implements KeyProvider {
  readonly #handles: OwnedKeyHandle[];
  constructor(
    keys: { namespace: string; version: number; material: Uint8Array }[],
    readonly activeIndex = 0,
  ) {
    this.#handles = keys.map((k) => createKeyHandle(k));
  }
  async encryptionKey(): Promise<KeyHandle> {
    return this.#handles[this.activeIndex]!.handle;
  }
  async decryptionKey(namespace: string, version: number): Promise<KeyHandle> {
    const k = this.#handles.find((x) => x.handle.namespace === namespace && x.handle.version === version);
    if (!k) throw new Error(`no key ${namespace}/v${version}`);
    return k.handle;
  }
  close(): void {
    for (const k of this.#handles) k.revoke();
  }
}

/** True when `needle` occurs anywhere in `haystack`. */
export function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) !== -1;
}

export function jsonPayload(value: unknown): Payload {
  return { metadata: { encoding: utf8('json/plain') }, data: utf8(JSON.stringify(value)) };
}
