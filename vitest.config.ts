import { defineConfig } from 'vitest/config';

export default defineConfig({
  resolve: {
    // Resolve `runstate`, `runstate/testing`, ... to the TypeScript sources (the "runstate-source" export condition).
    conditions: ['runstate-source'],
  },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
