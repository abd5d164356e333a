import { readFileSync } from 'node:fs';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

/**
 * The package's public API, as a list: adding or removing a name must change this file too, so
 * that every change to what users can import is deliberate (and reviewed as such). Values are also
 * checked at runtime; types are read from the entry's export declarations.
 */
const ROOT_API = {
  values: [
    'DEFAULT_ROTATION_POLICY',
    'DecryptionFailedError',
    'ENV',
    'EncryptionCodec',
    'InternalError',
    'InvalidKekError',
    'InvalidNamespaceError',
    'InvalidOptionError',
    'InvalidStateTransitionError',
    'KEYRING_ERROR_CODES',
    'KekMismatchError',
    'KekUnavailableError',
    'KeyHandle',
    'KeyManager',
    'KeyProviderFaultError',
    'KeyRevokedError',
    'KeyVersionDeprecatedError',
    'KeyVersionDestroyedError',
    'KeyVersionNotFoundError',
    'Keyring',
    'KeyringClosedError',
    'KeyringError',
    'KeyringPlugin',
    'KeystoreConflictError',
    'KeystoreCorruptError',
    'KeystoreUnavailableError',
    'LocalKek',
    'LockTimeoutError',
    'MalformedPayloadError',
    'ManualClock',
    'MemoryKeystore',
    'MeterClosedError',
    'NamespaceCodec',
    'NamespaceExistsError',
    'NamespaceMismatchError',
    'NamespaceNotFoundError',
    'NoActiveKeyError',
    'NotExportableError',
    'Pkcs11Kek',
    'Pkcs11KekError',
    'PropagationPendingError',
    'RandomSourceError',
    'RemoteCodec',
    'RemoteCodecRejectedError',
    'RemoteCodecTimeoutError',
    'RemoteCodecUnavailableError',
    'Rewrapper',
    'Rotator',
    'SealedError',
    'ShamirKek',
    'UnsealCheckFailedError',
    'UnsealShareDuplicateError',
    'UnsealShareForeignError',
    'UnsealShareMalformedError',
    'UsageLimitReachedError',
    'UsageMeter',
    'UsageReservationError',
    'ValidatingKeystore',
    'createFastEngine',
    'createKeyHandle',
    'exportKeys',
    'exportableSince',
    'fastEngine',
    'generateKekBase64',
    'initShamirKeystore',
    'isEncryptedPayload',
    'isKeyringError',
    'kekFromPassphrase',
    'keyIdOfPayload',
    'keyVersionOf',
    'loadConfigFile',
    'loadKek',
    'markExportable',
    'openKeyring',
    'openKeystore',
    'parseConfig',
    'parseKeystoreLocation',
    'parsePolicy',
    'resolvePolicy',
    'resolveSettings',
    'sdkEngine',
    'setExportable',
    'systemClock',
  ],
  types: [
    'Clock',
    'Configured',
    'DataKeyCacheLimits',
    'DataKeyCacheOptions',
    'DataKeyCacheStats',
    'EncryptionCodecOptions',
    'EncryptionMeter',
    'EsdkEngine',
    'EsdkNames',
    'ExportedVersion',
    'FastEngineOptions',
    'KekConfig',
    'KekInfo',
    'KekInput',
    'KekKind',
    'KekSource',
    'KekSpec',
    'KeyEncryptionKey',
    'KeyExport',
    'KeyProvider',
    'KeyState',
    'KeyVersion',
    'KeyringConfig',
    'KeyringErrorCode',
    'KeyringOptions',
    'KeyringPluginOptions',
    'Keystore',
    'KeystoreEvent',
    'KeystoreLocation',
    'LifecycleEvent',
    'LifecyclePolicy',
    'LoadKekOptions',
    'LoadedConfig',
    'Logger',
    'NamespaceChange',
    'NamespaceCodecOptions',
    'NamespaceConfig',
    'OpenKeyringOptions',
    'OpenKeystoreOptions',
    'OpenedKeyring',
    'OpenedRotatorOptions',
    'OwnedKeyHandle',
    'PartialRotationPolicy',
    'PayloadFormat',
    'Pkcs11ErrorCode',
    'Pkcs11KekInput',
    'Pkcs11KekOptions',
    'PreparedKey',
    'RandomSource',
    'RawKey',
    'RemoteCodecOptions',
    'ResolvedSettings',
    'RewrapResult',
    'RotateOptions',
    'RotationMode',
    'RotationPolicy',
    'RotationPolicyInput',
    'RotationResult',
    'RotatorAction',
    'RotatorMetrics',
    'RotatorOptions',
    'RotatorRun',
    'SealStatus',
    'SettingsFlags',
    'ShamirKekInput',
    'StateChangeResult',
    'StateTransition',
    'UsageMeterOptions',
    'UsageRecord',
    'UsageSample',
    'WrappedKey',
  ],
};

