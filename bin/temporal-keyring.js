#!/usr/bin/env node
// Launcher of the `temporal-keyring` CLI: the sources are TypeScript, run through tsx (a runtime
// dependency), so the command works straight from a clean clone after `npm ci`.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
