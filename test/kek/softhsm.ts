import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { tempDir } from '../support/temp-dir.ts';

/** Debian's SoftHSM2 module (`apt-get install softhsm2`). */
export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const softhsmInstalled = existsSync(SOFTHSM_MODULE);

export interface SoftHsm {
  dir: string;
  tokenDir: string;
  /** `SOFTHSM2_CONF` for this instance: set it before the module is first loaded in a process. */
  conf: string;
  token: string;
  pin: string;
  cleanup(): Promise<void>;
}

/**
 * A real SoftHSM2 with one fresh token, in a temporary folder (`SOFTHSM2_CONF` points there), so
 * tests never touch the machine's tokens. The module reads its config once per process.
 */
export async function startSoftHsm(token = 'tk-test', pin = '1234-test'): Promise<SoftHsm> {
  const dir = await tempDir('tk-hsm-');
  const tokenDir = join(dir, 'tokens');
  await mkdir(tokenDir);
  const conf = join(dir, 'softhsm2.conf');
  await writeFile(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\n`,
  );
  execFileSync(
    'softhsm2-util',
    ['--init-token', '--free', '--label', token, '--pin', pin, '--so-pin', `${pin}-so`],
    { env: { ...process.env, SOFTHSM2_CONF: conf }, stdio: 'ignore' },
  );
  return { dir, tokenDir, conf, token, pin, cleanup: () => rm(dir, { recursive: true, force: true }) };
}
