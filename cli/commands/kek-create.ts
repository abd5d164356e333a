import type { Command } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { out } from '../output.ts';

/**
 * `kek create --pkcs11-module ... --pkcs11-token ... --pkcs11-key LABEL --pkcs11-pin-env VAR`:
 * generates the KEK inside the HSM token (AES-256, non-extractable, sensitive); it never leaves
 * it. The global `--pkcs11-*` flags name it; the config's `kek.pkcs11` then uses it.
 */
export function registerKekCreateCommand(kek: Command): void {
  kek
    .command('create')
    .description('generate a non-extractable AES-256 KEK inside a PKCS#11 token (give the --pkcs11-* flags)')
    .action(async (_options: unknown, command: Command) => {
      const o = command.optsWithGlobals() as Record<string, string | undefined>;
      const flags = {
        pkcs11Module: '--pkcs11-module',
        pkcs11Token: '--pkcs11-token',
        pkcs11Key: '--pkcs11-key',
        pkcs11PinEnv: '--pkcs11-pin-env',
      };
      const missing = Object.entries(flags).find(([k]) => !o[k]);
      if (missing) {
        throw new InvalidOptionError(
          missing[1],
          'is required: kek create makes a key inside a PKCS#11 token',
        );
      }
      const pin = process.env[o.pkcs11PinEnv!];
      if (!pin)
        throw new InvalidOptionError('--pkcs11-pin-env', `environment variable ${o.pkcs11PinEnv} is not set`);
      const { Pkcs11Kek } = await import('../../src/kek/pkcs11-kek.ts');
      const created = await Pkcs11Kek.create({
        module: o.pkcs11Module!,
        token: o.pkcs11Token!,
        key: o.pkcs11Key!,
        pin,
      });
      out(
        `created KEK ${created.id}: AES-256 key "${o.pkcs11Key}" in token "${o.pkcs11Token}", non-extractable and sensitive`,
      );
      created.close();
    });
}
