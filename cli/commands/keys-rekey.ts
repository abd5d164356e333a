import type { Command } from 'commander';
import { ENV } from '../../src/config/resolve-settings.ts';
import { InvalidOptionError } from '../../src/errors.ts';
import { type KekSource, loadKek } from '../../src/kek/kek-source.ts';
import type { Keystore } from '../../src/keystore/keystore.ts';
import { openKeystore } from '../../src/keystore/open-keystore.ts';
import { openFromSettings, requireExistingKeystore, settingsOf } from '../context.ts';
import { out, printJson, progress } from '../output.ts';

/**
 * `keys rekey`: KEK rotation. Every key version is re-wrapped under the new KEK (`KeyManager.rekey`).
 * Resumable: the keystore records the rotation in progress and which KEK wraps each key, so after
 * an interruption the same command continues where it stopped. Until it completes, the old and
 * the new KEK are both accepted; afterwards only the new one is.
 */
export function registerKeysRekeyCommand(keys: Command): void {
  keys
    .command('rekey')
    .description('re-wrap every key under a new KEK (resumable; the current KEK is given as usual)')
    .option('--new-kek-file <file>', 'file holding the new base64 KEK')
    .option('--new-kek-env <var>', 'environment variable holding the new base64 KEK')
    .option('--json', 'print the result as JSON')
    .action(
      async (options: { newKekFile?: string; newKekEnv?: string; json?: boolean }, command: Command) => {
        const source = newKekSource(options);
        const newKek = await loadKek(source);
        const settings = await settingsOf(command);
        await requireExistingKeystore(settings);
        const keystore = await openKeystore(settings.keystore);
        try {
          const pending = await countPending(keystore, newKek.id);
          progress(`re-wrapping ${pending} key version(s) under KEK ${newKek.id}`);
          let done = 0;
          const opened = await openFromSettings(settings, {
            keystore: withProgress(keystore, () => {
              done++;
              if (done === pending || done % 100 === 0) progress(`  ${done}/${pending}`);
            }),
          });
          try {
            // The KEK the keys are moving away from (when resuming, the one recorded at the start).
            const info = await keystore.getKekInfo();
            const from = info?.rekey?.fromKekId ?? info?.currentKekId ?? opened.keyring.kekId;
            const { rewrapped } = await opened.keyring.manager.rekey(newKek);
            if (options.json) {
              printJson({ fromKekId: from, toKekId: newKek.id, rewrapped });
            } else {
              out(
                `KEK rotation complete: ${rewrapped} key version(s) re-wrapped; the keystore now needs KEK ${newKek.id}. Give every process the new KEK (${ENV.kek} or ${ENV.kekFile}).`,
              );
            }
          } finally {
            await opened.close();
          }
        } finally {
          await keystore.close();
        }
      },
    );
}

function newKekSource(options: { newKekFile?: string; newKekEnv?: string }): KekSource {
  if (options.newKekFile !== undefined && options.newKekEnv !== undefined) {
    throw new InvalidOptionError('--new-kek-file', 'give either --new-kek-file or --new-kek-env, not both');
  }
  if (options.newKekFile !== undefined) return { type: 'file', path: options.newKekFile };
  if (options.newKekEnv !== undefined) {
    const value = process.env[options.newKekEnv];
    if (!value)
      throw new InvalidOptionError('--new-kek-env', `environment variable ${options.newKekEnv} is not set`);
    return { type: 'base64', value };
  }
  throw new InvalidOptionError(
    '--new-kek-file',
    'the new KEK is required: give --new-kek-file or --new-kek-env',
  );
}

/** Key versions whose material is not yet wrapped by `kekId`. */
async function countPending(keystore: Keystore, kekId: string): Promise<number> {
  let pending = 0;
  for (const ns of await keystore.listNamespaces()) {
    for (const v of await keystore.getVersions(ns)) {
      const wrapped = await keystore.getMaterial(ns, v.version);
      if (wrapped && wrapped.kekId !== kekId) pending++;
    }
  }
  return pending;
}

/** The same keystore, calling `onRewrap` after each re-wrapped key; `close` is left to the owner. */
function withProgress(keystore: Keystore, onRewrap: () => void): Keystore {
  return new Proxy(keystore, {
    get(target, property) {
      if (property === 'rewrapMaterial') {
        return async (...args: Parameters<Keystore['rewrapMaterial']>) => {
          await target.rewrapMaterial(...args);
          onRewrap();
        };
      }
      const value = Reflect.get(target, property, target);
      return typeof value === 'function' ? value.bind(target) : value;
    },
  });
}
