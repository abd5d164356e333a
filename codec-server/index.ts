/**
 * The codec server, importable as `temporal-keyring/server`: the app (`createApp`, a request
 * listener that also mounts in Express) for embedding in an application's own server, and `startServer` (HTTP or HTTPS, graceful close) as
 * the `serve` command runs it. Its configuration is validated with `parseServerConfig`.
 *
 * Pipeline position: Temporal Web UI / CLI → this server → `EncryptionCodec` → keyring.
 */
export { parseServerConfig, type ServerConfig, type ServerConfigInput } from '../src/config/server-config.ts';
export { type AppDeps, type CodecServerApp, createApp, type PinoLogger } from './app.ts';
export type { Authenticator, Identity } from './auth/identity.ts';
export { type RunningServer, type StartServerOptions, startServer } from './main.ts';
export { Metrics } from './metrics.ts';
