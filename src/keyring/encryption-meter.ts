/**
 * Where the keyring accounts for encryptions: called with the number of AES-GCM encryptions about
 * to be made under a key version, before they are made. The usage meter (usage-meter.ts) reserves
 * counts from the keystore in blocks so the stored count never falls below the truth.
 */
export interface EncryptionMeter {
  /** Accounts for `count` encryptions under this version; throws to refuse them. */
  spend(namespace: string, version: number, count: number): void | Promise<void>;
  /** Flushes exact counts and stops timers. */
  close(): Promise<void>;
}
