import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileKeystore } from '../../src/keystore/file-keystore.ts';
import { keystoreContract } from './contract.ts';

keystoreContract('file', async () => {
  const dir = await mkdtemp(join(tmpdir(), 'tk-file-'));
  const store = await FileKeystore.open({ dir });
  return {
    store,
    reopen: async () => FileKeystore.open({ dir }),
    cleanup: () => rm(dir, { recursive: true, force: true, maxRetries: 5 }),
  };
});
