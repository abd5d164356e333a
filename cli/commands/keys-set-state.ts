import { type Command, Option } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { KEY_STATES, type KeyState } from '../../src/model/key-version.ts';
import { withKeyring } from '../context.ts';
import { out, printJson, versionJson } from '../output.ts';
import { namespaceArg, versionArg } from './parse.ts';

/**
 * `keys set-state`: moves one version along its lifecycle (see key-version.ts for the allowed
 * transitions). `destroyed` erases the material for good, so it asks for `--yes`.
 */
export function registerKeysSetStateCommand(keys: Command): void {
  keys
    .command('set-state')
    .description('change the state of a key version')
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .requiredOption('--version <n>', 'key version number', (v) => versionArg(v))
    .addOption(new Option('--state <state>', 'new state').choices(KEY_STATES).makeOptionMandatory())
    .option('--yes', 'confirm an irreversible change (required for --state destroyed)')
    .option('--json', 'print the version as JSON')
    .action(
      async (
        options: { namespace: string; version: number; state: KeyState; yes?: boolean; json?: boolean },
        command: Command,
      ) => {
        const namespace = namespaceArg(options.namespace);
        if (options.state === 'destroyed' && !options.yes) {
          throw new InvalidOptionError(
            '--yes',
            'destroying a key version erases it for good: payloads encrypted with it can never be decrypted again; add --yes to confirm',
          );
        }
        const { before, after } = await withKeyring(command, async ({ keyring }) => {
          const found = (await keyring.versions(namespace)).find((v) => v.version === options.version);
          const changed = await keyring.setState(namespace, options.version, options.state);
          return { before: found, after: changed };
        });
        if (options.json) printJson(versionJson(after));
        else if (before?.state === after.state) out(`${after.keyId} is already ${after.state}`);
        else out(`${after.keyId}: ${before?.state ?? '?'} -> ${after.state}`);
      },
    );
}
