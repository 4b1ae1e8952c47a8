// A module resolve hook for a clone of the repository, where `bin/runstate.js` runs the TypeScript
// sources: every import also matches the `runstate-source` condition of package.json's exports, so
// a tools module's `import 'runstate'` loads the sources the command runs, not a build that is not
// there (as `npm start`'s `--conditions=runstate-source` does).
export function resolve(specifier, context, nextResolve) {
  return nextResolve(specifier, { ...context, conditions: [...context.conditions, 'runstate-source'] });
}
