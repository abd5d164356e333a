/**
 * The codec server as a library (`temporal-keyring/server`): for applications that embed it in
 * their own process instead of running `temporal-keyring serve`.
 */

export {
  parseServerConfig,
  type ServerConfig,
  type ServerConfigInput,
} from '../src/config/server-config.ts';
export { type AppDeps, createApp } from './app.ts';
export { type RunningServer, type StartServerOptions, startServer } from './main.ts';
export { Metrics } from './metrics.ts';