const SERVER_API = {
  values: ['Metrics', 'createApp', 'parseServerConfig', 'startServer'],
  types: [
    'AppDeps',
    'Authenticator',
    'CodecServerApp',
    'Identity',
    'PinoLogger',
    'RunningServer',
    'ServerConfig',
    'ServerConfigInput',
    'StartServerOptions',
  ],
};

/** Names an entry file exports, split into values and type-only exports (syntax only). */
function declaredExports(path: string): { values: string[]; types: string[] } {
  const source = ts.createSourceFile(path, readFileSync(path, 'utf8'), ts.ScriptTarget.ES2022, true);
  const values: string[] = [];
  const types: string[] = [];
  for (const statement of source.statements) {
    if (!ts.isExportDeclaration(statement)) {
      const exported = ts.canHaveModifiers(statement)
        ? ts.getModifiers(statement)?.some((m) => m.kind === ts.SyntaxKind.ExportKeyword)
        : false;
      // An entry only re-exports: its own declarations would be API nobody listed.
      expect(exported, `${path}: declare things in their modules, re-export them here`).toBeFalsy();
      continue;
    }
    const clause = statement.exportClause;
    expect(clause && ts.isNamedExports(clause), `${path}: no "export *"`).toBe(true);
    for (const element of (clause as ts.NamedExports).elements) {
      (statement.isTypeOnly || element.isTypeOnly ? types : values).push(element.name.text);
    }
  }
  return { values: values.sort(), types: types.sort() };
}

const sorted = (names: string[]) => [...names].sort();

describe('public API', () => {
  it('the package root exports exactly the listed names', async () => {
    expect(declaredExports('src/index.ts')).toEqual({
      values: sorted(ROOT_API.values),
      types: sorted(ROOT_API.types),
    });
    const module = await import('../src/index.ts');
    expect(Object.keys(module).sort()).toEqual(sorted(ROOT_API.values));
  });

  it('temporal-keyring/server exports the server and its option types, and package.json maps it', async () => {
    expect(declaredExports('codec-server/index.ts')).toEqual({
      values: sorted(SERVER_API.values),
      types: sorted(SERVER_API.types),
    });
    const module = await import('../codec-server/index.ts');
    expect(Object.keys(module).sort()).toEqual(sorted(SERVER_API.values));
    const pkg = JSON.parse(readFileSync('package.json', 'utf8')) as {
      exports: Record<string, { types: string; default: string }>;
    };
    expect(pkg.exports['./server']).toEqual({
      types: './dist/codec-server/index.d.ts',
      default: './dist/codec-server/index.js',
    });
  });

  it('leaves internals out of the root', async () => {
    const module = (await import('../src/index.ts')) as Record<string, unknown>;
    for (const internal of [
      'applyChange',
      'chartSeries',
      'blockRandom',
      'DATA_KEY_CACHE_DEFAULTS',
      'createApp',
    ]) {
      expect(module[internal], internal).toBeUndefined();
    }
  });
});
