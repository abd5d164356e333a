import { rm } from 'node:fs/promises';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { tempDir } from '../support/temp-dir.ts';
import { keystoreContract } from './contract.ts';

keystoreContract('file', async () => {
  const dir = await tempDir('tk-file-');
  const store = await FileKeystore.open({ dir });
  return {
    store,
    reopen: async () => FileKeystore.open({ dir }),
    cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 5 }),
  };
});
