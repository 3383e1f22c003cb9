import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Removes what helpers made outside hooks once each file has run (test/helpers/file-end-cleanup.ts).
    setupFiles: ['test/setup.ts'],
    // Crash and rotation tests spawn child processes and worker pools; on a 2-core machine,
    // two test files at a time keeps them from starving each other.
    maxWorkers: 2,
    minWorkers: 1,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
