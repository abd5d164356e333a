import type { Command } from 'commander';
import { assertPropagated } from '../../src/rotation/rotation-policy.ts';
import { withKeyring } from '../context.ts';
import { out, printJson, versionJson } from '../output.ts';
import { namespaceArg } from './parse.ts';

/**
 * `keys rotate`: a new active version now, or with `--prepublish` phase one of a two-phase
 * rotation (the new version is published, and a later `keys rotate` activates it once every
 * process has refreshed).
 */
export function registerKeysRotateCommand(keys: Command): void {
  keys
    .command('rotate')
    .description("rotate a namespace's key (activates a prepublished version if there is one)")
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .option('--prepublish', 'create the new version prepublished: known everywhere, not yet encrypting')
    .option('--force', 'activate a prepublished version even before its propagation delay has passed')
    .option('--json', 'print the result as JSON')
    .action(
      async (
        options: { namespace: string; prepublish?: boolean; force?: boolean; json?: boolean },
        command: Command,
      ) => {
        const namespace = namespaceArg(options.namespace);
        const mode = options.prepublish ? 'prepublish' : 'immediate';
        const result = await withKeyring(command, async ({ keyring }, settings) => {
          if (mode === 'immediate' && !options.force) {
            const pending = (await keyring.versions(namespace)).find((v) => v.state === 'prepublished');
            const delay = settings.rotationPolicy(namespace).propagationDelay;
            assertPropagated(pending, delay, keyring.clock.now(), 'pass --force');
          }
          return keyring.rotate(namespace, { mode });
        });
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
          out(`nothing to do: ${current.keyId} is already ${current.state}`);
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
