/**
 * temporal-keyring: encryption of Temporal payloads with versioned per-namespace keys.
 *
 * The public API, listed explicitly: nothing is public unless it is named here, and
 * test/public-api.test.ts snapshots the list so that a change to it is deliberate. Internals (the
 * wire format's constants, the engines' building blocks, the rotation projection and chart) stay
 * in their modules; the CLI, the server and the tests import them from there. The codec server
 * is the `temporal-keyring/server` subpath (codec-server/index.ts).
 */

// The codec: a Temporal PayloadCodec
export {
  EncryptionCodec,
  type EncryptionCodecOptions,
  isEncryptedPayload,
  keyIdOfPayload,
  keyVersionOf,
} from './codec/encryption-codec.ts';
export {
  type EsdkNames,
  type ExportedVersion,
  exportableSince,
  exportKeys,
  type KeyExport,
  markExportable,
  setExportable,
} from './codec/key-export.ts';
export type { PayloadFormat } from './codec/payload-format.ts';
export { RemoteCodec, type RemoteCodecOptions } from './codec/remote-codec.ts';
export { Rewrapper, type RewrapResult } from './codec/rewrap.ts';
// Configuration files and the settings the CLI reads
export type { KekConfig, KeyringConfig, NamespaceConfig } from './config/config-schema.ts';
export { type LoadedConfig, loadConfigFile, parseConfig } from './config/load-config.ts';
export {
  ENV,
  type KekSpec,
  type ResolvedSettings,
  resolveSettings,
  type SettingsFlags,
} from './config/resolve-settings.ts';
// Errors (stable `code`s)
export {
  DecryptionFailedError,
  InternalError,
  InvalidKekError,
  InvalidNamespaceError,
  InvalidOptionError,
  InvalidStateTransitionError,
  isKeyringError,
  KEYRING_ERROR_CODES,
  KekMismatchError,
  KekUnavailableError,
  KeyProviderFaultError,
  KeyRevokedError,
  KeyringClosedError,
  KeyringError,
  type KeyringErrorCode,
  KeystoreConflictError,
  KeystoreCorruptError,
  KeystoreUnavailableError,
  KeyVersionDeprecatedError,
  KeyVersionDestroyedError,
  KeyVersionNotFoundError,
  LockTimeoutError,
  MalformedPayloadError,
  MeterClosedError,
  NamespaceExistsError,
  NamespaceMismatchError,
  NamespaceNotFoundError,
  NoActiveKeyError,
  NotExportableError,
  type Pkcs11ErrorCode,
  Pkcs11KekError,
  PropagationPendingError,
  RandomSourceError,
  RemoteCodecRejectedError,
  RemoteCodecTimeoutError,
  RemoteCodecUnavailableError,
  SealedError,
  UnsealCheckFailedError,
  UnsealShareDuplicateError,
  UnsealShareForeignError,
  UnsealShareMalformedError,
  UsageLimitReachedError,
  UsageReservationError,
} from './errors.ts';
export type {
  DataKeyCacheLimits,
  DataKeyCacheOptions,
  DataKeyCacheStats,
} from './esdk/data-key-cache.ts';
// ESDK engines (the codec's `engine` option)
export type { EsdkEngine, PreparedKey } from './esdk/engine.ts';
export { createFastEngine, type FastEngineOptions, fastEngine } from './esdk/fast-engine.ts';
export { sdkEngine } from './esdk/sdk-engine.ts';
export { type KekKind, type KeyEncryptionKey, LocalKek } from './kek/kek.ts';
// Key-encryption keys
export {
  generateKekBase64,
  type KekSource,
  kekFromPassphrase,
  type LoadKekOptions,
  loadKek,
} from './kek/kek-source.ts';
export { Pkcs11Kek, type Pkcs11KekOptions } from './kek/pkcs11-kek.ts';
export { initShamirKeystore, type SealStatus, ShamirKek } from './kek/shamir-kek.ts';
export type { EncryptionMeter } from './keyring/encryption-meter.ts';
export {
  createKeyHandle,
  KeyHandle,
  type KeyProvider,
  type OwnedKeyHandle,
  type RawKey,
} from './keyring/key-handle.ts';
// The key lifecycle (keyring.manager)
export {
  KeyManager,
  type LifecycleEvent,
  type LifecyclePolicy,
  type RotateOptions,
  type StateChangeResult,
} from './keyring/key-manager.ts';
// The keyring and the keys it hands out
export {
  Keyring,
  type KeyringOptions,
  type RotationMode,
  type RotationResult,
} from './keyring/keyring.ts';
// Keystores
export type {
  KekInfo,
  Keystore,
  KeystoreEvent,
  UsageRecord,
  UsageSample,
  WrappedKey,
} from './keystore/keystore.ts';
export { type KeystoreLocation, parseKeystoreLocation } from './keystore/keystore-location.ts';
export { MemoryKeystore } from './keystore/memory-keystore.ts';
export { type OpenKeystoreOptions, openKeystore } from './keystore/open-keystore.ts';
export { ValidatingKeystore } from './keystore/validating-keystore.ts';
// Key versions and their states
export type { KeyState, KeyVersion, NamespaceChange, StateTransition } from './model/key-version.ts';
// The high-level factory
export {
  type KekInput,
  type OpenedKeyring,
  type OpenedRotatorOptions,
  type OpenKeyringOptions,
  openKeyring,
  type Pkcs11KekInput,
  type ShamirKekInput,
} from './open-keyring.ts';
// Rotation: policy, usage metering, the rotator
export {
  DEFAULT_ROTATION_POLICY,
  type PartialRotationPolicy,
  parsePolicy,
  type RotationPolicy,
  type RotationPolicyInput,
  resolvePolicy,
} from './rotation/rotation-policy.ts';
export {
  Rotator,
  type RotatorAction,
  type RotatorMetrics,
  type RotatorOptions,
  type RotatorRun,
} from './rotation/rotator.ts';
export { UsageMeter, type UsageMeterOptions } from './rotation/usage-meter.ts';
// Injected dependencies
export { type Clock, ManualClock, systemClock } from './runtime/clock.ts';
export type { Logger } from './runtime/logger.ts';
export type { RandomSource } from './runtime/random.ts';
// The Temporal SDK plugin (payload codec + encrypted failures, namespace from the SDK's context)
export { type Configured, KeyringPlugin, type KeyringPluginOptions } from './temporal/keyring-plugin.ts';
export { NamespaceCodec, type NamespaceCodecOptions } from './temporal/namespace-codec.ts';
