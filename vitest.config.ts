import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts', 'examples/**/*.test.ts'],
    // Browser tests need the system Chromium; they run under `npm run test:browser`.
    exclude: ['test/**/*.browser.test.ts', 'node_modules/**'],
    // Removes the temporary directories (KEK files, keystores) each test file made.
    setupFiles: ['test/setup.ts'],
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // Two cores: keep process-spawning suites from starving each other.
    maxWorkers: 2,
  },
});
