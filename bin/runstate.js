#!/usr/bin/env node
// The `runstate` command. The published package runs its build (dist/, made by `prepack`); a clone
// of the repository, where no step builds dist/, runs the TypeScript sources through tsx (one of
// its devDependencies), so `npx runstate` works right after `npm install`. tsx's loader needs
// Node 20.6 or later, as `module.register` does.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const built = new URL('../dist/src/cli.js', import.meta.url);
if (existsSync(built)) {
  await import(built.href);
} else {
  const { register } = await import('tsx/esm/api');
  register();
  // After tsx's, so it runs first: `import 'runstate'` in a tools module then finds the sources.
  const { register: registerHooks } = await import('node:module');
  registerHooks(new URL('./source-condition.js', import.meta.url));
  await import(new URL('../src/cli.ts', import.meta.url).href);
}
