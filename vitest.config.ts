import { availableParallelism } from 'node:os';
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
    // Vitest's default is one worker less than the cores: one worker on the 2-core machines CI runs
    // on, where most test files wait on a socket, a database or a browser more than on the CPU. Two
    // take the suite from ~9 to ~7 minutes there.
    maxWorkers: Math.max(2, availableParallelism() - 1),
    testTimeout: 20_000,
    hookTimeout: 20_000,
  },
});
