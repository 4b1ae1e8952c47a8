#!/usr/bin/env node
// The `runstate` command. A checkout of the repository runs the TypeScript sources through tsx (one
// of its devDependencies), so `npx runstate` works right after `npm install` and always runs the
// code as it is, even once `npm run build` or `npm pack` has left a dist/ behind (a stale build
// would run old code, and could not load a `.ts` tools module). The published package, which holds
// src/ too but no tsconfig.json and no tsx, runs its build (dist/, made by `prepack`). tsx's loader
// needs Node 20.6 or later, as `module.register` does.
import { existsSync } from 'node:fs';
import { URL } from 'node:url';

const root = new URL('../', import.meta.url);
const sources = new URL('src/cli.ts', root);
const built = new URL('dist/src/cli.js', root);

if (isCheckout() && canResolve('tsx/esm/api')) await runSources();
else if (existsSync(built)) await import(built.href);
else await runSources(); // a checkout without tsx: the import of tsx says what is missing

/** Whether this is a checkout of the repository: npm publishes no tsconfig.json (package.json's `files`). */
function isCheckout() {
  return existsSync(sources) && existsSync(new URL('tsconfig.json', root));
}

function canResolve(specifier) {
  try {
    import.meta.resolve(specifier);
    return true;
  } catch {
    return false;
  }
}

async function runSources() {
  const { register } = await import('tsx/esm/api');
  register();
  // After tsx's, so it runs first: `import 'runstate'` in a tools module then finds the sources.
  const { register: registerHooks } = await import('node:module');
  registerHooks(new URL('./source-hooks.js', import.meta.url));
  await import(sources.href);
}
