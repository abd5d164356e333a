#!/usr/bin/env node
// Launcher of the `temporal-keyring` CLI.
// - Installed from npm, a tarball or a git URL: runs the built JavaScript (dist/, made by the
//   package's `prepare` script), so it needs neither tsx nor a TypeScript toolchain.
// - In a source checkout (tsconfig.json beside this folder; it is not in the published files):
//   runs the TypeScript sources through tsx (a devDependency), so that `npm start` and
//   `npm run cli --` always run what is in the working tree, never a stale build.
import { existsSync } from 'node:fs';

const checkout = existsSync(new URL('../tsconfig.json', import.meta.url));
if (checkout) {
  const { register } = await import('tsx/esm/api');
  register();
  await import('../cli/main.ts');
} else {
  await import('../dist/cli/main.js');
}
