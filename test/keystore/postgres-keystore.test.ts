import { afterAll, beforeAll } from 'vitest';
import { PostgresKeystore } from '../../src/keystore/postgres-keystore.ts';
import { startPostgres, type TestPostgres } from '../support/postgres.ts';
import { keystoreContract } from './contract.ts';

let server: TestPostgres;
beforeAll(async () => {
  server = await startPostgres();
});
afterAll(async () => {
  await server?.stop();
});

// A fresh database per fixture (CREATE DATABASE copies an empty template: ~0.1 s).
keystoreContract('postgres', async () => {
  const connectionString = await server.newDatabase('contract');
  const store = await PostgresKeystore.open({ connectionString });
  return {
    store,
    reopen: async () => PostgresKeystore.open({ connectionString }),
    cleanup: async () => {},
  };
});
