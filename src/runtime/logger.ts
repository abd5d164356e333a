/**
 * The logging interface the library writes to: pino's call shape (`logger.info(obj, msg)`), so a
 * pino logger can be passed as it is. The default is silent; the codec server and CLI pass pino.
 * Nothing logged ever holds plaintext, key material or tokens.
 */
export interface Logger {
  debug(obj: object, msg?: string): void;
  info(obj: object, msg?: string): void;
  warn(obj: object, msg?: string): void;
  error(obj: object, msg?: string): void;
}

export const silentLogger: Logger = {
  debug() {},
  info() {},
  warn() {},
  error() {},
};
