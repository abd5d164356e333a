/**
 * temporal-keyring: encryption of Temporal payloads with versioned per-namespace keys.
 *
 * The public API, listed explicitly: nothing is public unless it is named here.
 */

// The codec and its wire format
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
export {
  COMPACT_CONTEXT_KEY_VERSION,
  COMPACT_CONTEXT_NAMESPACE,
  COMPACT_PROVIDER_ID,
  CONTEXT_KEY_VERSION,
  CONTEXT_NAMESPACE,
  ENCODING_ENCRYPTED,
  encryptionContextOf,
  formatContextOf,
  METADATA_ENCODING,
  METADATA_KEY_ID,
  METADATA_KEY_VERSION,
  METADATA_KEYSTORE_ID,
  type PayloadFormat,
  parseKeyVersion,
} from './codec/payload-format.ts';
export { RemoteCodec, type RemoteCodecOptions } from './codec/remote-codec.ts';
export { Rewrapper, type RewrapResult } from './codec/rewrap.ts';
export {
  configSchema,
  type KekConfig,
  type KeyringConfig,
  type NamespaceConfig,
} from './config/config-schema.ts';
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
  InvalidKekError,
  InvalidNamespaceError,
  InvalidOptionError,
  InvalidStateTransitionError,
  isKeyringError,
  KekMismatchError,
  KekUnavailableError,
  KeyRevokedError,
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
  NamespaceExistsError,
  NamespaceMismatchError,
  NamespaceNotFoundError,
  NoActiveKeyError,
  NotExportableError,
  type Pkcs11ErrorCode,
  Pkcs11KekError,
  PropagationPendingError,
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
  withHint,
} from './errors.ts';
export {
  DATA_KEY_CACHE_DEFAULTS,
  type DataKeyCacheLimits,
  type DataKeyCacheOptions,
  type DataKeyCacheStats,
} from './esdk/data-key-cache.ts';
// ESDK engines
export {
  type EncryptionContext,
  type EsdkEngine,
  esdkKeyName,
  PROVIDER_ID,
  type PreparedKey,
  type WrappingKey,
} from './esdk/engine.ts';
export {
  createFastEngine,
  FAST_FRAME_LENGTH,
  type FastEngineOptions,
  fastEngine,
} from './esdk/fast-engine.ts';
export { ESDK_FRAME_LENGTH, ESDK_SUITE_ID, sdkEngine } from './esdk/sdk-engine.ts';
export { KEK_LENGTH, type KekKind, type KeyEncryptionKey, LocalKek } from './kek/kek.ts';
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
// The key lifecycle (keyring.manager)
export {
  KeyManager,
  type LifecycleEvent,
  type LifecyclePolicy,
  type RotateOptions,
  type StateChangeResult,
} from './keyring/key-manager.ts';
// The keyring
export {
  DATA_KEY_LENGTH,
  type KeyProvider,
  Keyring,
  type KeyringOptions,
  type ResolvedKey,
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
export {
  DEFAULT_DATA_DIR,
  describeKeystoreLocation,
  type KeystoreLocation,
  parseKeystoreLocation,
} from './keystore/keystore-location.ts';
export { MemoryKeystore } from './keystore/memory-keystore.ts';
export { type OpenKeystoreOptions, openKeystore } from './keystore/open-keystore.ts';
export { ValidatingKeystore } from './keystore/validating-keystore.ts';
// Key versions and their states
export {
  applyChange,
  canTransition,
  KEY_STATES,
  type KeyState,
  type KeyVersion,
  keyIdOf,
  type NamespaceChange,
  type StateTransition,
} from './model/key-version.ts';
export { isValidNamespace, MAX_NAMESPACE_LENGTH, validateNamespace } from './model/namespace.ts';
// The high-level factory
export {
  type KekInput,
  type OpenedKeyring,
  type OpenKeyringOptions,
  openKeyring,
  type Pkcs11KekInput,
  type ShamirKekInput,
} from './open-keyring.ts';
// Usage metering and rotation
export {
  AES_GCM_RANDOM_IV_LIMIT,
  DEFAULT_ROTATION_POLICY,
  formatDuration,
  MIN_MAX_ENCRYPTIONS,
  type PartialRotationPolicy,
  parseDuration,
  parsePolicy,
  type RotationPolicy,
  type RotationPolicyInput,
  resolvePolicy,
  rotationPolicySchema,
} from './rotation/rotation-policy.ts';
export {
  projectRotation,
  type RotationProjection,
  type RotationReasonKind,
} from './rotation/rotation-projection.ts';
export {
  ROTATOR_LEASE,
  Rotator,
  type RotatorAction,
  type RotatorMetrics,
  type RotatorOptions,
  type RotatorRun,
} from './rotation/rotator.ts';
export {
  type ChartSeries,
  chartSeries,
  renderUsageChart,
  type UsageChartInput,
} from './rotation/usage-chart.ts';
export {
  defaultHolderId,
  type MeterEntry,
  UsageMeter,
  type UsageMeterOptions,
} from './rotation/usage-meter.ts';
export {
  RATE_WINDOWS,
  type RateWindow,
  type UsageRates,
  usageRates,
  type WindowRate,
} from './rotation/usage-rate.ts';
export {
  type NamespaceStatus,
  namespaceStatus,
  statusChart,
  type VersionStatus,
} from './rotation/usage-status.ts';
// Injected dependencies
export { type Clock, ManualClock, systemClock } from './runtime/clock.ts';
export { type Logger, silentLogger } from './runtime/logger.ts';
export { blockRandom, type RandomSource, systemRandom } from './runtime/random.ts';
// The Temporal SDK plugin (payload codec + encrypted failures, namespace from the SDK's context)
export { type Configured, KeyringPlugin, type KeyringPluginOptions } from './temporal/keyring-plugin.ts';
export { NamespaceCodec, type NamespaceCodecOptions } from './temporal/namespace-codec.ts';
