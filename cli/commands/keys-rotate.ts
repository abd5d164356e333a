import type { Command } from 'commander';
import { withKeyring } from '../context.ts';
import { out, printJson, versionJson } from '../output.ts';
import { namespaceArg, versionArg } from './parse.ts';

/**
 * `keys rotate`: a new active version now, or with `--prepublish` phase one of a two-phase
 * rotation (the new version is published, and a later `keys rotate` activates it once every
 * process has refreshed). Every rule (the propagation delay, one winner among concurrent
 * rotations) is the keyring's lifecycle owner's; `--force` is the only way past the delay.
 */
export function registerKeysRotateCommand(keys: Command): void {
  keys
    .command('rotate')
    .description("rotate a namespace's key (activates a prepublished version if there is one)")
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .option('--prepublish', 'create the new version prepublished: known everywhere, not yet encrypting')
    .option('--force', 'activate a prepublished version even before its propagation delay has passed')
    .option(
      '--expected-active-version <n>',
      'rotate only if this version is still the active one (concurrent callers rotate once)',
      (v) => versionArg(v, '--expected-active-version'),
    )
    .option('--json', 'print the result as JSON')
    .action(
      async (
        options: {
          namespace: string;
          prepublish?: boolean;
          force?: boolean;
          expectedActiveVersion?: number;
          json?: boolean;
        },
        command: Command,
      ) => {
        const namespace = namespaceArg(options.namespace);
        const mode = options.prepublish ? 'prepublish' : 'immediate';
        const result = await withKeyring(command, ({ keyring }) =>
          keyring.manager.rotate(namespace, {
            mode,
            force: options.force === true,
            ...(options.expectedActiveVersion === undefined
              ? {}
              : { expectedActiveVersion: options.expectedActiveVersion }),
          }),
        );
        if (options.json) {
          printJson({
            namespace,
            performed: result.performed,
            previous: result.previous ? versionJson(result.previous) : null,
            current: versionJson(result.current),
          });
          return;
        }
        const { previous, current } = result;
        if (!result.performed) {
          out(
            `nothing to do: ${current.keyId} is ${current.state} (another change came first, or nothing was due)`,
          );
        } else if (current.state === 'prepublished') {
          out(
            `prepublished ${current.keyId}; ${previous?.keyId} stays active. Once every process has refreshed (2 min by default), activate it with: temporal-keyring keys rotate --namespace ${namespace}`,
          );
        } else {
          out(
            `rotated namespace "${namespace}": ${current.keyId} is active, ${previous?.keyId ?? 'none'} is inactive`,
          );
        }
      },
    );
}
