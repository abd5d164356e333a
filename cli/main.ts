/**
 * Entry point of the `temporal-keyring` executable (bin/temporal-keyring.js loads it through tsx;
 * `npm run cli -- <args>` and `tsx cli/main.ts <args>` work too).
 */
import { run } from './program.ts';

// `temporal-keyring keys list | head -1`: the reader went away; that is not an error.
process.stdout.on('error', (error: NodeJS.ErrnoException) => {
  if (error.code === 'EPIPE') process.exit(0);
  throw error;
});

const code = await run(process.argv);
// Long-running commands (serve, rotator) keep the process alive on their own and set exitCode when
// they stop; everything else is done here.
if (code !== 0) process.exitCode = code;
