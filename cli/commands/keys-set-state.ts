import { type Command, Option } from 'commander';
import { InvalidOptionError } from '../../src/errors.ts';
import { KEY_STATES, type KeyState } from '../../src/model/key-version.ts';
import { withKeyring } from '../context.ts';
import { out, printJson, versionJson } from '../output.ts';
import { namespaceArg, versionArg } from './parse.ts';

/**
 * `keys set-state`: moves one version along its lifecycle (see key-version.ts for the allowed
 * transitions). `destroyed` erases the material for good, so it asks for `--yes`. `active` is an
 * activation: the lifecycle owner refuses it before the version's propagation delay has passed,
 * unless `--force`.
 */
export function registerKeysSetStateCommand(keys: Command): void {
  keys
    .command('set-state')
    .description('change the state of a key version')
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .requiredOption('--version <n>', 'key version number', (v) => versionArg(v))
    .addOption(new Option('--state <state>', 'new state').choices(KEY_STATES).makeOptionMandatory())
    .option('--yes', 'confirm an irreversible change (required for --state destroyed)')
    .option('--force', 'activate a prepublished version even before its propagation delay has passed')
    .option('--json', 'print the version as JSON')
    .action(
      async (
        options: {
          namespace: string;
          version: number;
          state: KeyState;
          yes?: boolean;
          force?: boolean;
          json?: boolean;
        },
        command: Command,
      ) => {
        const namespace = namespaceArg(options.namespace);
        if (options.state === 'destroyed' && !options.yes) {
          throw new InvalidOptionError(
            '--yes',
            'destroying a key version erases it for good: payloads encrypted with it can never be decrypted again; add --yes to confirm',
          );
        }
        const { result, kind } = await withKeyring(command, async ({ keyring }, settings) => ({
          result: await keyring.manager.setState(namespace, options.version, options.state, {
            force: options.force === true,
          }),
          kind: settings.keystore.kind,
        }));
        const { previous, current } = result;
        if (options.json) printJson(versionJson(current));
        else if (result.performed) {
          out(`${current.keyId}: ${previous.state} -> ${current.state}`);
          if (current.state === 'destroyed') out(destroyedNote(current.keyId, kind));
        } else if (current.state === options.state) out(`${current.keyId} is already ${current.state}`);
        else out(`nothing done: another change came first; ${current.keyId} is ${current.state}`);
      },
    );
}

/**
 * Processes that already hold a version's key keep it until they learn of the change (see
 * SECURITY.md): at their next refresh, or at once through PostgreSQL's NOTIFY.
 */
export function destroyedNote(keyId: string, keystore: 'file' | 'postgres'): string {
  return keystore === 'postgres'
    ? `note: running processes are told at once (PostgreSQL NOTIFY); one whose notification connection is down keeps decrypting ${keyId} until its next key refresh (30 s by default)`
    : `note: running processes (workers, codec servers) that loaded ${keyId} keep decrypting with it until their next key refresh (30 s by default); restart them to stop at once`;
}
