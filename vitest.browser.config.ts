import { defineConfig } from 'vitest/config';

/** Real-browser tests (`npm run test:browser`): need Debian's Chromium at /usr/bin/chromium. */
export default defineConfig({
  test: {
    include: ['test/**/*.browser.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    maxWorkers: 1,
  },
});
