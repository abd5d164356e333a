import { extname } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { DataConverter } from '@temporalio/common';
import type { EncryptionCodecOptions } from '../codec/encryption-codec.ts';
import { InvalidOptionError, NamespaceMismatchError } from '../errors.ts';
import { validateNamespace } from '../model/namespace.ts';
import { NamespaceCodec } from './namespace-codec.ts';

export interface KeyringPluginOptions extends Omit<EncryptionCodecOptions, 'namespace'> {
  /**
   * Fix the namespace whose keys are used. Default: the namespace in each call's
   * `SerializationContext` (the SDK passes it), else the client's or worker's own `namespace`.
   * When fixed, a context or a client/worker naming another namespace is an error.
   */
  namespace?: string;
  /**
   * Install a failure converter with `encodeCommonAttributes: true`, so that failure messages and
   * stack traces are encrypted too. Default true.
   */
  encryptFailures?: boolean;
}

/** What the plugin reads and sets in client, worker and replay worker options alike. */
interface ConverterOptions {
  namespace?: string;
  dataConverter?: DataConverter;
}

/** The options with the plugin's data converter in them. */
export type Configured<T> = T & { dataConverter: DataConverter };

/** Path of the failure converter module, with this module's own extension (`.js` built, `.ts` in a checkout). */
const FAILURE_CONVERTER_PATH = fileURLToPath(
  new URL(`./encrypted-failure-converter${extname(fileURLToPath(import.meta.url))}`, import.meta.url),
);

/**
 * The Temporal SDK plugin: one line gives a `Client`, a `Worker` (and `Worker.runReplayHistory`)
 * the keyring's payload codec and a failure converter that encrypts failure messages and stack
 * traces.
 *
 * ```ts
 * const keyring = new KeyringPlugin({ keys: (await openKeyring()).keyring });
 * new Client({ connection, plugins: [keyring] });
 * await Worker.create({ connection, taskQueue, workflowsPath, activities, plugins: [keyring] });
 * ```
 *
 * It structurally implements the SDK's `ClientPlugin` and `WorkerPlugin` (`@temporalio/plugin`'s
 * interfaces), so the library needs neither `@temporalio/client` nor `@temporalio/worker`.
 *
 * Pipeline position: SDK options → `KeyringPlugin` (this) → `NamespaceCodec` → `EncryptionCodec`.
 */
export class KeyringPlugin {
  readonly name = 'temporal-keyring';
  readonly #options: KeyringPluginOptions;
  readonly #fixed: string | undefined;

  constructor(options: KeyringPluginOptions) {
    if (!options || typeof options !== 'object') throw new InvalidOptionError('options', 'must be an object');
    this.#fixed = options.namespace === undefined ? undefined : validateNamespace(options.namespace);
    if (options.encryptFailures !== undefined && typeof options.encryptFailures !== 'boolean') {
      throw new InvalidOptionError('encryptFailures', 'must be a boolean');
    }
    this.#options = options;
    // Validates keys, engine and format now rather than at the first payload.
    new NamespaceCodec({ ...this.#codecOptions(), namespace: this.#fixed ?? 'default' });
  }

  /** `ClientPlugin` hook. */
  configureClient<T extends ConverterOptions>(options: T): Configured<T> {
    return this.#configure(options, 'client');
  }

  /** `WorkerPlugin` hook. */
  configureWorker<T extends ConverterOptions>(options: T): Configured<T> {
    return this.#configure(options, 'worker');
  }

  /** `WorkerPlugin` hook for `Worker.runReplayHistory` and replay workers. */
  configureReplayWorker<T extends ConverterOptions>(options: T): Configured<T> {
    return this.#configure(options, 'replay worker');
  }

  #configure<T extends ConverterOptions>(options: T, who: string): Configured<T> {
    const own = options.namespace;
    if (this.#fixed !== undefined && own !== undefined && own !== this.#fixed) {
      throw new NamespaceMismatchError(
        `the ${who} runs in namespace "${own}", but KeyringPlugin is fixed to namespace "${this.#fixed}"`,
      );
    }
    const converter: DataConverter = { ...options.dataConverter };
    const codec = new NamespaceCodec({
      ...this.#codecOptions(),
      namespace: this.#fixed ?? own ?? 'default',
      fixed: this.#fixed !== undefined,
    });
    converter.payloadCodecs = [...(converter.payloadCodecs ?? []), codec];
    if (this.#options.encryptFailures !== false) {
      if (
        converter.failureConverterPath !== undefined &&
        converter.failureConverterPath !== FAILURE_CONVERTER_PATH
      ) {
        throw new InvalidOptionError(
          'dataConverter.failureConverterPath',
          'KeyringPlugin sets the failure converter (encodeCommonAttributes: true, so failures are encrypted); remove yours, or pass encryptFailures: false to keep it',
        );
      }
      converter.failureConverterPath = FAILURE_CONVERTER_PATH;
    }
    return { ...options, dataConverter: converter };
  }

  #codecOptions(): Omit<EncryptionCodecOptions, 'namespace'> {
    const { keys, engine, format } = this.#options;
    return { keys, engine, format };
  }
}
