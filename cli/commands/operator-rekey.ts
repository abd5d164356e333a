import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { KekMismatchError } from '../../src/errors.ts';
import type { KeyEncryptionKey } from '../../src/kek/kek.ts';
import { addShamirParams, ShamirKek } from '../../src/kek/shamir-kek.ts';
import { decodeUnsealShare } from '../../src/kek/unseal-share.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { type KekInput, openKeyring } from '../../src/open-keyring.ts';
import { globalFlags, requireExistingKeystore, requireKek, settingsOf } from '../context.ts';
import { out, progress } from '../output.ts';
import { whole } from './operator-init.ts';
import { readUnsealKeys } from './operator-shares.ts';

/**
 * `operator rekey`: Vault's rekey. Takes a threshold of the current unseal keys (or the current
 * KEK as usual, to move a keystore from a file, env, passphrase or HSM KEK to unseal keys), makes
 * a new random KEK split into `--key-shares` new unseal keys, shows them (or writes them) before
 * anything is re-wrapped, then re-wraps every key with the keyring's resumable rekey. Killed
 * halfway, the old unseal keys still open the keystore, and running the command again with the old
 * keys followed by a threshold of the new ones finishes it.
 */
export function registerOperatorRekeyCommand(operator: Command): void {
  operator
    .command('rekey')
    .description('replace the unseal keys: a new KEK and new shares, every key re-wrapped (resumable)')
    .requiredOption('--key-shares <n>', 'number of new unseal keys (2-255)')
    .requiredOption('--key-threshold <t>', 'new unseal keys needed to unseal (2 to --key-shares)')
    .option('--shares-dir <dir>', 'write each new unseal key to its own new file (mode 0600)')
    .action(
      async (options: { keyShares: string; keyThreshold: string; sharesDir?: string }, command: Command) => {
        const shares = whole(options.keyShares, '--key-shares');
        const threshold = whole(options.keyThreshold, '--key-threshold');
        const settings = await settingsOf(command);
        await requireExistingKeystore(settings);
        const keystore = await openKeystore(settings.keystore);
        try {
          const info = await keystore.getKekInfo();
          if (!info?.keystoreId) throw new KekMismatchError('this keystore has no KEK yet (operator init)');
          const sealed = info.shamir?.some((p) => p.kekId === info.currentKekId) ?? false;
          // Unseal keys: the current KEK's (if it is sealed) and, to resume, the unfinished target's.
          const given =
            sealed && !globalFlags(command).unsealKeysFile
              ? await readUnsealKeys({
                  prompt: 'Current unseal key',
                  count: thresholdOf(info, info.currentKekId),
                })
              : [];
          const byKek = new Map<string, string[]>();
          for (const s of given) {
            const kekId = safeKekId(s);
            byKek.set(kekId, [...(byKek.get(kekId) ?? []), s]);
          }
          const current: KekInput =
            sealed && given.length > 0
              ? { shares: byKek.get(info.currentKekId) ?? [] }
              : requireKek(settings);
          let target: KeyEncryptionKey;
          const pending = info.rekey?.toKekId;
          if (pending && info.shamir?.some((p) => p.kekId === pending)) {
            const kek = ShamirKek.fromRecord(info, pending);
            for (const s of byKek.get(pending) ?? []) await kek.submit(s);
            if (kek.sealed) {
              throw new KekMismatchError(
                `a rekey to KEK ${pending} is unfinished: give the current unseal keys followed by ${kek.threshold} of its new unseal keys (one per line on stdin) to finish it`,
              );
            }
            target = kek;
            progress(`resuming the rekey to KEK ${pending}`);
          } else {
            const made = await ShamirKek.generate({ keystoreId: info.keystoreId, shares, threshold });
            await addShamirParams(keystore, made.params);
            // Shown before any key is re-wrapped: a crash must never leave keys under a KEK nobody holds.
            await showShares(made.shares, info.keystoreId, options.sharesDir);
            target = made.kek;
          }
          const opened = await openKeyring({ keystore, kek: current, meter: false });
          try {
            const { rewrapped } = await opened.keyring.rekey(target);
            out(
              `Rekey complete: ${rewrapped} key version(s) re-wrapped under KEK ${target.id}; only the new unseal keys open keystore ${info.keystoreId} now.`,
            );
          } finally {
            await opened.close();
          }
        } finally {
          await keystore.close();
        }
      },
    );
}

function thresholdOf(info: { shamir?: { kekId: string; threshold: number }[] }, kekId: string): number {
  return info.shamir?.find((p) => p.kekId === kekId)?.threshold ?? 1;
}

function safeKekId(share: string): string {
  try {
    return decodeUnsealShare(share).kekId;
  } catch {
    return 'malformed';
  }
}

async function showShares(shares: string[], keystoreId: string, dir: string | undefined): Promise<void> {
  if (dir === undefined) {
    for (const [i, share] of shares.entries()) out(`New Unseal Key ${i + 1}: ${share}`);
    return;
  }
  const base = resolve(dir);
  await mkdir(base, { recursive: true, mode: 0o700 });
  for (const [i, share] of shares.entries()) {
    const path = join(base, `unseal-key-${keystoreId}-${i + 1}`);
    await writeFile(path, `${share}\n`, { mode: 0o600, flag: 'wx' });
    out(`wrote ${path}`);
  }
}
