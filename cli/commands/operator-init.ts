import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Command } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { initShamirKeystore } from '../../src/kek/shamir-kek.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { settingsOf } from '../context.ts';
import { out, printJson } from '../output.ts';

/**
 * `operator init`: Vault's ceremony. Creates a new keystore whose KEK is random, split into
 * `--key-shares` unseal keys of which `--key-threshold` rebuild it, and stored nowhere (the
 * keystore keeps its check value and the split parameters). The unseal keys are shown once, on
 * stdout, or written one per new owner-only file with `--shares-dir`; they are never logged.
 */
export function registerOperatorInitCommand(operator: Command): void {
  operator
    .command('init')
    .description('create a keystore sealed with Shamir unseal keys (shown once; its KEK is stored nowhere)')
    .requiredOption('--key-shares <n>', 'number of unseal keys to make (2-255)')
    .requiredOption('--key-threshold <t>', 'unseal keys needed to unseal (2 to --key-shares)')
    .option('--shares-dir <dir>', 'write each unseal key to its own new file (mode 0600) in this directory')
    .option('--json', 'print the result as JSON (with the unseal keys unless --shares-dir)')
    .action(
      async (
        options: { keyShares: string; keyThreshold: string; sharesDir?: string; json?: boolean },
        command: Command,
      ) => {
        const shares = whole(options.keyShares, '--key-shares');
        const threshold = whole(options.keyThreshold, '--key-threshold');
        const settings = await settingsOf(command);
        const keystore = await openKeystore(settings.keystore);
        let result: Awaited<ReturnType<typeof initShamirKeystore>>;
        try {
          result = await initShamirKeystore(keystore, { shares, threshold });
        } finally {
          await keystore.close();
        }
        const files: string[] = [];
        if (options.sharesDir !== undefined) {
          const dir = resolve(options.sharesDir);
          await mkdir(dir, { recursive: true, mode: 0o700 });
          for (const [i, share] of result.shares.entries()) {
            const path = join(dir, `unseal-key-${result.keystoreId}-${i + 1}`);
            await writeFile(path, `${share}\n`, { mode: 0o600, flag: 'wx' });
            files.push(path);
          }
        }
        if (options.json) {
          printJson({
            keystoreId: result.keystoreId,
            kekId: result.kekId,
            keyShares: shares,
            keyThreshold: threshold,
            ...(files.length > 0 ? { files } : { unsealKeys: result.shares }),
          });
          return;
        }
        if (files.length > 0) {
          for (const f of files) out(`wrote ${f}`);
        } else {
          for (const [i, share] of result.shares.entries()) out(`Unseal Key ${i + 1}: ${share}`);
        }
        out('');
        out(
          `Keystore ${result.keystoreId} initialized with KEK ${result.kekId}, sealed with ${shares} unseal keys.`,
        );
        out(`Any ${threshold} of them unseal it (temporal-keyring operator unseal --url URL).`);
        out('Give each unseal key to a different person. They are shown only now and stored nowhere:');
        out(`with fewer than ${threshold} of them, every key in this keystore is lost.`);
      },
    );
}

export function whole(text: string, field: string): number {
  if (!/^[0-9]{1,3}$/.test(text.trim())) throw new InvalidOptionError(field, 'must be a whole number');
  return Number(text.trim());
}
