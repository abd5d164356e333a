import type { Command } from 'commander';
import { configJsonSchema } from '../../src/config/config-schema.ts';
import { describeKeystoreLocation } from '../../src/keystore/keystore-location.ts';
import { settingsOf } from '../context.ts';
import { out, printJson } from '../output.ts';

/**
 * `config show`: the settings in effect and where each came from (flag, env, config, default).
 * Never prints a KEK, a passphrase or a database password.
 */
export function registerConfigCommands(program: Command): void {
  const config = program.command('config').description('inspect the configuration');
  config
    .command('show')
    .description('show the settings in effect and where each comes from (no secrets)')
    .option('--json', 'print JSON')
    .action(async (options: { json?: boolean }, command: Command) => {
      const settings = await settingsOf(command);
      const kek = settings.kekOrigin === undefined ? undefined : settings.kek();
      const view = {
        configFile: settings.configPath ?? null,
        keystore: {
          kind: settings.keystore.kind,
          location: describeKeystoreLocation(settings.keystore),
          from: settings.keystoreOrigin,
        },
        kek: kek
          ? 'pkcs11' in kek
            ? { type: 'pkcs11', token: kek.pkcs11.token, key: kek.pkcs11.key, from: settings.kekOrigin }
            : 'shares' in kek
              ? { type: 'shamir', from: settings.kekOrigin }
              : {
                  type: kek.type,
                  ...(kek.type === 'file' ? { path: kek.path } : {}),
                  from: settings.kekOrigin,
                }
          : null,
        namespaces: Object.keys(settings.config.namespaces ?? {}).sort(),
      };
      if (options.json) {
        printJson(view);
        return;
      }
      out(`config file: ${view.configFile ?? '(none)'}`);
      out(`keystore:    ${view.keystore.kind} ${view.keystore.location}  (from ${view.keystore.from})`);
      out(
        `kek:         ${view.kek ? `${view.kek.type}${'path' in view.kek ? ` ${view.kek.path}` : ''}  (from ${view.kek.from})` : '(none given)'}`,
      );
      out(`namespaces:  ${view.namespaces.length ? view.namespaces.join(', ') : '(none configured)'}`);
    });

  config
    .command('schema')
    .description('print the JSON Schema of the config file (for editors: "$schema")')
    .action(async () => {
      const { serverConfigSchema } = await import('../../src/config/server-config.ts');
      printJson(configJsonSchema(serverConfigSchema));
    });
}
