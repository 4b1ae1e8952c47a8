import { defineConfig } from 'vitest/config';

// Resolve `runstate`, `runstate/testing`, ... to the TypeScript sources (the "runstate-source" export
// condition), so a test imports the package by its name, as docs/testing.md shows, with no build.
const conditions = ['runstate-source'];

export default defineConfig({
  // Vite 6+ applies `resolve.conditions` to its client environment only; tests run in the SSR
  // environment (Vitest's `node`), which takes its conditions from `ssr.resolve`. Vitest adds its
  // defaults (`node`, `development|production`) to these.
  resolve: { conditions },
  ssr: { resolve: { conditions } },
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
