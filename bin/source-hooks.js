// Module resolve hooks for a checkout of the repository, where `bin/runstate.js` runs the TypeScript
// sources through tsx.
//
// Every import also matches the `runstate-source` condition of package.json's exports, so a tools
// module's `import 'runstate'` loads the sources the command runs, not a build that is not there (as
// `npm start`'s `--conditions=runstate-source` does).
//
// A `.ts` module that is imported, not required, loads as an ES module also in a CommonJS package
// (`npm init` writes `"type": "commonjs"`): a tools module is written with import and export, as
// TypeScript is, and as CommonJS its `require('runstate')` cannot reach the sources (on Node 20 a
// resolve hook does not see a require()): it failed with "Cannot require() ES Module … in a cycle".
import { URL } from 'node:url';

export async function resolve(specifier, context, nextResolve) {
  const resolved = await nextResolve(specifier, {
    ...context,
    conditions: [...context.conditions, 'runstate-source'],
  });
  return isImportedTypeScriptAsCommonJs(resolved, context) ? { ...resolved, format: 'module' } : resolved;
}

function isImportedTypeScriptAsCommonJs(resolved, context) {
  return (
    resolved.format === 'commonjs' &&
    /\.tsx?$/.test(new URL(resolved.url).pathname) &&
    context.conditions.includes('import')
  );
}
