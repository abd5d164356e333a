import type {
  EncryptionContext,
  EsdkEngine,
  Plaintext,
  PreparedKey,
  WrappingKey,
} from '../../src/esdk/engine.ts';

/**
 * Test helper: an engine called with plain {@link WrappingKey}s, each prepared once per engine and
 * key object (as a key handle would), so that tests read like the data they exercise.
 */
export interface KeyedEngine {
  readonly engine: EsdkEngine;
  prepared(key: WrappingKey): PreparedKey;
  encrypt(plaintext: Plaintext, key: WrappingKey, context: EncryptionContext): Promise<Uint8Array>;
  decrypt(
    message: Uint8Array,
    key: WrappingKey,
  ): Promise<{ plaintext: Uint8Array; context: EncryptionContext }>;
}

const keyedEngines = new Map<EsdkEngine, KeyedEngine>();

export function keyed(engine: EsdkEngine): KeyedEngine {
  const known = keyedEngines.get(engine);
  if (known) return known;
  const prepared = new Map<WrappingKey, PreparedKey>();
  const prepare = (key: WrappingKey): PreparedKey => {
    let p = prepared.get(key);
    if (!p) {
      p = engine.prepare(key);
      prepared.set(key, p);
    }
    return p;
  };
  const out: KeyedEngine = {
    engine,
    prepared: prepare,
    encrypt: async (plaintext, key, context) => engine.encrypt(plaintext, prepare(key), context),
    decrypt: async (message, key) => engine.decrypt(message, prepare(key)),
  };
  keyedEngines.set(engine, out);
  return out;
}
