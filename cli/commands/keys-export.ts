import { userInfo } from 'node:os';
import type { Command } from 'commander';
import { cannotUnmark, exportableSince, exportKeys, markExportable } from '../../src/codec/key-export.ts';
import { withKeyring } from '../context.ts';
import { out, printJson, progress, shortTime, table } from '../output.ts';
import { namespaceArg, versionArg } from './parse.ts';

/**
 * `keys export` (admin): prints a namespace's raw keys in base64 with the ESDK names another
 * language's AWS Encryption SDK needs (docs/payload-format.md, "Recipes for other SDKs").
 *
 * The namespace must be exportable: `"exportable": true` in its config marks it in the keystore
 * (once, irreversibly); otherwise `ERR_NOT_EXPORTABLE`. Every export writes an audit line on stderr
 * (who, when, which versions; never the keys). JSON form: the `KeyExport` of key-export.ts.
 */
export function registerKeysExportCommand(keys: Command): void {
  keys
    .command('export')
    .description('print the raw keys of an exportable namespace, for workers in other languages (admin)')
    .requiredOption('-n, --namespace <namespace>', 'Temporal namespace')
    .option('--version <n>', 'only this key version', (v) => versionArg(v))
    .option('--json', 'print JSON')
    .action(async (options: { namespace: string; version?: number; json?: boolean }, command: Command) => {
      const namespace = namespaceArg(options.namespace);
      const result = await withKeyring(command, async ({ keyring }, settings) => {
        const wanted = settings.namespace(namespace).exportable;
        if (wanted === true) {
          const { markedAt, changed } = await markExportable(keyring, namespace);
          if (changed)
            progress(`marked namespace "${namespace}" exportable (irreversible) at ${shortTime(markedAt)}`);
        } else if (wanted === false) {
          const since = await exportableSince(keyring, namespace);
          if (since !== undefined) progress(`note: ${cannotUnmark(namespace, since).message}`);
        }
        return exportKeys(keyring, namespace, { version: options.version });
      });
      const user = safeUser();
      progress(
        `audit: ${JSON.stringify({ action: 'keys-export', at: new Date().toISOString(), user, namespace, versions: result.versions.map((v) => v.version) })}`,
      );
      if (options.json) {
        printJson(result);
        return;
      }
      out(
        table(
          [
            'VERSION',
            'STATE',
            'KEY (base64)',
            'FORMAT 1 provider id / key name',
            'FORMAT 2 provider id / key name',
          ],
          result.versions.map((v) => [
            String(v.version),
            v.state,
            v.material,
            `${v.esdk.format1.providerId} / ${v.esdk.format1.keyName}`,
            `${v.esdk.format2.providerId} / ${v.esdk.format2.keyName}`,
          ]),
        ),
      );
      for (const s of result.skipped) out(`version ${s.version} (${s.state}) not exported: ${s.reason}`);
    });
}

function safeUser(): string {
  try {
    return userInfo().username;
  } catch {
    return 'unknown';
  }
}
