import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 120_000,
    hookTimeout: 300_000,
    // Native work already uses both cores through OpenMP; parallel test files would only
    // oversubscribe them.
    fileParallelism: false,
  },
});
