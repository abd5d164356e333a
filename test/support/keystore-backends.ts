import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { startPostgres, type TestPostgres } from './postgres.ts';

/** A keystore location of one backend, fresh on every call. */
export interface KeystoreBackend {
  name: 'file' | 'postgres';
  location(): Promise<string>;
}

/**
 * The file and PostgreSQL backends for tests that run the same scenario on both: registers the
 * suite's hooks (one embedded PostgreSQL, started before and stopped after; temporary directories
 * removed), and names each location with `label`.
 */
export function keystoreBackends(label: string): KeystoreBackend[] {
  let pg: TestPostgres | undefined;
  const dirs: string[] = [];
  beforeAll(async () => {
    pg = await startPostgres();
  });
  afterAll(async () => {
    await pg?.stop();
    for (const d of dirs) await rm(d, { recursive: true, force: true, maxRetries: 5 });
  });
  return [
    {
      name: 'file',
      location: async () => {
        const dir = await mkdtemp(join(tmpdir(), `tk-${label}-`));
        dirs.push(dir);
        return join(dir, 'data');
      },
    },
    { name: 'postgres', location: () => pg!.newDatabase(label) },
  ];
}
