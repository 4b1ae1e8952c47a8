import { defineConfig } from 'vitest/config';
import base from './vitest.config.js';

// The tests Stryker runs against each mutant of machines/ and src/runtime/ (stryker.config.json).
// They are chosen here rather than with Stryker's `testFiles`: with `testFiles`, Stryker 9.6's
// Vitest runner activates static mutants (the run machine's configuration, built when its module
// loads) after the module has loaded, and reports every one of them as survived
// (stryker-mutator/stryker-js#6144, #6209). (Not `mergeConfig`: it would add to `include`.)
export default defineConfig({
  ...base,
  test: {
    ...base.test,
    include: [
      'test/orchestrator.test.ts',
      'test/agent.test.ts',
      'test/model-based/run-machine.model.test.ts',
      'test/model-based/runtime.model.test.ts',
      'test/property/**/*.test.ts',
    ],
  },
});
