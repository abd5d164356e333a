import type { KekInfo, KekUpgrade } from '../keystore/keystore.ts';
import type { Logger } from '../runtime/logger.ts';
import type { RandomSource } from '../runtime/random.ts';
import { type KeyEncryptionKey, LocalKek, upgradeAad } from './kek.ts';

/**
 * How long after a KEK rotation a process holding only the old KEK still reads every key (through
 * the upgrade key): twice the default 30 s metadata refresh plus margin, as the rotation policy's
 * propagation delay.
 */
export const DEFAULT_KEK_PROPAGATION_MS = 2 * 60 * 1000;

/** The record's upgrade keys still in force at `now`. */
export function liveUpgrades(info: KekInfo | undefined, now: number): KekUpgrade[] {
  return (info?.upgrades ?? []).filter((u) => u.until === undefined || u.until > now);
}

/**
 * The upgrade key a rekey leaves for processes holding only the old KEK (Vault's upgrade keys):
 * `newKek` wrapped by `oldKek`. `undefined` when the new KEK cannot be wrapped (it lives in an HSM).
 */
export async function makeUpgrade(
  oldKek: KeyEncryptionKey,
  newKek: KeyEncryptionKey,
): Promise<KekUpgrade | undefined> {
  if (!newKek.wrapWith || oldKek.sealed) return undefined;
  return {
    fromKekId: oldKek.id,
    toKekId: newKek.id,
    wrapped: Buffer.from(await newKek.wrapWith(oldKek)).toString('base64'),
  };
}

/**
 * Learns KEKs from the record's live upgrade keys: a KEK in `keks` unwraps the KEK that replaced it
 * (repeatedly, along a chain of rekeys), which is added to `keys`. Returns whether it learned any.
 */
export async function learnUpgrades(
  keks: Map<string, KeyEncryptionKey>,
  info: KekInfo | undefined,
  now: number,
  random: RandomSource,
  logger?: Logger,
): Promise<boolean> {
  const upgrades = liveUpgrades(info, now);
  let learned = false;
  for (let progress = true; progress; ) {
    progress = false;
    for (const u of upgrades) {
      const from = keks.get(u.fromKekId);
      if (!from || keks.has(u.toKekId) || from.sealed) continue;
      try {
        const bytes = await from.unwrap(Buffer.from(u.wrapped, 'base64'), upgradeAad(u.fromKekId, u.toKekId));
        const kek = new LocalKek(bytes, random);
        Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).fill(0);
        if (kek.id !== u.toKekId) continue;
        keks.set(kek.id, kek);
        progress = true;
        learned = true;
        logger?.info({ from: u.fromKekId, to: u.toKekId }, 'KEK learned from an upgrade key');
      } catch {
        // A damaged upgrade key only means this process cannot follow that rekey.
      }
    }
  }
  return learned;
}
