import type { Command } from 'commander';
import { withKeyring } from '../context.ts';
import { out, printJson, versionJson } from '../output.ts';
import { namespaceArg } from './parse.ts';

/** `keys create`: version 1 (active) of a new namespace. */
export function registerKeysCreateCommand(keys: Command): void {
  keys
    .command('create')
    .description("create a namespace's first key (version 1, active)")
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .option('--json', 'print the new version as JSON')
    .action(async (options: { namespace: string; json?: boolean }, command: Command) => {
      const namespace = namespaceArg(options.namespace);
      const created = await withKeyring(
        command,
        ({ keyring }) => keyring.manager.createNamespace(namespace),
        undefined,
        {
          create: true,
        },
      );
      if (options.json) printJson(versionJson(created));
      else out(`created key ${created.keyId} (active) for namespace "${namespace}"`);
    });
}
