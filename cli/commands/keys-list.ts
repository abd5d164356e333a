import type { Command } from 'commander';
import { NamespaceNotFoundError } from '../../src/errors.ts';
import type { KeyVersion } from '../../src/model/key-version.ts';
import { withKeystore } from '../context.ts';
import { out, printJson, shortTime, table, versionJson } from '../output.ts';
import { namespaceArg } from './parse.ts';

/**
 * `keys list`: key versions and their states. Reads metadata only, so it needs no KEK.
 * JSON form (stable): `{"keys": [{namespace, version, keyId, state, createdAt, activatedAt,
 * deactivatedAt, deprecatedAt, destroyedAt}, ...]}`, timestamps ISO 8601 or null, sorted by
 * namespace then version.
 */
export function registerKeysListCommand(keys: Command): void {
  keys
    .command('list')
    .description('list key versions and their states (needs no KEK)')
    .option('-n, --namespace <namespace>', 'only this namespace')
    .option('--json', 'print JSON instead of a table')
    .action(async (options: { namespace?: string; json?: boolean }, command: Command) => {
      const only = options.namespace === undefined ? undefined : namespaceArg(options.namespace);
      const versions = await withKeystore(command, async (keystore) => {
        const namespaces = only === undefined ? await keystore.listNamespaces() : [only];
        const all: KeyVersion[] = [];
        for (const ns of namespaces) {
          const list = await keystore.getVersions(ns);
          if (only !== undefined && list.length === 0) throw new NamespaceNotFoundError(ns);
          all.push(...list);
        }
        return all;
      });
      if (options.json) {
        printJson({ keys: versions.map(versionJson) });
        return;
      }
      if (versions.length === 0) {
        out('no keys yet (create some with: temporal-keyring keys create --namespace <namespace>)');
        return;
      }
      out(
        table(
          ['NAMESPACE', 'VERSION', 'KEY ID', 'STATE', 'CREATED', 'ACTIVATED', 'DEACTIVATED'],
          versions.map((v) => [
            v.namespace,
            String(v.version),
            v.keyId,
            v.state,
            shortTime(v.createdAt),
            shortTime(v.activatedAt),
            shortTime(v.deactivatedAt),
          ]),
        ),
      );
    });
}
