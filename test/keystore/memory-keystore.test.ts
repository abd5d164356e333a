import { MemoryKeystore } from '../../src/keystore/memory-keystore.ts';
import { keystoreContract } from './contract.ts';

keystoreContract('memory', async () => {
  const store = new MemoryKeystore();
  return { store, reopen: async () => store.reopen(), cleanup: async () => {} };
});
