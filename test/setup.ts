import { afterAll } from 'vitest';
import { removeTempDirs } from './support/temp-dir.ts';

// Registered before any test file's own hooks, so it runs after them (after hooks run in reverse).
afterAll(removeTempDirs);
