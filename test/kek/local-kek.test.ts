import { randomBytes } from 'node:crypto';
import { chmod, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LocalKek } from '../../src/kek/kek.ts';
import { generateKekBase64, loadKek } from '../../src/kek/kek-source.ts';
import { tempDir } from '../support/temp-dir.ts';
import { kekContract } from './contract.ts';

kekContract('local (base64 / env)', async () => {
  const value = generateKekBase64();
  return {
    kek: await loadKek({ type: 'base64', value }),
    again: () => loadKek({ type: 'base64', value }),
    other: async () => new LocalKek(randomBytes(32)),
    cleanup: async () => {},
  };
});

kekContract('local (file)', async () => {
  const dir = await tempDir('tk-kekc-');
  const path = join(dir, 'kek');
  await writeFile(path, `${generateKekBase64()}\n`);
  await chmod(path, 0o600);
  return {
    kek: await loadKek({ type: 'file', path }),
    again: () => loadKek({ type: 'file', path }),
    other: async () => new LocalKek(randomBytes(32)),
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
});

// scrypt is deliberately slow: derive each passphrase KEK once for the whole suite.
const salt = randomBytes(16);
let derived: Promise<[LocalKek, LocalKek, LocalKek]> | undefined;
kekContract('local (passphrase)', async () => {
  derived ??= Promise.all([
    loadKek({ type: 'passphrase', passphrase: 'correct horse battery staple', salt }),
    loadKek({ type: 'passphrase', passphrase: 'correct horse battery staple', salt }),
    loadKek({ type: 'passphrase', passphrase: 'another long passphrase', salt }),
  ]);
  const [kek, again, other] = await derived;
  return { kek, again: async () => again, other: async () => other, cleanup: async () => {} };
});
