// Child processes under load (2 shared cores) take seconds each: these tests get a longer bound.
import { execFile } from 'node:child_process';
import { resolve } from 'node:path';
import { tempDir as removedAfterFile } from '../support/temp-dir.ts';

const BIN = resolve(import.meta.dirname, '../../bin/temporal-keyring.js');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the real `temporal-keyring` executable in a child process with a clean environment (no
 * TEMPORAL_KEYRING_* leaking in from the test runner), bounded in time.
 */
export function cli(
  args: string[],
  options: { env?: Record<string, string>; cwd?: string; input?: string } = {},
): Promise<CliResult> {
  return new Promise((resolvePromise, reject) => {
    const child = execFile(
      process.execPath,
      [BIN, ...args],
      {
        cwd: options.cwd,
        env: { PATH: process.env.PATH ?? '', HOME: process.env.HOME ?? '', ...options.env },
        timeout: 60_000,
        maxBuffer: 16 * 1024 * 1024,
      },
      (error, stdout, stderr) => {
        const code = error ? (typeof error.code === 'number' ? error.code : -1) : 0;
        if (error?.killed) reject(new Error(`temporal-keyring ${args.join(' ')} timed out`));
        else resolvePromise({ code, stdout, stderr });
      },
    );
    child.stdin?.end(options.input ?? '');
  });
}

/** A temporary directory, removed after the test file (test/support/temp-dir.ts). */
export const tempDir = (prefix = 'tk-cli-') => removedAfterFile(prefix);
