import { writeFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64 } from '../../src/kek/kek-source.ts';
import { out } from '../output.ts';

/**
 * `keygen`: a new random 256-bit KEK, base64. Printed on stdout (so that
 * `export TEMPORAL_KEYRING_KEK=$(temporal-keyring keygen)` works), or written to a new file readable
 * by its owner only. The one command (with `token create`) that prints a secret, by design.
 */
export function registerKeygenCommand(program: Command): void {
  program
    .command('keygen')
    .description('generate a new key-encryption key (KEK): 256 random bits, base64')
    .option('--out <file>', 'write the KEK to this new file (mode 0600) instead of stdout; never overwrites')
    .action(async (options: { out?: string }) => {
      const kek = generateKekBase64();
      if (options.out === undefined) {
        out(kek);
        return;
      }
      const path = resolve(options.out);
      try {
        // 'wx': fail if the file exists, so a KEK in use is never replaced by accident.
        await writeFile(path, `${kek}\n`, { mode: 0o600, flag: 'wx' });
      } catch (error) {
        const code = (error as NodeJS.ErrnoException).code;
        if (code === 'EEXIST')
          throw new InvalidOptionError('--out', `${path} already exists; refusing to overwrite it`);
        throw new InvalidOptionError('--out', `cannot write ${path}${code ? ` (${code})` : ''}`);
      }
      out(`wrote a new KEK to ${path} (KEK id ${LocalKek.fromBase64(kek).id})`);
    });
}
